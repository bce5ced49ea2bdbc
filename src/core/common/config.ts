/**
 * Configuration: one TOML file. The KEYS table below is the single description of every key;
 * validation, defaults, `shoot init`'s commented example and the README reference follow it.
 * parseConfig is pure (text in, typed config or ConfigError out); loadConfig reads the file.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ShootError } from "./errors.ts";
import { parseDuration, parseSize } from "./units.ts";

export type Section = "server" | "client" | "client.source" | "mail" | "monitor";
export type KeyType =
  | "string" | "strings" | "name" | "int" | "bool" | "size" | "duration"
  | "path" | "paths" | "enum" | "smtp-url";

export interface KeyDef {
  section: Section;
  key: string;
  type: KeyType;
  required?: boolean;
  /** Default as written in TOML (documentation and the example config). */
  default?: string;
  values?: readonly string[];
  min?: number;
  max?: number;
  doc: string;
  /** Example value (TOML) for `shoot init` when there is no default. */
  example?: string;
}

/**
 * The environment variable that may carry the SMTP password instead of password_file. Only
 * the mail sender reads it; the wrapper and rsync strip it from their children's environment.
 */
export const PASSWORD_ENV = "SHOOT_SMTP_PASSWORD";

export const KEYS: readonly KeyDef[] = [
  // [server]
  { section: "server", key: "name", type: "name", default: "the host name", doc: "Archive prefix and the name this host's backups go by.", example: '"web1"' },
  { section: "server", key: "sources", type: "paths", required: true, doc: "Absolute paths to back up (directories or files).", example: '["/etc", "/home"]' },
  { section: "server", key: "exclude", type: "strings", default: "[]", doc: "Patterns left out: `*.tmp` matches a name anywhere; `/home/*/.cache` matches from the root; `*` stays within one path segment, `**` crosses them.", example: '["*.tmp", "/home/*/.cache"]' },
  { section: "server", key: "one_file_system", type: "bool", default: "false", doc: "Stay on the file systems the sources are on: a directory where another file system is mounted is archived empty, as its mount point (like tar --one-file-system). Pseudo file systems (/proc, /sys, /dev, /dev/pts, cgroups, autofs …) are never walked into, whatever this says." },
  { section: "server", key: "backup_dir", type: "path", required: true, doc: "Where archives, checksum files, file lists and server.status are kept.", example: '"/var/backups/shoot"' },
  { section: "server", key: "keep", type: "int", min: 1, max: 10000, default: "2", doc: "Archives kept on the server (with their checksum files); the oldest beyond are removed after a new one is complete." },
  { section: "server", key: "compression", type: "enum", values: ["gzip", "zstd", "none"], default: '"gzip"', doc: "Archive compression: gzip (.tar.gz), zstd (.tar.zst) or none (.tar)." },
  { section: "server", key: "level", type: "int", min: 1, max: 19, default: "6 for gzip, 3 for zstd", doc: "Compression level (gzip 1-9, zstd 1-19)." },
  { section: "server", key: "reserve", type: "size", default: '"1GiB"', doc: "Free space always left on backup_dir's file system; a run that would eat into it fails with NO_SPACE." },
  { section: "server", key: "make_room", type: "bool", default: "false", doc: "When space is short, remove the oldest archives (never the newest) to make room instead of failing." },
  { section: "server", key: "max_runtime", type: "duration", default: '"6h"', doc: "The wrapper stops a server run that takes longer (SIGTERM, then SIGKILL after kill_grace)." },
  { section: "server", key: "kill_grace", type: "duration", default: '"30s"', doc: "Time between SIGTERM and SIGKILL when the wrapper stops the server." },
  // [client]
  { section: "client", key: "dest_dir", type: "path", required: true, doc: "Where verified copies are kept: one sub-directory per source, plus client.status.", example: '"/srv/shoot"' },
  { section: "client", key: "keep", type: "int", min: 1, max: 10000, default: "7", doc: "Verified copies kept per source; beyond them the ones verified longest ago are removed, never the one verified last (whatever the archives' names say)." },
  { section: "client", key: "max_age", type: "duration", default: '"1d"', doc: "A server.status older than this means the server did not run (STATUS_STALE)." },
  { section: "client", key: "concurrency", type: "int", min: 1, max: 64, default: "4", doc: "Sources pulled at once." },
  { section: "client", key: "reserve", type: "size", default: '"1GiB"', doc: "Free space always left on dest_dir's file system." },
  { section: "client", key: "timeout", type: "duration", default: '"10m"', doc: "rsync --timeout: a transfer with no data for this long is given up (and resumed by the next run)." },
  { section: "client", key: "connect_timeout", type: "duration", default: '"30s"', doc: "ssh ConnectTimeout." },
  { section: "client", key: "accept_new_host_key", type: "bool", default: "false", doc: "Accept and remember the host key of a server seen for the first time (ssh StrictHostKeyChecking=accept-new). A changed key is always refused." },
  { section: "client", key: "known_hosts", type: "path", default: "ssh's default", doc: "known_hosts file for the servers' host keys." },
  { section: "client", key: "verify", type: "enum", values: ["deep", "checksum"], default: '"deep"', doc: "How a pulled copy is verified before it counts: \"deep\" also pulls the server's file list and reads the copy's whole tar stream, checking every entry against that list; \"checksum\" checks the SHA-256 alone (for hosts that cannot afford reading each copy once more)." },
  // [[client.source]]
  { section: "client.source", key: "name", type: "name", required: true, doc: "Name of the source: its copies go to dest_dir/<name>/.", example: '"web1"' },
  { section: "client.source", key: "remote", type: "string", required: true, doc: "user@host:/path of the server's backup_dir, or a local absolute path.", example: '"backup@web1.example.com:/var/backups/shoot"' },
  { section: "client.source", key: "port", type: "int", min: 1, max: 65535, default: "22", doc: "ssh port." },
  { section: "client.source", key: "identity", type: "path", default: "ssh's default", doc: "Private key file for ssh." },
  { section: "client.source", key: "bwlimit", type: "size", default: "no limit", doc: "Bandwidth limit per second for rsync (e.g. \"10MiB\")." },
  // [mail]
  { section: "mail", key: "to", type: "strings", required: true, doc: "Recipients of the report.", example: '["ops@example.com"]' },
  { section: "mail", key: "from", type: "string", required: true, doc: "Sender address.", example: '"shoot@web1.example.com"' },
  { section: "mail", key: "smtp", type: "smtp-url", required: true, doc: "Relay: smtp://host:587 (STARTTLS where offered) or smtps://host:465 (implicit TLS).", example: '"smtp://mail.example.com:587"' },
  { section: "mail", key: "user", type: "string", default: "no authentication", doc: "SMTP user name." },
  { section: "mail", key: "password_file", type: "path", default: "none", doc: `File holding the SMTP password (keep it mode 0600); or set $${PASSWORD_ENV}.` },
  { section: "mail", key: "when", type: "enum", values: ["always", "failure", "never"], default: '"failure"', doc: "When to mail the report." },
  { section: "mail", key: "require_tls", type: "bool", default: "false", doc: "Refuse to send unless the connection is encrypted (STARTTLS or smtps)." },
  { section: "mail", key: "ca_file", type: "path", default: "system CAs", doc: "CA certificate (PEM) for a relay with a private certificate." },
  { section: "mail", key: "timeout", type: "duration", default: '"60s"', doc: "Time-out for connecting to and talking with the relay." },
  { section: "mail", key: "spool_dir", type: "path", default: "backup_dir or dest_dir + /mail-spool", doc: "Reports that could not be sent wait here for the next run." },
  { section: "mail", key: "spool_max", type: "int", min: 1, max: 10000, default: "100", doc: "Reports kept in the spool at most; the oldest are dropped beyond (and the report says so)." },
  // [monitor]
  { section: "monitor", key: "max_age", type: "duration", default: '"26h"', doc: "`shoot status` calls a role stale (STATUS_STALE) when its last finished run, or a source's last good pull, is older than this: a daily run plus slack." },
  { section: "monitor", key: "unchanged_warn", type: "duration", default: '"7d"', doc: "Warn (UNCHANGED_TOO_LONG) when the server has answered 'nothing changed' (9) for longer than this; \"0s\" turns the warning off." },
  { section: "monitor", key: "space_warn_days", type: "int", min: 0, max: 3650, default: "14", doc: "Warn (SPACE_LOW) when free space will run out within this many days at the growth of the archives held; 0 turns the warning off." },
  { section: "monitor", key: "metrics_file", type: "path", default: "none", doc: "Prometheus node_exporter textfile (e.g. /var/lib/node_exporter/textfile/shoot.prom), replaced atomically after every run." },
  { section: "monitor", key: "healthcheck_url", type: "string", default: "none", doc: "healthchecks-style URL pinged at the start (/start), success and failure (/<code>) of every run; `{role}` in it becomes server or client. A failed ping never changes the outcome.", example: '"https://hc-ping.com/your-uuid"' },
];

