/**
 * `shoot demo`: the whole cycle on one machine with nothing configured, in one directory.
 * A sample tree and a configuration (server and client in one file) are made there; the
 * wrapper and the client run as child processes exactly as cron would start them; the copy is
 * checked (MD5 against its .md5 file and the server's record, then restored with `shoot
 * restore` and compared with the sample tree); a second round shows 9 (UNCHANGED).
 *
 * By default the client pulls over a local path: no root, no sshd. With `ssh`, a throwaway
 * sshd on 127.0.0.1 (its own keys and config in the demo directory) serves the pull through
 * the read-only forced command, as a real server would, and is stopped afterwards.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { codeInfo, codeName, isGolden, type CodeName } from "../common/codes.ts";
import { shWord } from "../common/shell-word.ts";
import { ShootError, UsageError, errorMessage } from "../common/errors.ts";
import { authorizedKeysLine, renderConfig } from "./init.ts";
import { parseMd5Line } from "../state/naming.ts";
import { loopbackKnownHostsLine, loopbackSshdConfig } from "./sshd-config.ts";
import { CLIENT_STATUS, lastFinal, readStatusFile, SERVER_STATUS, type ArchiveInfo } from "../state/status.ts";
import { formatBytes, formatDuration } from "../common/units.ts";
import { fileDigest } from "../transfer/digest.ts";
import { freePort } from "../../io/net.ts";
import { describeResult, ToolMissingError, type Child, type RunResult, type Spawner } from "../../io/process.ts";

export interface DemoOptions {
  /** Where to work: an empty or new directory; a fresh temporary one when absent. */
  dir?: string;
  /** Pull over ssh through a throwaway sshd instead of a local path. */
  ssh: boolean;
  /** How to start shoot itself (the binary, or bun and the entry file). */
  self: readonly string[];
  /** The same as a person types it where the demo was started (what "Try next" prints). */
  selfShown: string;
  spawner: Spawner;
  env: Record<string, string | undefined>;
  print: (line: string) => void;
  signal?: AbortSignal;
}

export interface DemoResult {
  dir: string;
  config: string;
  archive: string;
  copy: string;
}

const SOURCE = "demo";
const CHILD_TIMEOUT_MS = 60_000;
const TEXT_FILES = { chapters: 10, pages: 30 };
const BINARY_BYTES = 256 * 1024;

interface Layout {
  root: string;
  sample: string;
  server: string;
  client: string;
  restored: string;
  logs: string;
  config: string;
}

/** Find a program on PATH or in the sbin directories (sshd lives there, often off a user's PATH). */
function findTool(name: string, hint: string): string {
  const found = Bun.which(name) ?? Bun.which(name, { PATH: "/usr/sbin:/sbin:/usr/local/sbin" });
  if (!found) throw new ToolMissingError(name, hint);
  return found;
}

function prepareDir(given: string | undefined): string {
  if (!given) return fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "shoot-demo-")));
  const dir = path.resolve(given);
  if (fs.existsSync(dir)) {
    if (!fs.statSync(dir).isDirectory()) throw new UsageError(`--dir ${dir} is not a directory`);
    if (fs.readdirSync(dir).length > 0) throw new UsageError(`--dir ${dir} is not empty: give a new or empty directory (the demo's first run must be a first run)`);
  } else fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return fs.realpathSync(dir);
}

