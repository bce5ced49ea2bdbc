/**
 * Configuration: one TOML file. The KEYS table below is the single description of every key;
 * validation, defaults, `shoot init`'s commented example and docs/configuration.md follow it.
 * parseConfig is pure (text in, typed config or ConfigError out); loadConfig reads the file.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ShootError } from "./errors.ts";
import { parseDuration, parseSize } from "./units.ts";
import {
  DUMP_KEYS, HOOK_KEYS, isProblem, keptAtMost, resolveDump, resolveRetention, retentionKeys, setsRetention, type DumpConfig, type Problem,
} from "./config-tiers.ts";
import type { RetentionRules } from "../state/retention.ts";

export type { DumpConfig } from "./config-tiers.ts";

export type Section = "server" | "server.dump" | "client" | "client.source" | "mail" | "monitor" | "offsite";
export type KeyType =
  | "string" | "strings" | "name" | "int" | "bool" | "size" | "duration"
  | "path" | "paths" | "enum" | "smtp-url" | "every" | "argv";

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
  { section: "server", key: "keep", type: "int", min: 1, max: 10000, default: "2", doc: "Archives kept on the server (with their checksum files); the oldest beyond are removed after a new one is complete. The same as keep_last; the keep_* keys below keep daily, weekly … archives (docs/retention.md)." },
  { section: "server", key: "compression", type: "enum", values: ["gzip", "zstd", "none"], default: '"gzip"', doc: "Archive compression: gzip (.tar.gz), zstd (.tar.zst) or none (.tar)." },
  { section: "server", key: "level", type: "int", min: 1, max: 19, default: "6 for gzip, 3 for zstd", doc: "Compression level (gzip 1-9, zstd 1-19)." },
  { section: "server", key: "reserve", type: "size", default: '"1GiB"', doc: "Free space always left on backup_dir's file system; a run that would eat into it fails with NO_SPACE." },
  { section: "server", key: "make_room", type: "bool", default: "false", doc: "When space is short, remove the oldest archives (never the newest) to make room instead of failing." },
  { section: "server", key: "incremental", type: "enum", values: ["off", "differential", "chain"], default: '"off"', doc: "Incremental archives in GNU tar's incremental format (docs/incremental.md): \"differential\" holds what changed since the last full archive (a restore needs two archives), \"chain\" what changed since the archive before (smallest, a restore needs the whole chain); \"off\" makes a full archive every time." },
  { section: "server", key: "full_every", type: "every", default: '"7d"', doc: "With incremental on: a full archive when the last one is this old (a duration, with an hour's slack for the run's start time) or every this many archives (a number); and whenever the last full or a link of its chain is missing or damaged." },
  { section: "server", key: "max_runtime", type: "duration", default: '"6h"', doc: "The wrapper stops a server run that takes longer (SIGTERM, then SIGKILL after kill_grace)." },
  { section: "server", key: "kill_grace", type: "duration", default: '"30s"', doc: "Time between SIGTERM and SIGKILL when the wrapper stops the server." },
  ...retentionKeys("server"),
  ...HOOK_KEYS,
  ...DUMP_KEYS,
  // [client]
  { section: "client", key: "dest_dir", type: "path", required: true, doc: "Where verified copies are kept: one sub-directory per source, plus client.status.", example: '"/srv/shoot"' },
  { section: "client", key: "keep", type: "int", min: 1, max: 10000, default: "7", doc: "Verified copies kept per source; beyond them the ones verified longest ago are removed, never the one verified last (whatever the archives' names say). The same as keep_last; the keep_* keys below keep daily, weekly … copies (docs/retention.md)." },
  { section: "client", key: "max_age", type: "duration", default: '"1d"', doc: "A server.status older than this means the server did not run (STATUS_STALE)." },
  { section: "client", key: "concurrency", type: "int", min: 1, max: 64, default: "4", doc: "Sources pulled at once." },
  { section: "client", key: "reserve", type: "size", default: '"1GiB"', doc: "Free space always left on dest_dir's file system." },
  { section: "client", key: "timeout", type: "duration", default: '"10m"', doc: "rsync --timeout: a transfer with no data for this long is given up (and resumed by the next run)." },
  { section: "client", key: "connect_timeout", type: "duration", default: '"30s"', doc: "ssh ConnectTimeout." },
  { section: "client", key: "accept_new_host_key", type: "bool", default: "false", doc: "Accept and remember the host key of a server seen for the first time (ssh StrictHostKeyChecking=accept-new). A changed key is always refused." },
  { section: "client", key: "known_hosts", type: "path", default: "ssh's default", doc: "known_hosts file for the servers' host keys." },
  { section: "client", key: "verify", type: "enum", values: ["deep", "checksum"], default: '"deep"', doc: "How a pulled copy is verified before it counts: \"deep\" also pulls the server's file list and reads the copy's whole tar stream, checking every entry against that list; \"checksum\" checks the SHA-256 alone (for hosts that cannot afford reading each copy once more)." },
  ...retentionKeys("client"),
  // [[client.source]]
  { section: "client.source", key: "name", type: "name", required: true, doc: "Name of the source: its copies go to dest_dir/<name>/.", example: '"web1"' },
  { section: "client.source", key: "remote", type: "string", required: true, doc: "user@host:/path of the server's backup_dir, or a local absolute path.", example: '"backup@web1.example.com:/var/backups/shoot"' },
  { section: "client.source", key: "port", type: "int", min: 1, max: 65535, default: "22", doc: "ssh port." },
  { section: "client.source", key: "identity", type: "path", default: "ssh's default", doc: "Private key file for ssh." },
  { section: "client.source", key: "bwlimit", type: "size", default: "no limit", doc: "Bandwidth limit per second for rsync (e.g. \"10MiB\")." },
  { section: "client.source", key: "keep", type: "int", min: 1, max: 10000, default: "[client]'s rules", doc: "Copies of this source kept (keep_last); a source that sets any keep key takes its rules from its own keys only." },
  ...retentionKeys("client.source"),
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
  // [[offsite]] (checked further in parseOffsite)
  { section: "offsite", key: "name", type: "name", required: true, doc: "Name of the store, as reports and `shoot offsite --store` call it.", example: '"aws"' },
  { section: "offsite", key: "endpoint", type: "string", required: true, doc: "The store's S3 URL: https://s3.eu-central-1.amazonaws.com, http://rgw.example.com:7480, https://minio.example.com:9000. Buckets are addressed path-style (endpoint/bucket/key).", example: '"https://s3.eu-central-1.amazonaws.com"' },
  { section: "offsite", key: "region", type: "string", default: '"us-east-1"', doc: "Region the requests are signed for (Ceph and MinIO accept us-east-1)." },
  { section: "offsite", key: "bucket", type: "string", required: true, doc: "Bucket the copies go to; it must exist (with Object Lock enabled when `lock` is set).", example: '"backups-offsite"' },
  { section: "offsite", key: "prefix", type: "string", default: "none", doc: "Put before every key: objects are <prefix><source>/<archive>, plus .md5 (and .list)." },
  { section: "offsite", key: "credentials_file", type: "path", default: "$AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY", doc: "File with `aws_access_key_id = …` and `aws_secret_access_key = …` lines (keep it mode 0600). Give these credentials no right to delete versions or bypass governance locks where the store allows it." },
  { section: "offsite", key: "storage_class", type: "string", default: "the bucket's default", doc: "S3 storage class of the objects (STANDARD, STANDARD_IA, …)." },
  { section: "offsite", key: "sources", type: "strings", default: "all sources", doc: "Sources whose copies go to this store.", example: '["web1"]' },
  { section: "offsite", key: "keep", type: "int", min: 1, max: 10000, default: "[client] keep", doc: "Copies kept per source in the store by `shoot offsite prune`; never the newest, never one still locked." },
  { section: "offsite", key: "lock", type: "string", default: "no lock", doc: "Object Lock retention set on every object sent: \"governance 30d\" or \"compliance 90d\". Until then the object cannot be deleted or overwritten (compliance: by nobody, not even the bucket's owner).", example: '"compliance 30d"' },
  { section: "offsite", key: "encrypt_to", type: "strings", default: "no encryption", doc: "age recipients (age1…): copies are encrypted for them while they stream up, as <archive>.age; `age -d -i KEY` or `shoot offsite restore --identity KEY` opens them.", example: '["age1…"]' },
  { section: "offsite", key: "part_size", type: "size", default: '"8MiB"', doc: "Size of each part of a multipart upload (5MiB to 512MiB); memory use is about part_size × (concurrency + 1)." },
  { section: "offsite", key: "concurrency", type: "int", min: 1, max: 16, default: "4", doc: "Parts sent at once." },
  { section: "offsite", key: "bwlimit", type: "size", default: "no limit", doc: "Bytes per second sent to this store at most (e.g. \"20MiB\")." },
  { section: "offsite", key: "timeout", type: "duration", default: '"2m"', doc: "A request to the store that takes longer is given up (the next run resumes the upload)." },
];

export type Compression = "gzip" | "zstd" | "none";
export type IncrementalMode = "off" | "differential" | "chain";
/** `full_every`: an age (ms) or a number of archives. */
export type FullEvery = { ms: number; count?: undefined } | { count: number; ms?: undefined };

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
  incremental: IncrementalMode;
  full_every: FullEvery;
  max_runtime: number;
  kill_grace: number;
  /** What to keep (keep = N is keep_last N); `keep` above is what these rules keep at most. */
  retention: RetentionRules;
  before?: string[];
  before_timeout: number;
  before_failure: "stop" | "continue";
  after?: string[];
  after_timeout: number;
  dumps: DumpConfig[];
}

