/**
 * Sends one plain-text message through an SMTP relay with nodemailer. Knows nothing of
 * backups: it takes a rendered message and either hands it to the relay or throws a MailError
 * saying which step failed (DNS, connect, TLS, auth, sender or recipient refused, time-out),
 * so that the caller can keep the message for later and tell a person what to fix.
 */
import fs from "node:fs";
import type { NodemailerError, SMTPTransportOptions } from "nodemailer";

export interface OutgoingMail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  /** The Date header; a message sent late keeps the time it was made. */
  date?: Date;
}

export interface SendResult {
  /** Recipients the relay refused while it accepted the message for the others. */
  rejected: string[];
}

export interface Mailer {
  /** Resolves once the relay accepted the message for at least one recipient; else throws MailError. */
  send(msg: OutgoingMail): Promise<SendResult>;
}

export type MailErrorKind =
  | "config" | "dns" | "connect" | "tls" | "auth" | "sender" | "recipient" | "message" | "timeout" | "protocol";

export class MailError extends Error {
  constructor(readonly kind: MailErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MailError";
  }
}

/** What the mailer needs to reach the relay; the `[mail]` section of the configuration has this shape. */
export interface SmtpSettings {
  /** smtp://host[:port] (STARTTLS where offered) or smtps://host[:port] (implicit TLS). */
  smtp: string;
  user?: string;
  require_tls: boolean;
  ca_file?: string;
  /** Milliseconds for connecting and for each wait on the relay. */
  timeout: number;
}

export interface Relay {
  implicitTls: boolean;
  host: string;
  port: number;
  /** host:port as a person writes it, for messages. */
  label: string;
}

export function parseRelay(url: string): Relay {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new MailError("config", `smtp = ${JSON.stringify(url)} is not a URL like smtp://host:587 or smtps://host:465`);
  }
  if (u.protocol !== "smtp:" && u.protocol !== "smtps:") {
    throw new MailError("config", `smtp = ${JSON.stringify(url)}: the scheme must be smtp:// or smtps://`);
  }
  if (u.username || u.password) {
    // a password in the URL would sit in the configuration file and in every error message
    throw new MailError("config", "smtp: leave user and password out of the URL; use `user` and `password_file` (or $SHOOT_SMTP_PASSWORD)");
  }
  const implicitTls = u.protocol === "smtps:";
  const host = u.hostname.replace(/^\[|\]$/g, "");
  if (!host) throw new MailError("config", `smtp = ${JSON.stringify(url)} names no host`);
  const port = u.port ? Number(u.port) : implicitTls ? 465 : 587;
  return { implicitTls, host, port, label: `${host.includes(":") ? `[${host}]` : host}:${port}` };
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Whether the connection must be encrypted before anything is said: when asked for, and
 * whenever a password would otherwise cross the network in clear (a relay on this host is
 * the one exception).
 */
export function mustEncrypt(s: SmtpSettings, relay: Relay): boolean {
  return s.require_tls || (s.user !== undefined && !isLoopback(relay.host));
}

/** How the connection is protected, in words, for `shoot mail --test`. */
export function describeSecurity(s: SmtpSettings): string {
  const relay = parseRelay(s.smtp);
  if (relay.implicitTls) return "implicit TLS (smtps)";
  return mustEncrypt(s, relay) ? "STARTTLS, required" : "STARTTLS when the relay offers it";
}

export function createSmtpMailer(settings: SmtpSettings, password: string | undefined): Mailer {
  return {
    async send(msg: OutgoingMail): Promise<SendResult> {
      const relay = parseRelay(settings.smtp);
      if (settings.user !== undefined && password === undefined) {
        throw new MailError("config", `user = ${JSON.stringify(settings.user)} is set but there is no password: set password_file or $SHOOT_SMTP_PASSWORD`);
      }
      let ca: Buffer | undefined;
      if (settings.ca_file) {
        try {
          ca = fs.readFileSync(settings.ca_file);
        } catch (e) {
          throw new MailError("config", `ca_file ${settings.ca_file} cannot be read: ${(e as Error).message}`, { cause: e });
        }
      }
      const encrypt = mustEncrypt(settings, relay);
      const options: SMTPTransportOptions = {
        host: relay.host,
        port: relay.port,
        secure: relay.implicitTls,
        requireTLS: encrypt && !relay.implicitTls,
        connectionTimeout: settings.timeout,
        greetingTimeout: settings.timeout,
        socketTimeout: settings.timeout,
        // a little under the connect time-out, so that a resolver that never answers is named as such
        dnsTimeout: Math.max(1, Math.round(settings.timeout * 0.9)),
        tls: { ca, minVersion: "TLSv1.2" },
        auth: settings.user !== undefined ? { user: settings.user, pass: password } : undefined,
        logger: false,
      };
      // loaded only when a report is mailed: most runs of most commands never need it
      const { default: nodemailer } = await import("nodemailer");
      const transport = nodemailer.createTransport(options);
      try {
        const info = await transport.sendMail({
          from: msg.from,
          to: msg.to,
          subject: msg.subject,
          text: msg.text,
          date: msg.date,
          // automated mail: no vacation replies, no loops (RFC 3834)
          headers: { "Auto-Submitted": "auto-generated" },
          // each wait is bounded by `timeout`; this bounds the whole conversation as well
          signal: AbortSignal.timeout(settings.timeout * 3),
        });
        return { rejected: (info.rejected ?? []).map(String) };
      } catch (e) {
        throw classify(e as NodemailerError, relay, settings, encrypt);
      } finally {
        transport.close();
      }
    },
  };
}