/** A few hundred small text files, one binary file, a symbolic link and an empty directory. */
function makeSample(dir: string): string {
  const words = ["backup", "archive", "server", "client", "pull", "verify", "restore", "golden", "status", "checksum"];
  for (let c = 1; c <= TEXT_FILES.chapters; c++) {
    const chapter = path.join(dir, "docs", `chapter-${String(c).padStart(2, "0")}`);
    fs.mkdirSync(chapter, { recursive: true });
    for (let p = 1; p <= TEXT_FILES.pages; p++) {
      const lines = Array.from({ length: 5 + ((c * p) % 20) }, (_, i) => `${c}.${p}.${i} ${words[(c + p + i) % words.length]} ${words[(c * i + p) % words.length]}`);
      fs.writeFileSync(path.join(chapter, `page-${String(p).padStart(3, "0")}.txt`), `${lines.join("\n")}\n`);
    }
  }
  fs.mkdirSync(path.join(dir, "data"));
  fs.writeFileSync(path.join(dir, "data", "random.bin"), crypto.randomBytes(BINARY_BYTES));
  fs.symlinkSync(path.join("docs", "chapter-01", "page-001.txt"), path.join(dir, "first-page.txt"));
  fs.mkdirSync(path.join(dir, "empty"));
  fs.writeFileSync(path.join(dir, "README.txt"), "Sample files for `shoot demo`: change some and run the demo's wrapper again to see code 4.\n");
  return `${TEXT_FILES.chapters * TEXT_FILES.pages + 1} text files, a binary file (${formatBytes(BINARY_BYTES)}), a symbolic link and an empty directory`;
}

// --- the throwaway sshd ------------------------------------------------------------------------

interface DemoSshd {
  pid: number;
  port: number;
  user: string;
  identity: string;
  knownHosts: string;
  stop(): Promise<void>;
}