export type Compression = "gzip" | "zstd" | "none";

export interface ServerConfig {
  name: string;
  sources: string[];
  exclude: string[];
  one_file_system: boolean;
  backup_dir: string;
  keep: number;
  compression: Compression;
  level: number;
  reserve: number;
  make_room: boolean;
  max_runtime: number;
  kill_grace: number;
}

export interface SourceConfig {
  name: string;
  remote: string;
  port: number;
  identity?: string;
  bwlimit?: number;
}

export interface ClientConfig {
  dest_dir: string;
  keep: number;
  max_age: number;
  concurrency: number;
  reserve: number;
  timeout: number;
  connect_timeout: number;
  accept_new_host_key: boolean;
  known_hosts?: string;
  verify: "deep" | "checksum";
  sources: SourceConfig[];
}

export interface MailConfig {
  to: string[];
  from: string;
  smtp: string;
  user?: string;
  password_file?: string;
  when: "always" | "failure" | "never";
  require_tls: boolean;
  ca_file?: string;
  timeout: number;
  spool_dir?: string;
  spool_max: number;
}

export interface Config {
  file: string;
  server?: ServerConfig;
  client?: ClientConfig;
  mail?: MailConfig;
  monitor?: MonitorConfig;
}

export interface MonitorConfig {
  max_age: number;
  unchanged_warn: number;
  space_warn_days: number;
  metrics_file?: string;
  healthcheck_url?: string;
}