export interface SourceConfig {
  name: string;
  remote: string;
  port: number;
  identity?: string;
  bwlimit?: number;
  /** Its own rules when it sets any keep key; otherwise [client]'s. */
  retention?: RetentionRules;
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
  retention: RetentionRules;
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

export type LockMode = "governance" | "compliance";

export interface OffsiteConfig {
  name: string;
  endpoint: string;
  region: string;
  bucket: string;
  prefix: string;
  credentials_file?: string;
  storage_class?: string;
  sources?: string[];
  keep?: number;
  lock?: { mode: LockMode; ms: number };
  encrypt_to?: string[];
  part_size: number;
  concurrency: number;
  bwlimit?: number;
  timeout: number;
}

export interface Config {
  file: string;
  offsite?: OffsiteConfig[];
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
    case "every": return 'a duration like "7d" or a number of archives from 1 to 10000';
    case "argv": return 'a command as an array of strings, like ["pg_dump", "shop"] (no shell: write ["sh", "-c", "…"] for one)';
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
    case "every": {
      const n = typeof v === "bigint" ? Number(v) : v;
      if (typeof n === "number") return Number.isInteger(n) && n >= 1 && n <= 10000 ? { count: n } : undefined;
      const ms = typeof v === "string" ? parseDuration(v) : undefined;
      return ms !== undefined && ms > 0 ? { ms } : undefined;
    }
    case "argv": return Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === "string" && s !== "" && !s.includes("\0")) ? v : undefined;
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
    if ((section === "client" && k === "source") || (section === "server" && k === "dump")) continue;
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
    if (!["server", "client", "mail", "monitor", "offsite"].includes(k)) {
      throw new ConfigError(file, findKeyLine(text, k, undefined) ?? findKeyLine(text, "", k), k, "unknown section or key (known sections: [server], [[server.dump]], [client], [[client.source]], [mail], [monitor], [[offsite]])");
    }
    const v = doc[k];
    if (k === "offsite") continue;
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
    const retention = retentionOrThrow(file, text, "server", "[server]", resolveRetention(v, 2));
    cfg.server = withDefaults<ServerConfig>("server", v, {
      name: sanitizeHostname(hostname),
      level: compression === "zstd" ? 3 : 6,
    });
    cfg.server = { ...cfg.server, retention, keep: keptAtMost(retention) || cfg.server.keep, dumps: parseDumps(file, text, (doc.server as Table).dump) };
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
      const own = setsRetention(sv) ? retentionOrThrow(file, text, "client.source", label, resolveRetention(sv, 7), i) : undefined;
      return { ...withDefaults<SourceConfig>("client.source", sv), retention: own };
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
    const retention = retentionOrThrow(file, text, "client", "[client]", resolveRetention(v, 7));
    const client = withDefaults<Omit<ClientConfig, "sources" | "retention">>("client", v);
    cfg.client = { ...client, keep: keptAtMost(retention) || client.keep, retention, sources };
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
  if (doc.offsite !== undefined) cfg.offsite = parseOffsite(file, text, doc.offsite, cfg.client);
  return cfg;
}