async function keygen(spawner: Spawner, file: string, comment: string): Promise<string> {
  const r = await spawner.run([findTool("ssh-keygen", "apt-get install openssh-client"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file], { timeoutMs: 20_000 });
  if (r.exitCode !== 0) throw new ShootError("INTERNAL_ERROR", `ssh-keygen failed: ${r.stderrTail.join(" ")}`);
  return fs.readFileSync(`${file}.pub`, "utf8").trim();
}

/**
 * sshd on 127.0.0.1 and a free port, in the foreground as our child, reading only files in
 * `dir`. The client's key may do one thing: `shoot serve --read-only BACKUP_DIR`.
 */
async function startSshd(dir: string, backupDir: string, o: DemoOptions): Promise<DemoSshd> {
  const sshd = findTool("sshd", "apt-get install openssh-server");
  findTool("ssh", "apt-get install openssh-client");
  fs.mkdirSync(dir, { mode: 0o700 });
  // as root, sshd refuses to start without its privilege-separation directory
  if (process.getuid?.() === 0) fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const hostKey = path.join(dir, "host_ed25519");
  const hostPub = await keygen(o.spawner, hostKey, "shoot-demo-host");
  const identity = path.join(dir, "client_ed25519");
  const clientPub = await keygen(o.spawner, identity, "shoot-demo-client");
  const authorized = path.join(dir, "authorized_keys");
  fs.writeFileSync(authorized, `${authorizedKeysLine(o.self, backupDir, clientPub)}\n`, { mode: 0o600 });
  const port = await freePort();
  const config = path.join(dir, "sshd_config");
  fs.writeFileSync(config, loopbackSshdConfig({
    port, hostKey, pidFile: path.join(dir, "sshd.pid"), authorizedKeys: authorized, permitRootLogin: "forced-commands-only",
  }));
  const knownHosts = path.join(dir, "known_hosts");
  fs.writeFileSync(knownHosts, loopbackKnownHostsLine(port, hostPub));

  const log = fs.openSync(path.join(dir, "sshd.log"), "a");
  let ready!: () => void;
  const listening = new Promise<void>((r) => (ready = r));
  const child: Child = o.spawner.start([sshd, "-D", "-e", "-f", config], {
    env: { PATH: o.env.PATH ?? "/usr/bin:/bin" },
    onStderrLine: (l) => {
      fs.writeSync(log, `${l}\n`);
      if (/Server listening on 127\.0\.0\.1/.test(l)) ready();
    },
  });
  const stop = async () => {
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 3000);
    await child.done.catch(() => undefined);
    clearTimeout(killer);
    fs.closeSync(log);
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const failed = new Promise<never>((_, reject) => {
    child.done.then((r) => reject(new Error(`sshd ended before it listened (${r.exitCode ?? r.signal})`)), reject);
    timer = setTimeout(() => reject(new Error("sshd did not listen within 10 s")), 10_000);
  });
  try {
    await Promise.race([listening, failed]);
  } catch (e) {
    await stop();
    throw new ShootError("INTERNAL_ERROR", `the demo's sshd did not start: ${errorMessage(e)}; see ${path.join(dir, "sshd.log")}`);
  } finally {
    clearTimeout(timer);
  }
  failed.catch(() => undefined); // its end is awaited by stop()
  const user = process.getuid?.() === 0 ? "root" : os.userInfo().username;
  return { pid: child.pid, port, user, identity, knownHosts, stop };
}

// --- runs and checks ---------------------------------------------------------------------------

class StepFailed extends ShootError {}

function failure(name: CodeName, message: string): StepFailed {
  return new StepFailed(name, message);
}

/** The code's name as a CodeName, for an error that carries a child's exit code on. */
function nameOf(n: number): CodeName {
  return (codeInfo(n)?.name ?? "INTERNAL_ERROR") as CodeName;
}

interface RunSummary {
  code: number;
  message: string;
  archive?: ArchiveInfo;
  ms: number;
  /** The log file that holds the run's whole output. */
  log: string;
}

/** Runs shoot as cron would, each run's whole output in a log file, and sums up how it ended. */
class DemoRuns {
  private running: Child | undefined;
  private runNo = 0;
  private readonly env: Record<string, string | undefined>;
  readonly onAbort = () => this.running?.kill("SIGTERM");

  constructor(private readonly o: DemoOptions, private readonly L: Layout) {
    this.env = { ...o.env, NO_COLOR: "1", SHOOT_CONFIG: undefined };
  }

  /** The next log file's name: runs are numbered in the order they ran. */
  logName(what: string): string {
    return `${String(++this.runNo).padStart(2, "0")}-${what}.log`;
  }

  async shoot(args: string[], log: string): Promise<RunResult> {
    const { o, L } = this;
    if (o.signal?.aborted) throw new ShootError("INTERRUPTED", "the demo was interrupted");
    const lines: string[] = [];
    const child = o.spawner.start([...o.self, ...args], {
      env: this.env, captureStdout: true, timeoutMs: CHILD_TIMEOUT_MS, onStderrLine: (l) => lines.push(l),
    });
    this.running = child;
    const r = await child.done;
    this.running = undefined;
    const stderr = lines.length ? `\n--- standard error ---\n${lines.join("\n")}\n` : "";
    const exit = `exit code ${r.exitCode ?? r.signal}`;
    fs.writeFileSync(path.join(L.logs, log), `$ shoot ${args.join(" ")}\n${r.stdout}${stderr}${exit}\n`);
    if (o.signal?.aborted) throw new ShootError("INTERRUPTED", "the demo was interrupted");
    if (r.timedOut) {
      throw failure("INTERNAL_ERROR", `shoot ${args[0]} did not finish within ${CHILD_TIMEOUT_MS / 1000} s; see ${path.join(L.logs, log)}`);
    }
    return r;
  }

  /** `shoot wrapper`, summed up from the status file it left. */
  async wrapper(): Promise<RunSummary> {
    const log = this.logName("wrapper");
    const r = await this.shoot(["wrapper", "--config", this.L.config], log);
    const final = lastFinal(readStatusFile(path.join(this.L.server, SERVER_STATUS))?.records ?? []);
    const s: RunSummary = final
      ? { code: final.code, message: final.msg, archive: final.archive, ms: r.durationMs, log }
      : { code: r.exitCode ?? 1, message: `no final record in ${SERVER_STATUS}; ${describeResult(r)}`, ms: r.durationMs, log };
    if (r.exitCode !== 0 && isGolden(s.code)) s.code = r.exitCode ?? 1;
    return s;
  }

  /** `shoot client --json`, summed up from the outcome it printed (its one source's). */
  async client(): Promise<RunSummary> {
    const log = this.logName("client");
    const r = await this.shoot(["client", "--config", this.L.config, "--json"], log);
    type Told = { code: number; message: string; archive?: ArchiveInfo };
    let outcome: Told & { sources?: Told[] };
    try {
      outcome = JSON.parse(r.stdout);
    } catch {
      return { code: r.exitCode ?? 1, message: `shoot client printed no outcome; ${describeResult(r)}`, ms: r.durationMs, log };
    }
    const src = outcome.sources?.[0];
    return { code: src?.code ?? outcome.code, message: src?.message ?? outcome.message, archive: src?.archive, ms: r.durationMs, log };
  }

  /** A run that did not end with `want` ends the demo, with the run's own code. */
  expectCode(what: string, s: RunSummary, want: number): void {
    if (s.code === want) return;
    const golden = isGolden(s.code);
    const why = golden ? `ended with ${s.code} ${codeName(s.code)}, not ${want} ${codeName(want)}` : `failed with ${s.code} ${codeName(s.code)}`;
    this.o.print(`✘ ${what}: ${why}: ${s.message}`);
    const output = path.join(this.L.logs, s.log);
    throw failure(golden ? "INTERNAL_ERROR" : nameOf(s.code), `${what} ${why}: ${s.message} (its whole output: ${output})`);
  }
}

function layoutOf(root: string): Layout {
  return {
    root,
    sample: path.join(root, "sample"),
    server: path.join(root, "server"),
    client: path.join(root, "client"),
    restored: path.join(root, "restored"),
    logs: path.join(root, "logs"),
    config: path.join(root, "shoot.toml"),
  };
}

/** The configuration's values: both roles on this machine, the pull over a local path or through the demo's sshd. */
function demoValues(L: Layout, sshd: DemoSshd | undefined): Record<string, string> {
  const values: Record<string, string> = {
    "server.name": JSON.stringify(SOURCE),
    "server.sources": `[${JSON.stringify(L.sample)}]`,
    "server.backup_dir": JSON.stringify(L.server),
    // a small reserve: the demo must run on a nearly full /tmp too
    "server.reserve": '"1MiB"',
    "client.dest_dir": JSON.stringify(L.client),
    "client.reserve": '"1MiB"',
    "client.source.name": JSON.stringify(SOURCE),
    "client.source.remote": JSON.stringify(L.server),
  };
  if (sshd) {
    Object.assign(values, {
      "client.known_hosts": JSON.stringify(sshd.knownHosts),
      "client.connect_timeout": '"10s"',
      "client.source.remote": JSON.stringify(`${sshd.user}@127.0.0.1:${L.server}`),
      "client.source.port": String(sshd.port),
      "client.source.identity": JSON.stringify(sshd.identity),
    });
  }
  return values;
}

/** The copy's bytes: its MD5 must be the one its .md5 file names and the one the server recorded. */
async function checkCopy(copy: string, archive: ArchiveInfo, p: (line: string) => void): Promise<string> {
  const md5 = await fileDigest(copy, "md5");
  const listed = parseMd5Line(readSmall(`${copy}.md5`), archive.file);
  if (md5 !== listed || md5 !== archive.md5) {
    p(`✘ copy check: md5 ${md5}, its .md5 file says ${listed ?? "nothing usable"}, the server recorded ${archive.md5}`);
    throw failure("VERIFY_FAILED", `the copy ${copy} does not match: md5 ${md5}, .md5 file ${listed ?? "unreadable"}, server ${archive.md5}`);
  }
  return md5;
}

/** The copy's contents: restored with shoot restore, every file, link and directory as in the sample. */
async function checkRestore(
  runs: DemoRuns, L: Layout, copy: string, p: (line: string) => void,
): Promise<{ entries: number; restoredSample: string }> {
  const args = ["restore", copy, "--to", L.restored, "--config", L.config, "--quiet"];
  const rs = await runs.shoot(args, runs.logName("restore"));
  if (rs.exitCode !== 0) {
    p(`✘ restore check: shoot restore exited with ${rs.exitCode} ${codeName(rs.exitCode ?? 1)}`);
    throw failure(nameOf(rs.exitCode ?? 1), `shoot restore of ${copy} failed: ${describeResult(rs)} (see ${L.logs})`);
  }
  const restoredSample = path.join(L.restored, L.sample.replace(/^\/+/, ""));
  const compared = compareTrees(L.sample, restoredSample);
  if (compared.problems.length) {
    const problems = compared.problems.slice(0, 5).join("; ");
    p(`✘ restore check: ${problems}`);
    throw failure("VERIFY_FAILED", `the restored files differ from the sample tree: ${problems}`);
  }
  return { entries: compared.entries, restoredSample };
}

/**
 * The whole cycle, step by step, each step printed as it ends: sample tree and configuration,
 * a first round (30 and 30), the copy checked byte for byte and restored, a second round (9
 * and 9), then where everything is and what to try next.
 */
export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  findTool("rsync", "apt-get install rsync");
  if (o.ssh) {
    findTool("sshd", "apt-get install openssh-server");
    findTool("ssh", "apt-get install openssh-client");
    findTool("ssh-keygen", "apt-get install openssh-client");
  }
  const root = prepareDir(o.dir);
  const L = layoutOf(root);
  for (const d of [L.sample, L.server, L.client, L.logs]) fs.mkdirSync(d, { mode: 0o700 });
  const p = o.print;
  const ok = (label: string, text: string) => p(`✔ ${label.padEnd(15)} ${text}`);
  const rel = (f: string) => (f.startsWith(`${root}/`) ? f.slice(root.length + 1) : f);
  p(`shoot demo in ${root}`);
  p(`(everything happens in this directory${o.ssh ? "" : "; no root and no sshd needed"})`);
  p("");

  const runs = new DemoRuns(o, L);
  o.signal?.addEventListener("abort", runs.onAbort);
  let sshd: DemoSshd | undefined;
  try {
    // 1. the sample tree and the configuration
    ok("sample tree", `${makeSample(L.sample)} in ${rel(L.sample)}/`);
    let how = "over a local path";
    if (o.ssh) {
      sshd = await startSshd(path.join(root, "ssh"), L.server, o);
      how = `over ssh through 127.0.0.1:${sshd.port}, where its key may only run \`shoot serve --read-only\``;
      ok("sshd", `pid ${sshd.pid} listening on 127.0.0.1:${sshd.port}, keys and config in ${rel(path.join(root, "ssh"))}/`);
    }
    const title = "shoot demo configuration: this machine is both the server and the backup host.";
    const text = renderConfig(title, ["server", "client", "client.source", "monitor"], demoValues(L, sshd), ["mail"]);
    fs.writeFileSync(L.config, text, { mode: 0o600 });
    ok("configuration", `${rel(L.config)}: [server] backs up sample/ into server/; [client] pulls into client/ ${how}`);

    // 2. first round: 30 and 30
    const w1 = await runs.wrapper();
    runs.expectCode("server backup (shoot wrapper)", w1, 30);
    ok("server backup", `shoot wrapper → ${w1.code} ${codeName(w1.code)}: ${w1.message} (${formatDuration(w1.ms)})`);
    const archive = w1.archive!;
    const c1 = await runs.client();
    runs.expectCode("client pull (shoot client)", c1, 30);
    ok("client pull", `shoot client → ${c1.code} ${codeName(c1.code)}: ${c1.message} (${formatDuration(c1.ms)})`);

    // 3. the copy: its bytes, then its contents
    const copy = path.join(L.client, SOURCE, archive.file);
    const md5 = await checkCopy(copy, archive, p);
    ok("copy verified", `${rel(copy)}: md5 ${md5} = its .md5 file = the server's record`);
    const restored = await checkRestore(runs, L, copy, p);
    ok("restore check", `shoot restore into ${rel(L.restored)}/: all ${restored.entries} files, links and directories match the sample tree`);

    // 4. second round: nothing changed, so 9 and 9
    const w2 = await runs.wrapper();
    runs.expectCode("second server run", w2, 9);
    ok("server again", `shoot wrapper → ${w2.code} ${codeName(w2.code)}: ${w2.message}`);
    const c2 = await runs.client();
    runs.expectCode("second client run", c2, 9);
    ok("client again", `shoot client → ${c2.code} ${codeName(c2.code)}: ${c2.message}`);

    const serverArchive = path.join(L.server, archive.file);
    const where = { serverArchive, copy, file: archive.file, restoredSample: restored.restoredSample, ssh: o.ssh };
    for (const line of whereEverythingIs(L, where)) p(line);
    for (const line of nextSteps(o.selfShown, L)) p(line);
    return { dir: root, config: L.config, archive: serverArchive, copy };
  } finally {
    o.signal?.removeEventListener("abort", runs.onAbort);
    if (sshd) {
      await sshd.stop();
      ok("sshd stopped", `pid ${sshd.pid}`);
    }
  }
}