export const DEFAULT_CONFIG_PATH = "/etc/shoot/shoot.toml";

/** `--config FILE`, else $SHOOT_CONFIG, else /etc/shoot/shoot.toml. */
export function resolveConfigPath(flag: string | undefined, env: Record<string, string | undefined>): string {
  return flag || env.SHOOT_CONFIG || DEFAULT_CONFIG_PATH;
}

export class ConfigError extends ShootError {
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly key: string | undefined,
    readonly problem: string,
    missing = false,
  ) {
    super(missing ? "CONFIG_MISSING" : "CONFIG_INVALID", `${file}${line ? `:${line}` : ""}: ${key ? `${key}: ` : ""}${problem}`);
    this.name = "ConfigError";
  }
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function describe(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v instanceof Date || (typeof v === "object" && v !== null && "isDate" in v)) return "a date";
  if (typeof v === "object" && v !== null) return "a table";
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

function expectation(d: KeyDef): string {
  switch (d.type) {
    case "string": return "a string";
    case "strings": return "an array of strings";
    case "name": return "a name of letters, digits, '.', '_' or '-' (up to 64, not starting with a punctuation mark)";
    case "int": return `a whole number${d.min !== undefined ? ` from ${d.min}` : ""}${d.max !== undefined ? ` to ${d.max}` : ""}`;
    case "bool": return "true or false";
    case "size": return 'a size like "512MiB", "10GB" or a number of bytes';
    case "duration": return 'a duration like "90s", "30m", "6h" or "1d"';
    case "path": return "an absolute path (a string starting with /)";
    case "paths": return "an array of absolute paths";
    case "enum": return `one of ${d.values!.map((v) => JSON.stringify(v)).join(", ")}`;
    case "smtp-url": return 'an SMTP URL like "smtp://host:587" or "smtps://host:465"';
  }
}

/** The value converted to its typed form, or undefined when it does not fit the key's type. */
function convert(d: KeyDef, v: unknown): unknown {
  const isAbs = (s: unknown) => typeof s === "string" && path.isAbsolute(s) && !s.includes("\0");
  switch (d.type) {
    case "string": return typeof v === "string" && v !== "" ? v : undefined;
    case "strings": return Array.isArray(v) && v.every((s) => typeof s === "string" && s !== "") ? v : undefined;
    case "name": return typeof v === "string" && NAME_RE.test(v) ? v : undefined;
    case "int": {
      const n = typeof v === "bigint" ? Number(v) : v;
      if (typeof n !== "number" || !Number.isInteger(n)) return undefined;
      if ((d.min !== undefined && n < d.min) || (d.max !== undefined && n > d.max)) return undefined;
      return n;
    }
    case "bool": return typeof v === "boolean" ? v : undefined;
    case "size": return typeof v === "string" || typeof v === "number" ? parseSize(v) : undefined;
    case "duration": return typeof v === "string" ? parseDuration(v) : undefined;
    case "path": return isAbs(v) ? path.normalize(v as string) : undefined;
    case "paths": return Array.isArray(v) && v.length > 0 && v.every(isAbs) ? v.map((s) => path.normalize(s)) : undefined;
    case "enum": return typeof v === "string" && d.values!.includes(v) ? v : undefined;
    case "smtp-url": {
      if (typeof v !== "string") return undefined;
      try {
        const u = new URL(v);
        return (u.protocol === "smtp:" || u.protocol === "smtps:") && u.hostname ? v : undefined;
      } catch {
        return undefined;
      }
    }
  }
}

