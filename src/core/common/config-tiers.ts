/**
 * The keys of retention tiers, hooks and database dumps, and what they resolve to. Kept apart
 * from config.ts, which takes these rows into its KEYS table and calls the resolvers; a
 * resolver answers with a problem (key and words) instead of throwing, and config.ts turns it
 * into its ConfigError with file and line.
 */
import type { KeyDef } from "./config.ts";
import { NO_RULES, PERIOD_TIERS, keepsNothing, type RetentionRules } from "../state/retention.ts";

type RetentionSection = "server" | "client" | "client.source";

const TIER_DOC: Record<(typeof PERIOD_TIERS)[number], [string, string]> = {
  hourly: ["hour", "hours"], daily: ["day", "days"], weekly: ["ISO week (Monday to Sunday)", "weeks"], monthly: ["month", "months"], yearly: ["year", "years"],
};

/** keep_last … keep_within for one section (its `keep` row stays where it was). */
export function retentionKeys(section: RetentionSection): KeyDef[] {
  const where = section === "server" ? "archives" : "copies";
  return [
    { section, key: "keep_last", type: "int", min: 0, max: 100000, default: section === "client.source" ? "[client]'s rules" : "keep", doc: `The newest N ${where} are kept. Same as keep; give one of the two. Without either it is ${section === "server" ? 2 : 7} when no other keep_* key is set, else 0.` },
    ...PERIOD_TIERS.map((t): KeyDef => ({
      section, key: `keep_${t}`, type: "int", min: 0, max: 100000, default: section === "client.source" ? "[client]'s rules" : "0",
      doc: `The newest of the ${where} made in each ${TIER_DOC[t][0]} is kept, for the N most recent ${TIER_DOC[t][1]} that have one (in this host's time zone; see docs/retention.md).`,
    })),
    { section, key: "keep_within", type: "duration", default: section === "client.source" ? "[client]'s rules" : "none", doc: `Every ${where.slice(0, -1)} made less than this before the newest one is kept (e.g. "14d").`, example: '"14d"' },
  ];
}

export const HOOK_KEYS: readonly KeyDef[] = [
  { section: "server", key: "before", type: "argv", default: "none", doc: 'Command the wrapper runs before the server run, as an argv array (no shell; write ["sh", "-c", "…"] for one). It gets SHOOT_ROLE and SHOOT_RUN; its output goes into the report. When it fails, no archive is made (BEFORE_HOOK_FAILED) unless before_failure = "continue".', example: '["systemctl", "stop", "app"]' },
  { section: "server", key: "before_timeout", type: "duration", default: '"10m"', doc: "The before command is stopped (SIGTERM, SIGKILL after kill_grace) and counts as failed when it runs longer." },
  { section: "server", key: "before_failure", type: "enum", values: ["stop", "continue"], default: '"stop"', doc: 'What a failed before command means: "stop" (no archive, code BEFORE_HOOK_FAILED) or "continue" (the run goes on; the report warns with BEFORE_HOOK_IGNORED).' },
  { section: "server", key: "after", type: "argv", default: "none", doc: "Command the wrapper runs after the server run (also after a failed before command), with SHOOT_ROLE, SHOOT_RUN and SHOOT_CODE (the run's code). A failure is a warning (AFTER_HOOK_FAILED) that the report names; the run's code stands.", example: '["systemctl", "start", "app"]' },
  { section: "server", key: "after_timeout", type: "duration", default: '"10m"', doc: "The after command is stopped and counts as failed when it runs longer." },
];

export const DUMP_KEYS: readonly KeyDef[] = [
  { section: "server.dump", key: "name", type: "name", required: true, doc: "Name of the dump: its entry in the archive is dumps/<name>.<extension>.", example: '"shop"' },
  { section: "server.dump", key: "command", type: "argv", default: "none", doc: "A command whose standard output is the dump, as an argv array; give this or one of postgresql, mariadb, mysql, sqlite.", example: '["pg_dump", "--dbname", "shop"]' },
  { section: "server.dump", key: "postgresql", type: "string", default: "none", doc: "Database to dump with pg_dump (plain SQL).", example: '"shop"' },
  { section: "server.dump", key: "mariadb", type: "string", default: "none", doc: "Database to dump with mariadb-dump --single-transaction.", example: '"shop"' },
  { section: "server.dump", key: "mysql", type: "string", default: "none", doc: "Database to dump with mysqldump --single-transaction.", example: '"shop"' },
  { section: "server.dump", key: "sqlite", type: "path", default: "none", doc: "SQLite database file to dump with sqlite3 .dump.", example: '"/var/lib/app/app.db"' },
  { section: "server.dump", key: "host", type: "string", default: "the tool's default", doc: "postgresql, mariadb, mysql: the server's host name, or its Unix socket (a directory for PostgreSQL, the socket file for MariaDB)." },
  { section: "server.dump", key: "port", type: "int", min: 1, max: 65535, default: "the tool's default", doc: "postgresql, mariadb, mysql: the server's TCP port." },
  { section: "server.dump", key: "user", type: "string", default: "the tool's default", doc: "postgresql, mariadb, mysql: the database user to connect as (passwords: ~/.pgpass, ~/.my.cnf)." },
  { section: "server.dump", key: "options", type: "strings", default: "[]", doc: "More arguments for the shortcut's dump program, before the database name." },
  { section: "server.dump", key: "extension", type: "name", default: '"sql"', doc: "Extension of the dump's entry in the archive (dumps/<name>.<extension>)." },
  { section: "server.dump", key: "timeout", type: "duration", default: '"1h"', doc: "The dump is stopped and the run fails (DUMP_TIMEOUT) when it takes longer." },
];