/** Where the demo left everything, and what the golden codes mean. */
interface Places {
  serverArchive: string;
  copy: string;
  file: string;
  restoredSample: string;
  ssh: boolean;
}

function whereEverythingIs(L: Layout, w: Places): string[] {
  const rows: Array<readonly [string, string]> = [
    ["configuration", L.config],
    ["sample files", `${L.sample}/`],
    ["server archive", `${w.serverArchive} (with .md5 and .list beside it)`],
    ["server status", path.join(L.server, SERVER_STATUS)],
    ["client copy", `${w.copy} (md5sum -c ${w.file}.md5 passes in its directory)`],
    ["client status", path.join(L.client, CLIENT_STATUS)],
    ["restored files", `${w.restoredSample}/`],
    ["each run's output", `${L.logs}/`],
    ...(w.ssh ? [["sshd (stopped)", `${path.join(L.root, "ssh")}/ (config, keys, authorized_keys, log)`] as const] : []),
  ];
  const golden = [30, 4, 9].map((n) => `  ${String(n).padStart(2)} ${codeName(n).padEnd(14)} ${codeInfo(n)!.meaning}`);
  return [
    "",
    "Where everything is:",
    ...rows.map(([label, where]) => `  ${label.padEnd(18)} ${where}`),
    "",
    "The golden codes: the only final codes that mean a run ended clean (exit code 0):",
    ...golden,
  ];
}