const TLS_CODES = /CERT|SELF_SIGNED|TLS|SSL|UNABLE_TO_|HOSTNAME|ALTNAME|VERIFY/i;

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function reply(e: NodemailerError): string {
  return (e.response ?? e.message).replace(/\s+/g, " ").trim();
}

/** A nodemailer error as a MailError whose message names the step and what to check. */
export function classify(e: NodemailerError, relay: Relay, s: SmtpSettings, encrypt: boolean): MailError {
  const at = `the relay ${relay.label}`;
  const orig = e.originalCode ?? "";
  const mk = (kind: MailErrorKind, message: string) => new MailError(kind, message, { cause: e });
  switch (e.code) {
    case "EDNS":
      return mk("dns", `cannot resolve the relay's host name ${relay.host}: ${orig || e.message}`);
    case "ETIMEDOUT":
    case "EABORT": {
      const what: Record<string, string> = {
        CONNECT_TIMEOUT: `no connection to ${at} within ${seconds(s.timeout)}`,
        GREETING_TIMEOUT: `${at} accepted the connection but sent no greeting within ${seconds(s.timeout)}`,
        UPGRADE_TIMEOUT: `the TLS handshake with ${at} did not finish within ${seconds(s.timeout)}`,
        SOCKET_TIMEOUT: `${at} stopped answering (${seconds(s.timeout)} without a reply)`,
      };
      return mk("timeout", what[e.timeoutType ?? ""] ?? `${at} did not finish the conversation in time (timeout = ${seconds(s.timeout)})`);
    }
    case "ETLS":
      if (e.command === "STARTTLS" && encrypt) {
        const why = s.require_tls ? "require_tls is set" : "a password must not cross the network unencrypted";
        return mk("tls", `${at} does not offer STARTTLS (${reply(e)}); refusing to send unencrypted because ${why}`);
      }
      return mk("tls", `TLS with ${at} failed: ${e.message}`);
    case "EAUTH":
      return mk("auth", `${at} refused the login of user ${JSON.stringify(s.user ?? "")}: ${reply(e)}`);
    case "ENOAUTH":
      return mk("auth", `${at} asks for a login: set user and password_file (or $SHOOT_SMTP_PASSWORD)`);
    case "EENVELOPE":
      if (e.command === "MAIL FROM") return mk("sender", `${at} refused the sender address: ${reply(e)}`);
    {
      const who = e.rejected?.length ? ` ${e.rejected.join(", ")}` : "";
      return mk("recipient", `${at} refused the recipient${(e.rejected?.length ?? 0) > 1 ? "s" : ""}${who}: ${reply(e)}`);
    }
    case "EMESSAGE":
      return mk("message", `${at} refused the message: ${reply(e)}`);
  }
  if (TLS_CODES.test(orig) || /certificate|ssl|tls|handshake/i.test(e.message)) {
    const hint = /SELF_SIGNED|UNABLE_TO_|CERT_UNTRUSTED|SELF_SIGNED_CERT_IN_CHAIN/.test(orig)
      ? "; for a relay with a private certificate set ca_file"
      : relay.implicitTls && /wrong version|packet length|unknown protocol/i.test(e.message)
        ? "; smtps:// needs a port that speaks TLS from the start (usually 465), use smtp:// for STARTTLS"
        : "";
    return mk("tls", `TLS with ${at} failed: ${e.message}${orig ? ` (${orig})` : ""}${hint}`);
  }
  if (orig === "ETIMEDOUT") return mk("timeout", `no connection to ${at} within ${seconds(s.timeout)}`);
  if (orig === "ECONNREFUSED") return mk("connect", `cannot connect to ${at}: connection refused (nothing listening there?)`);
  if (e.code === "ESOCKET" || e.code === "ECONNECTION") {
    return mk("connect", `cannot talk to ${at}: ${e.message}${orig && !e.message.includes(orig) ? ` (${orig})` : ""}`);
  }
  return mk("protocol", `sending through ${at} failed: ${e.message}${e.code ? ` (${e.code})` : ""}`);
}
