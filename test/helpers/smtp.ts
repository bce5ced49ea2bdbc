/**
 * A real SMTP relay for tests on 127.0.0.1 and a free port: plain, STARTTLS or implicit TLS
 * with a throwaway self-signed certificate, AUTH PLAIN/LOGIN, and every accepted message
 * parsed back with mailparser so tests can check what a person would receive.
 */
import { afterAll, afterEach, beforeAll } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { simpleParser, type AddressObject, type ParsedMail } from "mailparser";
import { SMTPServer } from "smtp-server";
import { spawner } from "../../src/io/process.ts";
import { freePort } from "../../src/io/net.ts";
export { freePort };
import { requireTool } from "./tools.ts";

export interface TestCert {
  keyFile: string;
  /** Self-signed for 127.0.0.1: serves as its own CA for `ca_file`. */
  certFile: string;
}

/** A throwaway self-signed certificate for 127.0.0.1 (and localhost), made with openssl. */
export async function makeCert(dir: string): Promise<TestCert> {
  const openssl = requireTool("openssl");
  const keyFile = path.join(dir, "relay-key.pem");
  const certFile = path.join(dir, "relay-cert.pem");
  const r = await spawner.run([
    openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], { timeoutMs: 20_000 });
  if (r.exitCode !== 0) throw new Error(`openssl req failed: ${r.stderrTail.join("\n")}`);
  return { keyFile, certFile };
}

export interface Received {
  /** Envelope sender and recipients, as the relay saw them. */
  from: string;
  to: string[];
  /** The session was encrypted (STARTTLS or implicit TLS). */
  secure: boolean;
  user?: string;
  subject: string;
  text: string;
  /** Addresses of the To: header. */
  headerTo: string[];
  headerFrom: string;
  date?: Date;
  headers: ParsedMail["headers"];
}

export interface RelayOptions {
  tls: "starttls" | "implicit" | "none";
  cert?: TestCert;
  /** Accounts for AUTH PLAIN/LOGIN; without them the relay offers no AUTH. */
  users?: Record<string, string>;
  /** Listen on this port (a test that starts the relay late); default: a free one. */
  port?: number;
  /** Recipients the relay refuses with 550. */
  refuseRecipients?: string[];
}

export interface TestRelay {
  port: number;
  url: string;
  received: Received[];
  authFailures: number;
  close(): Promise<void>;
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  const list = a === undefined ? [] : Array.isArray(a) ? a : [a];
  return list.flatMap((o) => o.value.map((v) => v.address ?? ""));
}


export async function startRelay(opts: RelayOptions): Promise<TestRelay> {
  if (opts.tls !== "none" && !opts.cert) throw new Error("startRelay: a TLS relay needs a cert (makeCert)");
  const received: Received[] = [];
  const relay = { received, authFailures: 0 };
  const disabled = [...(opts.tls === "none" ? ["STARTTLS"] : []), ...(opts.users ? [] : ["AUTH"])];
  const server = new SMTPServer({
    secure: opts.tls === "implicit",
    key: opts.cert ? fs.readFileSync(opts.cert.keyFile) : undefined,
    cert: opts.cert ? fs.readFileSync(opts.cert.certFile) : undefined,
    disabledCommands: disabled,
    authMethods: ["PLAIN", "LOGIN"],
    authOptional: !opts.users,
    // a relay on loopback may take a login without TLS; the tests say when they want TLS
    allowInsecureAuth: true,
    logger: false,
    closeTimeout: 500,
    onAuth(auth, _session, cb) {
      if (opts.users && auth.username !== undefined && opts.users[auth.username] === auth.password) return cb(null, { user: auth.username });
      relay.authFailures++;
      cb(new Error("Invalid username or password"));
    },
    onRcptTo(address, _session, cb) {
      if (opts.refuseRecipients?.includes(address.address)) {
        const err = new Error(`<${address.address}>: mailbox unavailable`) as Error & { responseCode: number };
        err.responseCode = 550;
        return cb(err);
      }
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        simpleParser(Buffer.concat(chunks)).then(
          (m) => {
            received.push({
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
              to: session.envelope.rcptTo.map((r) => r.address),
              secure: session.secure,
              user: typeof session.user === "string" ? session.user : undefined,
              subject: m.subject ?? "",
              text: m.text ?? "",
              headerTo: addresses(m.to),
              headerFrom: m.from?.value[0]?.address ?? "",
              date: m.date,
              headers: m.headers,
            });
            cb();
          },
          (e: Error) => cb(e),
        );
      });
    },
  });
  // a client that drops the connection (a refused certificate) must not crash the test process
  server.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    server.server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.server.address() as net.AddressInfo).port;
  return {
    port,
    url: `${opts.tls === "implicit" ? "smtps" : "smtp"}://127.0.0.1:${port}`,
    received,
    get authFailures() {
      return relay.authFailures;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A TCP server that accepts connections and never says a word (a hung relay). */
export async function startSilentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => {});
  });
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (s.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const sock of sockets) sock.destroy();
        s.close(() => resolve());
      }),
  };
}

export interface RelayFixture {
  /** A temporary directory for this test file, removed afterwards. */
  readonly tmp: string;
  readonly cert: TestCert;
  /** A password file (mode 0600) holding the password of the relay's user "shoot". */
  readonly pwFile: string;
  /** A relay (STARTTLS, user "shoot" by default), closed after the test. */
  relay(opts?: Partial<RelayOptions>): Promise<TestRelay>;
  /** Something else to stop after the test. */
  onCleanup(fn: () => Promise<void>): void;
}

/** Hooks for a test file that talks to relays: a certificate, a password file, cleanup. */
export function relayFixture(prefix: string, password: string): RelayFixture {
  const cleanups: (() => Promise<void>)[] = [];
  const state = { tmp: "", cert: undefined as TestCert | undefined, pwFile: "" };
  beforeAll(async () => {
    state.tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    state.cert = await makeCert(state.tmp);
    state.pwFile = path.join(state.tmp, "smtp.pass");
    fs.writeFileSync(state.pwFile, `${password}\n`, { mode: 0o600 });
  });
  afterEach(async () => {
    await Promise.all(cleanups.splice(0).map((c) => c()));
  });
  afterAll(() => {
    if (state.tmp) fs.rmSync(state.tmp, { recursive: true, force: true });
  });
  return {
    get tmp() {
      return state.tmp;
    },
    get cert() {
      return state.cert!;
    },
    get pwFile() {
      return state.pwFile;
    },
    async relay(opts = {}) {
      const r = await startRelay({ tls: "starttls", cert: state.cert, users: { shoot: password }, ...opts });
      cleanups.push(() => r.close());
      return r;
    },
    onCleanup(fn) {
      cleanups.push(fn);
    },
  };
}