/** The closing lines: what the other codes are, and what to try next, as the person types shoot where the demo ran. */
function nextSteps(me: string, L: Layout): string[] {
  const config = shWord(L.config);
  return [
    `Every other final code is a failure with its own number, which is also the exit code (\`${me} codes\` lists them).`,
    "",
    "Try next:",
    `  ${me} status --config ${config}`,
    `  echo changed >> ${shWord(path.join(L.sample, "README.txt"))}`,
    `  ${me} wrapper --config ${config}        # a file changed: 4 NEW_ARCHIVE`,
    `Set up real hosts with \`${me} init server\` and \`${me} init client\`.`,
    `Remove the demo with: rm -rf ${shWord(L.root)}`,
  ];
}

function readSmall(file: string): string {
  try {
    const text = fs.readFileSync(file, "utf8");
    return text.length < 4096 ? text : "";
  } catch {
    return "";
  }
}

/** Every entry under `a` must be under `b` with the same type and contents (files) or target (links). */
function compareTrees(a: string, b: string): { entries: number; problems: string[] } {
  const problems: string[] = [];
  let entries = 0;
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(a, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      entries++;
      const pa = path.join(a, r);
      const pb = path.join(b, r);
      let sb: fs.Stats;
      try {
        sb = fs.lstatSync(pb);
      } catch {
        problems.push(`${r} is missing`);
        continue;
      }
      if (e.isSymbolicLink()) {
        if (!sb.isSymbolicLink() || fs.readlinkSync(pb) !== fs.readlinkSync(pa)) problems.push(`${r}: the link differs`);
      } else if (e.isDirectory()) {
        if (!sb.isDirectory()) problems.push(`${r} is not a directory`);
        else walk(r);
      } else if (!sb.isFile() || !fs.readFileSync(pa).equals(fs.readFileSync(pb))) problems.push(`${r}: the contents differ`);
    }
  };
  walk("");
  return { entries, problems };
}