/** 1-based line of `key` inside the n-th occurrence of section header `[section]`/`[[section]]`. */
export function findKeyLine(text: string, section: string, key: string | undefined, index = 0): number | undefined {
  const lines = text.split("\n");
  let current = "";
  let seen = -1;
  let headerLine: number | undefined;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    const h = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(l);
    if (h) {
      current = h[1]!.replace(/\s*\.\s*/g, ".").replace(/"/g, "");
      if (current === section) {
        seen++;
        if (seen === index) headerLine = i + 1;
      }
      continue;
    }
    if (current === section && seen === index && key) {
      const m = /^("?)([A-Za-z0-9_-]+)\1\s*=/.exec(l);
      if (m && m[2] === key) return i + 1;
    }
  }
  return headerLine;
}

type Table = Record<string, unknown>;

function validateTable(
  file: string, text: string, section: Section, label: string, t: Table, index = 0,
): Record<string, unknown> {
  const defs = KEYS.filter((d) => d.section === section);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(t)) {
    if (section === "client" && k === "source") continue;
    const d = defs.find((x) => x.key === k);
    if (!d) {
      const known = defs.map((x) => x.key).join(", ");
      throw new ConfigError(file, findKeyLine(text, section, k, index), `${label} ${k}`, `unknown key (known keys: ${known})`);
    }
    const v = convert(d, t[k]);
    if (v === undefined) {
      throw new ConfigError(file, findKeyLine(text, section, k, index), `${label} ${k}`, `expected ${expectation(d)}, got ${describe(t[k])}`);
    }
    out[k] = v;
  }
  for (const d of defs) {
    if (d.required && !(d.key in out)) {
      throw new ConfigError(file, findKeyLine(text, section, undefined, index), `${label} ${d.key}`, `missing required key: expected ${expectation(d)}`);
    }
  }
  return out;
}

function withDefaults<T>(section: Section, values: Record<string, unknown>, dynamic: Record<string, unknown> = {}): T {
  const out: Record<string, unknown> = {};
  for (const d of KEYS.filter((x) => x.section === section)) {
    if (d.key in values) out[d.key] = values[d.key];
    else if (d.key in dynamic) out[d.key] = dynamic[d.key];
    else if (d.default !== undefined) {
      const parsed = safeParseLiteral(d.default);
      if (parsed !== undefined) out[d.key] = convert(d, parsed);
    }
  }
  return out as T;
}

function safeParseLiteral(lit: string): unknown {
  try {
    return (parseToml(`v = ${lit}`) as Table).v;
  } catch {
    return undefined; // a default described in words ("the host name") is filled in by the caller
  }
}