// --- resolving ---------------------------------------------------------------------------------

export interface Problem {
  key: string;
  problem: string;
}

const RETENTION_KEYS = ["keep", "keep_last", ...PERIOD_TIERS.map((t) => `keep_${t}`), "keep_within"];

/** Whether a table sets any retention key. */
export function setsRetention(values: Record<string, unknown>): boolean {
  return RETENTION_KEYS.some((k) => k in values);
}

/**
 * The rules a table's keys give (validated values), or the problem with them. `keep` is
 * keep_last; without either, keep_last is `defaultLast` when no other rule is set, else 0.
 */
export function resolveRetention(values: Record<string, unknown>, defaultLast: number): RetentionRules | Problem {
  if ("keep" in values && "keep_last" in values) {
    return { key: "keep_last", problem: "keep and keep_last are the same rule (keep = N means keep_last = N): give one of them" };
  }
  const num = (k: string) => (typeof values[k] === "number" ? (values[k] as number) : 0);
  const others = RETENTION_KEYS.filter((k) => k !== "keep" && k !== "keep_last").some((k) => k in values);
  const last = "keep_last" in values ? num("keep_last") : "keep" in values ? num("keep") : others ? 0 : defaultLast;
  const rules: RetentionRules = { ...NO_RULES, last, withinMs: num("keep_within") };
  for (const t of PERIOD_TIERS) rules[t] = num(`keep_${t}`);
  if (keepsNothing(rules)) {
    const given = RETENTION_KEYS.find((k) => k in values) ?? "keep_last";
    return { key: given, problem: "these keep rules keep no copy at all (every one is 0): set at least one above 0" };
  }
  return rules;
}

/** Copies the rules keep at most, keep_within aside: what space projections count on. */
export function keptAtMost(r: RetentionRules): number {
  return r.last + PERIOD_TIERS.reduce((n, t) => n + r[t], 0);
}

export type DumpKind = "command" | "postgresql" | "mariadb" | "mysql" | "sqlite";
const KINDS: readonly DumpKind[] = ["command", "postgresql", "mariadb", "mysql", "sqlite"];

export interface DumpConfig {
  name: string;
  kind: DumpKind;
  /** kind "command": the argv as written. */
  command?: string[];
  /** postgresql, mariadb, mysql: the database; sqlite: the file. */
  target?: string;
  host?: string;
  port?: number;
  user?: string;
  options: string[];
  /** Entry name in the archive: dumps/<name>.<extension>. */
  entry: string;
  timeout: number;
}

/** One [[server.dump]] table (validated values) as a dump, or the problem with it. */
export function resolveDump(v: Record<string, unknown>): DumpConfig | Problem {
  const kinds = KINDS.filter((k) => k in v);
  if (kinds.length !== 1) {
    return { key: kinds[1] ?? "command", problem: `give exactly one of ${KINDS.join(", ")} (${kinds.length ? `got ${kinds.join(" and ")}` : "got none"})` };
  }
  const kind = kinds[0]!;
  if (kind === "command" || kind === "sqlite") {
    const stray = ["host", "port", "user", ...(kind === "command" ? ["options"] : [])].find((k) => k in v);
    if (stray) return { key: stray, problem: `${stray} is for the postgresql, mariadb and mysql shortcuts${stray === "options" ? " and sqlite" : ""}, not for a ${kind} dump` };
  }
  const name = v.name as string;
  const target = kind === "command" ? undefined : (v[kind] as string);
  // a database name is the last argument: one that starts with "-" would be read as an option
  if (target !== undefined && kind !== "sqlite" && (target.startsWith("-") || target.includes("\0"))) return { key: kind, problem: `a database name cannot start with "-": got ${JSON.stringify(target)}` };
  const base = `${name}.${(v.extension as string | undefined) ?? "sql"}`;
  if (base.length > 100) return { key: "name", problem: `the dump's entry name ${JSON.stringify(base)} is longer than 100 characters (name and extension together)` };
  return {
    name,
    kind,
    command: kind === "command" ? (v.command as string[]) : undefined,
    target,
    host: v.host as string | undefined,
    port: v.port as number | undefined,
    user: v.user as string | undefined,
    options: (v.options as string[] | undefined) ?? [],
    entry: `dumps/${base}`,
    timeout: (v.timeout as number | undefined) ?? 3_600_000,
  };
}

export function isProblem(x: unknown): x is Problem {
  return typeof x === "object" && x !== null && "problem" in x;
}