const LOCK_RE = /^(governance|compliance)\s+(\S+)$/;
const AGE_RECIPIENT_RE = /^age1[0-9a-z]+$/;

/** [[offsite]] tables: the KEYS checks, then what a single key's type cannot say. */
function parseOffsite(file: string, text: string, raw: unknown, client: ClientConfig | undefined): OffsiteConfig[] {
  const label = (i: number) => `[[offsite]] #${i + 1}`;
  if (!Array.isArray(raw)) throw new ConfigError(file, findKeyLine(text, "", "offsite"), "offsite", "expected [[offsite]] tables");
  const seen = new Set<string>();
  return raw.map((t, i) => {
    if (typeof t !== "object" || t === null || Array.isArray(t)) throw new ConfigError(file, findKeyLine(text, "offsite", undefined, i), label(i), "expected a table");
    const v = validateTable(file, text, "offsite", label(i), t as Table, i);
    const bad = (key: string, problem: string): never => {
      throw new ConfigError(file, findKeyLine(text, "offsite", key, i), `${label(i)} ${key}`, problem);
    };
    const o = withDefaults<Record<string, unknown>>("offsite", v);
    if (seen.has(o.name as string)) bad("name", `duplicate store name ${JSON.stringify(o.name)}`);
    seen.add(o.name as string);
    if (!/^https?:\/\/[^/\s]+\/?$/i.test(o.endpoint as string)) bad("endpoint", `expected an http:// or https:// URL without a path, got ${JSON.stringify(o.endpoint)}`);
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(o.bucket as string)) bad("bucket", `expected a bucket name (3 to 63 of a-z, 0-9, '.', '-'), got ${JSON.stringify(o.bucket)}`);
    const prefix = (o.prefix as string | undefined) ?? "";
    if (prefix.startsWith("/") || prefix.split("/").some((seg) => seg === "." || seg === "..") || /[\0-\x1f\\]/.test(prefix)) bad("prefix", `expected a key prefix without a leading /, . or .. segments, got ${JSON.stringify(prefix)}`);
    const part = o.part_size as number;
    if (part < 5 * 1024 ** 2 || part > 512 * 1024 ** 2) bad("part_size", "expected 5MiB to 512MiB (S3 parts are 5 MiB at least)");
    let lock: OffsiteConfig["lock"];
    if (typeof v.lock === "string") {
      const m = LOCK_RE.exec(v.lock.trim());
      const ms = m ? parseDuration(m[2]!) : undefined;
      if (!m || ms === undefined || ms < 86_400_000) bad("lock", `expected "governance DURATION" or "compliance DURATION" of a day or more (like "compliance 30d"), got ${JSON.stringify(v.lock)}`);
      lock = { mode: m![1] as LockMode, ms: ms! };
    }
    const recipients = v.encrypt_to as string[] | undefined;
    for (const r of recipients ?? []) if (!AGE_RECIPIENT_RE.test(r)) bad("encrypt_to", `expected age recipients (age1…), got ${JSON.stringify(r)}`);
    for (const s of (v.sources as string[] | undefined) ?? []) {
      if (client && !client.sources.some((c) => c.name === s)) bad("sources", `no [[client.source]] is called ${JSON.stringify(s)}`);
    }
    return { ...(o as unknown as OffsiteConfig), prefix, lock, ...(recipients?.length ? { encrypt_to: recipients } : { encrypt_to: undefined }) };
  });
}