/** Parse and validate configuration text. Pure apart from the host name default. */
export function parseConfig(text: string, file: string, hostname: string = os.hostname()): Config {
  let doc: Table;
  try {
    doc = parseToml(text) as Table;
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split("\n")[0];
      throw new ConfigError(file, e.line, undefined, `TOML syntax error at column ${e.column}: ${first}`);
    }
    throw e;
  }
  const cfg: Config = { file };
  for (const k of Object.keys(doc)) {
    if (!["server", "client", "mail", "monitor"].includes(k)) {
      throw new ConfigError(file, findKeyLine(text, k, undefined) ?? findKeyLine(text, "", k), k, "unknown section or key (known sections: [server], [client], [[client.source]], [mail], [monitor])");
    }
    const v = doc[k];
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new ConfigError(file, findKeyLine(text, "", k), k, `expected a table [${k}], got ${describe(v)}`);
    }
  }
  if (doc.server) {
    const v = validateTable(file, text, "server", "[server]", doc.server as Table);
    const compression = (v.compression as Compression | undefined) ?? "gzip";
    const level = v.level as number | undefined;
    if (level !== undefined && compression === "gzip" && level > 9) {
      throw new ConfigError(file, findKeyLine(text, "server", "level"), "[server] level", `expected 1 to 9 for gzip, got ${level}`);
    }
    cfg.server = withDefaults<ServerConfig>("server", v, {
      name: sanitizeHostname(hostname),
      level: compression === "zstd" ? 3 : 6,
    });
  }
  if (doc.client) {
    const t = doc.client as Table;
    const v = validateTable(file, text, "client", "[client]", t);
    const rawSources = t.source ?? [];
    if (!Array.isArray(rawSources)) {
      throw new ConfigError(file, findKeyLine(text, "client", "source"), "[client] source", "expected [[client.source]] tables");
    }
    const sources: SourceConfig[] = rawSources.map((s, i) => {
      if (typeof s !== "object" || s === null || Array.isArray(s)) {
        throw new ConfigError(file, findKeyLine(text, "client.source", undefined, i), `[[client.source]] #${i + 1}`, "expected a table");
      }
      const label = `[[client.source]] #${i + 1}`;
      const sv = validateTable(file, text, "client.source", label, s as Table, i);
      return withDefaults<SourceConfig>("client.source", sv);
    });
    const seen = new Set<string>();
    sources.forEach((s, i) => {
      if (seen.has(s.name)) {
        throw new ConfigError(file, findKeyLine(text, "client.source", "name", i), `[[client.source]] #${i + 1} name`, `duplicate source name ${JSON.stringify(s.name)}`);
      }
      seen.add(s.name);
      if (!isLocalRemote(s.remote) && !parseRemote(s.remote)) {
        throw new ConfigError(file, findKeyLine(text, "client.source", "remote", i), `[[client.source]] #${i + 1} remote`, `expected user@host:/absolute/path or an absolute local path, got ${JSON.stringify(s.remote)}`);
      }
    });
    if (sources.length === 0) {
      throw new ConfigError(file, findKeyLine(text, "client", undefined), "[[client.source]]", "missing: a [client] needs at least one [[client.source]] table");
    }
    cfg.client = { ...withDefaults<Omit<ClientConfig, "sources">>("client", v), sources };
  }
  if (doc.mail) {
    const v = validateTable(file, text, "mail", "[mail]", doc.mail as Table);
    cfg.mail = withDefaults<MailConfig>("mail", v);
  }
  // always present: `shoot status` and the metrics need the defaults even without [monitor]
  const mv = doc.monitor ? validateTable(file, text, "monitor", "[monitor]", doc.monitor as Table) : {};
  if (typeof mv.healthcheck_url === "string" && !/^https?:\/\/[^/\s]+/i.test(mv.healthcheck_url)) {
    throw new ConfigError(file, findKeyLine(text, "monitor", "healthcheck_url"), "[monitor] healthcheck_url", `expected an http:// or https:// URL, got ${JSON.stringify(mv.healthcheck_url)}`);
  }
  cfg.monitor = withDefaults<MonitorConfig>("monitor", mv);
  return cfg;
}

export function sanitizeHostname(h: string): string {
  const short = h.split(".")[0] ?? "";
  const clean = short.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 64);
  return clean || "host";
}

export function isLocalRemote(remote: string): boolean {
  return remote.startsWith("/");
}

export interface RemoteSpec {
  user?: string;
  host: string;
  path: string;
}

/**
 * `[user@]host:/abs/path`. Host and user are restricted to characters that cannot be taken
 * for an ssh option or a shell word, so they can be handed to ssh as they are.
 */
export function parseRemote(remote: string): RemoteSpec | undefined {
  const m = /^(?:([A-Za-z0-9._][A-Za-z0-9._-]*)@)?([A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]):(\/[^\0\n]*)$/.exec(remote);
  if (!m) return undefined;
  return { user: m[1], host: m[2]!.replace(/^\[|\]$/g, ""), path: m[3]! };
}

/** Read and parse the configuration file. */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    const c = (e as { code?: string }).code;
    const why = c === "ENOENT" ? "does not exist (give --config FILE or set $SHOOT_CONFIG)" : c === "EACCES" ? "cannot be read: permission denied" : c === "EISDIR" ? "is a directory, not a file" : `cannot be read: ${(e as Error).message}`;
    throw new ConfigError(file, undefined, undefined, `configuration file ${why}`, true);
  }
  return parseConfig(text, file);
}

export function requireServer(cfg: Config): ServerConfig {
  if (!cfg.server) throw new ConfigError(cfg.file, undefined, "[server]", "missing: this command needs a [server] section", true);
  return cfg.server;
}

export function requireClient(cfg: Config): ClientConfig {
  if (!cfg.client) throw new ConfigError(cfg.file, undefined, "[client]", "missing: this command needs a [client] section", true);
  return cfg.client;
}