function retentionOrThrow(file: string, text: string, section: Section, label: string, r: RetentionRules | Problem, index = 0): RetentionRules {
  if (!isProblem(r)) return r;
  throw new ConfigError(file, findKeyLine(text, section, r.key, index), `${label} ${r.key}`, r.problem);
}

/** The [[server.dump]] tables: each validated, exactly one way to dump, names unique. */
function parseDumps(file: string, text: string, raw: unknown): DumpConfig[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new ConfigError(file, findKeyLine(text, "server", "dump"), "[server] dump", "expected [[server.dump]] tables");
  const seen = new Set<string>();
  return raw.map((t, i) => {
    const label = `[[server.dump]] #${i + 1}`;
    if (typeof t !== "object" || t === null || Array.isArray(t)) throw new ConfigError(file, findKeyLine(text, "server.dump", undefined, i), label, "expected a table");
    const v = validateTable(file, text, "server.dump", label, t as Table, i);
    const d = resolveDump(v);
    if (isProblem(d)) throw new ConfigError(file, findKeyLine(text, "server.dump", d.key, i), `${label} ${d.key}`, d.problem);
    if (seen.has(d.entry)) throw new ConfigError(file, findKeyLine(text, "server.dump", "name", i), `${label} name`, `duplicate dump ${JSON.stringify(d.entry)}`);
    seen.add(d.entry);
    return d;
  });
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
