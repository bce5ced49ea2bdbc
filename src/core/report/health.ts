/**
 * Is this host's backup healthy? Read from what the runs leave on disk (status files, locks,
 * archives, copies), on either role: the last run and its code, its age, the last golden
 * run, the archive, and on a backup host each source. The verdict is an exit code for
 * scripts and monitoring (0 healthy; a failure's own code; STATUS_STALE when nothing ran
 * recently) and a Nagios state. Two alarms catch silent failure: a server that has said
 * "nothing changed" for too long, and free space that will run out at the current growth.
 *
 * Everything here is pure apart from reading those files and asking the disk for free
 * space; `shoot status` and the metrics file both render the same report.
 */
import path from "node:path";
import { code, codeInfo, codeName, isGolden, mostSevere } from "../common/codes.ts";
import { parseConfig, type ClientConfig, type Config, type MonitorConfig, type ServerConfig } from "../common/config.ts";
import type { Clock, Disk } from "../common/deps.ts";
import { ShootError, errnoCode, errorMessage } from "../common/errors.ts";
import { currentLock, staleReason } from "../state/lock.ts";
import type { Warning } from "../common/outcome.ts";
import { shown } from "../common/text.ts";
import { CLIENT_STATUS, SERVER_STATUS, lastFinal, readStatusFile, type StatusRecord } from "../state/status.ts";
import { escapeText } from "../common/escape.ts";
import { formatAge, formatBytes, formatDuration } from "../common/units.ts";
import { heldArchives, type HeldArchive } from "../restore/verify.ts";
import { heldCopies } from "../state/copies.ts";

const DAY_MS = 86_400_000;

export type HealthState = "ok" | "running" | "failed" | "stale" | "never";

export interface RunSummary {
  run: string;
  code: number;
  name: string;
  meaning: string;
  message: string;
  /** ISO times. */
  started?: string;
  ended: string;
  ageMs: number;
  durationMs?: number;
}

export interface GoldenSummary {
  at: string;
  ageMs: number;
  /** Where it was learnt: a status record, or (when the status files hold none) the newest archive or copy. */
  from: "status" | "archive";
}

export interface ArchiveSummary {
  file: string;
  size: number;
  md5?: string;
  made?: string;
}

export interface SpaceOutlook {
  free: number;
  reserve: number;
  /** Bytes a day the archives held grow by, as far as their sizes and dates tell. */
  growthPerDay?: number;
  /** Days until free space runs out (minus the reserve), when within the horizon. */
  daysLeft?: number;
}

export interface SourceHealth {
  name: string;
  state: HealthState;
  exitCode: number;
  summary: string;
  last?: { code: number; name: string; message: string; at: string; ageMs: number };
  lastGolden?: GoldenSummary;
  archive?: ArchiveSummary;
  copies: number;
  warnings: Warning[];
  /** Each offsite store's last word on this source's copy, beside the pull's. */
  offsite?: OffsiteHealth[];
}

export interface OffsiteHealth {
  store: string;
  code: number;
  name: string;
  message: string;
  at: string;
}

export interface RoleHealth {
  role: "server" | "client";
  /** The server's name, or "client". */
  name: string;
  dir: string;
  state: HealthState;
  exitCode: number;
  summary: string;
  lastRun?: RunSummary;
  lastGolden?: GoldenSummary;
  archive?: ArchiveSummary;
  running?: { pid: number; role: string; since: string };
  sources?: SourceHealth[];
  space?: SpaceOutlook;
  warnings: Warning[];
}

export interface HealthReport {
  checkedAt: string;
  roles: RoleHealth[];
  /** 0 healthy, else the most severe failure code (STATUS_STALE for stale). */
  exitCode: number;
  /** 0 OK, 1 WARNING, 2 CRITICAL. */
  nagios: 0 | 1 | 2;
  /** [monitor] max_age: the age beyond which a role is stale. */
  maxAgeMs: number;
}

export interface HealthDeps {
  clock: Clock;
  disk: Disk;
}

/** The [monitor] settings, with their defaults when the section is absent. */
export function monitorOf(cfg: Config): MonitorConfig {
  return cfg.monitor ?? parseConfig("", cfg.file).monitor!;
}

function ago(ms: number): string {
  return `${formatAge(ms)} ago`;
}

function summarise(final: StatusRecord, records: readonly StatusRecord[], now: number): RunSummary {
  const first = records.find((r) => r.run === final.run);
  const ended = Date.parse(final.t);
  const started = first ? Date.parse(first.t) : undefined;
  return {
    run: final.run, code: final.code, name: codeName(final.code), meaning: codeInfo(final.code)?.meaning ?? "",
    message: shown(final.msg, 200), started: first?.t, ended: final.t, ageMs: now - ended,
    durationMs: started !== undefined ? ended - started : undefined,
  };
}

interface RunHistory {
  /** The previous file's records, then the current file's. */
  records: StatusRecord[];
  lastRun?: RunSummary;
  running?: { pid: number; role: string; since: string };
  goldens: StatusRecord[];
  torn: number;
}

/**
 * The last finished run from a status file and its predecessor. A run without a final record
 * is either still going (its lock is held by a live process) or died without a final word,
 * which is reported as SERVER_CRASHED.
 */
function runHistory(dir: string, file: string, now: number): RunHistory {
  const cur = readStatusFile(path.join(dir, file));
  const prev = readStatusFile(path.join(dir, `${file}.1`));
  const lock = currentLock(dir);
  const live = lock && !staleReason(lock) ? lock : undefined;
  const curRecords = cur?.records ?? [];
  const prevRecords = prev?.records ?? [];
  const curFinal = lastFinal(curRecords);
  const records = [...prevRecords, ...curRecords];
  const history: RunHistory = {
    records,
    goldens: records.filter((r) => isGolden(r.code)),
    torn: cur?.skipped ?? 0,
  };
  if (curFinal) {
    history.lastRun = summarise(curFinal, curRecords, now);
    return history;
  }
  const prevFinal = lastFinal(prevRecords);
  if (curRecords.length > 0 && live) {
    history.running = { pid: live.pid, role: live.role, since: curRecords[0]!.t };
    if (prevFinal) history.lastRun = summarise(prevFinal, prevRecords, now);
    return history;
  }
  if (curRecords.length > 0) {
    const last = curRecords.at(-1)!;
    history.lastRun = {
      run: last.run, code: code("SERVER_CRASHED"), name: "SERVER_CRASHED", meaning: codeInfo(code("SERVER_CRASHED"))!.meaning,
      message: `the run ${last.run} ended without a final record; its last record: ${last.code} ${codeName(last.code)} ${shown(last.msg, 120)}`,
      started: curRecords[0]!.t, ended: last.t, ageMs: now - Date.parse(last.t),
    };
    return history;
  }
  if (prevFinal) history.lastRun = summarise(prevFinal, prevRecords, now);
  return history;
}

function newestGolden(records: readonly StatusRecord[], now: number): GoldenSummary | undefined {
  let best: StatusRecord | undefined;
  for (const r of records) if (!best || Date.parse(r.t) >= Date.parse(best.t)) best = r;
  return best ? { at: best.t, ageMs: now - Date.parse(best.t), from: "status" } : undefined;
}

function archiveSummary(h: HeldArchive): ArchiveSummary {
  return { file: h.file, size: h.bytes, md5: h.md5, made: h.made?.toISOString() };
}

// --- free space -------------------------------------------------------------------------------

export interface ArchiveGroup {
  /** Archives (or copies) held, any order. */
  archives: ReadonlyArray<{ made: Date; bytes: number }>;
  keep: number;
}

/** Least-squares slope of bytes over days; undefined with fewer than two points an hour apart. */
function slopePerDay(points: ReadonlyArray<{ made: Date; bytes: number }>): number | undefined {
  if (points.length < 2) return undefined;
  const xs = points.map((p) => p.made.getTime() / DAY_MS);
  const span = Math.max(...xs) - Math.min(...xs);
  if (span < 1 / 24) return undefined;
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = points.reduce((a, p) => a + p.bytes, 0) / points.length;
  let num = 0;
  let den = 0;
  points.forEach((p, i) => {
    num += (xs[i]! - mx) * (p.bytes - my);
    den += (xs[i]! - mx) ** 2;
  });
  return den > 0 ? num / den : undefined;
}

/** Bytes a group will hold `days` from now beyond what it holds today, at the growth its archives show. */
function extraBytesAfter(g: ArchiveGroup, days: number): number {
  const sorted = [...g.archives].sort((a, b) => a.made.getTime() - b.made.getTime());
  const n = sorted.length;
  if (n < 2) return 0;
  const slope = slopePerDay(sorted);
  if (slope === undefined) return 0;
  const spanDays = (sorted[n - 1]!.made.getTime() - sorted[0]!.made.getTime()) / DAY_MS;
  const perDay = (n - 1) / spanDays;
  const newest = sorted[n - 1]!.bytes;
  // until `keep` is reached every new archive adds a whole one; after that each replaces the oldest
  const added = n < g.keep ? Math.min(g.keep - n, Math.floor(perDay * days)) : 0;
  const grown = slope * days;
  return added * (newest + Math.max(0, grown)) + Math.max(0, grown) * n;
}

/** How soon free space runs out (within `horizonDays`), from the archives held and the disk's free bytes. */
export function projectSpace(groups: readonly ArchiveGroup[], free: number, reserve: number, horizonDays = 365): SpaceOutlook {
  // the next archive is written whole before rotation removes an old one
  const peak = Math.max(0, ...groups.map((g) => Math.max(0, ...g.archives.map((a) => a.bytes))));
  const headroom = free - reserve - peak;
  const growthPerDay = groups.reduce((n, g) => n + extraBytesAfter(g, 1), 0);
  const outlook: SpaceOutlook = { free, reserve, growthPerDay };
  if (headroom <= 0) return { ...outlook, daysLeft: 0 };
  const STEP = 0.25;
  for (let d = STEP; d <= horizonDays; d += STEP) {
    const need = groups.reduce((n, g) => n + extraBytesAfter(g, d), 0);
    if (need >= headroom) return { ...outlook, daysLeft: d };
  }
  return outlook;
}

function spaceWarning(o: SpaceOutlook, dir: string, mon: MonitorConfig): Warning | undefined {
  if (mon.space_warn_days <= 0 || o.daysLeft === undefined || o.daysLeft >= mon.space_warn_days) return undefined;
  const when = o.daysLeft === 0 ? "is too short already for the next archive" : `will run out in about ${formatDuration(o.daysLeft * DAY_MS)}`;
  return {
    code: code("SPACE_LOW"),
    msg: `free space in ${dir} ${when} (${formatBytes(o.free)} free, reserve ${formatBytes(o.reserve)}, growth ${formatBytes(Math.round(o.growthPerDay ?? 0))}/day; space_warn_days ${mon.space_warn_days})`,
  };
}

function unchangedWarning(lastCode: number | undefined, newest: HeldArchive | undefined, now: number, mon: MonitorConfig, who: string): Warning | undefined {
  if (lastCode !== code("UNCHANGED") || mon.unchanged_warn <= 0 || !newest?.made) return undefined;
  const since = now - newest.made.getTime();
  if (since <= mon.unchanged_warn) return undefined;
  return {
    code: code("UNCHANGED_TOO_LONG"),
    msg: `${who} has answered 9 UNCHANGED since ${newest.file} was made ${ago(since)} (unchanged_warn ${formatDuration(mon.unchanged_warn)}): is anything still written to the sources?`,
  };
}

function freeBytes(disk: Disk, dir: string): number | undefined {
  try {
    return disk.freeBytes(dir);
  } catch {
    return undefined;
  }
}

// --- the roles ------------------------------------------------------------------------------

/** State and exit code from the last run, its age and whether a run is going on now. */
function judge(h: RunHistory, maxAge: number, now: number): { state: HealthState; exitCode: number } {
  const stale = code("STATUS_STALE");
  if (h.running) {
    const runningFor = now - Date.parse(h.running.since);
    if (runningFor > maxAge) return { state: "stale", exitCode: stale };
    if (h.lastRun && !isGolden(h.lastRun.code)) return { state: "running", exitCode: h.lastRun.code };
    return { state: "running", exitCode: 0 };
  }
  if (!h.lastRun) return { state: "never", exitCode: stale };
  if (!isGolden(h.lastRun.code)) return { state: "failed", exitCode: h.lastRun.code };
  if (h.lastRun.ageMs > maxAge) return { state: "stale", exitCode: stale };
  return { state: "ok", exitCode: 0 };
}

function describeRole(label: string, state: HealthState, h: RunHistory, maxAge: number, now: number): string {
  const r = h.lastRun;
  const last = r ? `${r.code} ${r.name} ${ago(r.ageMs)}` : "";
  switch (state) {
    case "never": return `${label}: no run recorded yet`;
    case "running": return `${label}: running since ${ago(now - Date.parse(h.running!.since))} (pid ${h.running!.pid})${r ? `; last run ${last}` : ""}`;
    case "failed": return `${label}: FAILED, last run ${last}: ${r!.message}`;
    case "stale": return `${label}: STALE, ${h.running ? `a run has been going for more than ${formatDuration(maxAge)}` : `last run ${last}`} (max_age ${formatDuration(maxAge)})`;
    case "ok": return `${label}: OK, last run ${last}`;
  }
}

export function serverHealth(s: ServerConfig, mon: MonitorConfig, held: readonly HeldArchive[], deps: HealthDeps): RoleHealth {
  const now = deps.clock.now().getTime();
  const h = runHistory(s.backup_dir, SERVER_STATUS, now);
  const mine = held.filter((a) => a.role === "server");
  const newest = mine.at(-1);
  const { state, exitCode } = judge(h, mon.max_age, now);
  // the archive the last golden run named, while it is still held; else the newest held
  const named = h.goldens.at(-1)?.archive?.file;
  const current = mine.find((a) => a.file === named) ?? newest;
  const archive = current ? archiveSummary(current) : undefined;
  const lastGolden = newestGolden(h.goldens, now) ?? (newest?.made ? { at: newest.made.toISOString(), ageMs: now - newest.made.getTime(), from: "archive" as const } : undefined);
  const warnings: Warning[] = [];
  if (h.torn > 0) warnings.push({ code: code("STATUS_TORN"), msg: `${h.torn} unreadable line(s) in ${path.join(s.backup_dir, SERVER_STATUS)}` });
  const unchanged = unchangedWarning(h.lastRun?.code, newest, now, mon, `the server ${s.name}`);
  if (unchanged) warnings.push(unchanged);
  const free = freeBytes(deps.disk, s.backup_dir);
  let space: SpaceOutlook | undefined;
  if (free !== undefined) {
    space = projectSpace([{ archives: mine.filter((a) => a.made).map((a) => ({ made: a.made!, bytes: a.bytes })), keep: s.keep }], free, s.reserve);
    const w = spaceWarning(space, s.backup_dir, mon);
    if (w) warnings.push(w);
  }
  return {
    role: "server", name: s.name, dir: s.backup_dir, state, exitCode, summary: describeRole(`server ${s.name}`, state, h, mon.max_age, now),
    lastRun: h.lastRun, lastGolden, archive, running: h.running, space, warnings,
  };
}

/** The newest OFFSITE_SENT or OFFSITE_FAILED record of each store for a source. */
function offsiteHealth(source: string, records: readonly StatusRecord[]): OffsiteHealth[] {
  const byStore = new Map<string, OffsiteHealth>();
  for (const r of records) {
    if (r.name !== "OFFSITE_SENT" && r.name !== "OFFSITE_FAILED") continue;
    const d = r.data as { source?: unknown; store?: unknown; code?: unknown } | undefined;
    if (d?.source !== source || typeof d.store !== "string") continue;
    const c = Number(d.code);
    byStore.set(d.store, { store: d.store, code: c, name: codeName(c), message: shown(r.msg, 200), at: r.t });
  }
  return [...byStore.values()];
}

function sourceHealth(name: string, records: readonly StatusRecord[], held: readonly HeldArchive[], order: readonly string[], mon: MonitorConfig, now: number): SourceHealth {
  // oldest first in the order the backup host verified them, never by the names a server chose
  const rank = new Map(order.map((f, i) => [f, i]));
  const copies = held.filter((a) => a.role === "client" && a.owner === name && a.checksumFile === "ok")
    .sort((a, b) => (rank.get(a.file) ?? -1) - (rank.get(b.file) ?? -1));
  const newest = copies.at(-1);
  const done = records.filter((r) => r.name === "SOURCE_DONE" && (r.data as { source?: unknown } | undefined)?.source === name);
  const lastRec = done.at(-1);
  const lastCode = lastRec ? Number((lastRec.data as { code?: unknown }).code) : undefined;
  const goldenRec = [...done].reverse().find((r) => isGolden(Number((r.data as { code?: unknown }).code)));
  const lastGolden: GoldenSummary | undefined = goldenRec
    ? { at: goldenRec.t, ageMs: now - Date.parse(goldenRec.t), from: "status" }
    : newest?.made ? { at: newest.made.toISOString(), ageMs: now - newest.made.getTime(), from: "archive" } : undefined;
  const warnings: Warning[] = [];
  const unchanged = unchangedWarning(lastCode, newest, now, mon, `source ${name}`);
  if (unchanged) warnings.push(unchanged);
  const offsite = offsiteHealth(name, records);
  for (const o of offsite) {
    if (o.code !== code("OFFSITE_SENT")) warnings.push({ code: code("OFFSITE_FAILED"), msg: `source ${name}: offsite store ${o.store}: ${o.code} ${o.name} (${o.at})` });
  }
  const base = { name, copies: copies.length, archive: newest ? archiveSummary(newest) : undefined, lastGolden, warnings, ...(offsite.length ? { offsite } : {}) };
  const last = lastRec && lastCode !== undefined
    ? { code: lastCode, name: codeName(lastCode), message: shown(lastRec.msg, 200), at: lastRec.t, ageMs: now - Date.parse(lastRec.t) }
    : undefined;
  if (!last && !lastGolden) return { ...base, state: "never", exitCode: code("STATUS_STALE"), summary: `${name}: never pulled` };
  if (last && !isGolden(last.code)) return { ...base, last, state: "failed", exitCode: last.code, summary: `${name}: FAILED ${last.code} ${last.name} ${ago(last.ageMs)}` };
  const age = lastGolden ? lastGolden.ageMs : Infinity;
  if (age > mon.max_age) return { ...base, last, state: "stale", exitCode: code("STATUS_STALE"), summary: `${name}: STALE, last good pull ${lastGolden ? ago(age) : "never"} (max_age ${formatDuration(mon.max_age)})` };
  return { ...base, last, state: "ok", exitCode: 0, summary: `${name}: OK${last ? ` ${last.code} ${last.name} ${ago(last.ageMs)}` : ""}, ${copies.length} cop${copies.length === 1 ? "y" : "ies"}` };
}

export function clientHealth(c: ClientConfig, mon: MonitorConfig, held: readonly HeldArchive[], deps: HealthDeps): RoleHealth {
  const now = deps.clock.now().getTime();
  const h = runHistory(c.dest_dir, CLIENT_STATUS, now);
  const sources = c.sources.map((s) => sourceHealth(s.name, h.records, held, heldCopies(path.join(c.dest_dir, s.name)), mon, now));
  const judged = judge(h, mon.max_age, now);
  const failures = [judged.exitCode, ...sources.map((s) => s.exitCode)].filter((x) => x !== 0);
  const exitCode = failures.length ? mostSevere(failures) : 0;
  const state: HealthState = judged.state === "ok" && exitCode !== 0 ? (sources.some((s) => s.state === "failed") ? "failed" : "stale") : judged.state;
  const warnings: Warning[] = sources.flatMap((s) => s.warnings);
  if (h.torn > 0) warnings.push({ code: code("STATUS_TORN"), msg: `${h.torn} unreadable line(s) in ${path.join(c.dest_dir, CLIENT_STATUS)}` });
  const free = freeBytes(deps.disk, c.dest_dir);
  let space: SpaceOutlook | undefined;
  if (free !== undefined) {
    const groups = c.sources.map((s) => ({
      archives: held.filter((a) => a.role === "client" && a.owner === s.name && a.made).map((a) => ({ made: a.made!, bytes: a.bytes })),
      keep: c.keep,
    }));
    space = projectSpace(groups, free, c.reserve);
    const w = spaceWarning(space, c.dest_dir, mon);
    if (w) warnings.push(w);
  }
  const head = describeRole("client", judged.state, h, mon.max_age, now);
  const bad = sources.filter((s) => s.exitCode !== 0);
  const summary = bad.length ? `${head}; ${bad.map((s) => s.summary).join("; ")}` : `${head}; ${sources.length} source(s) OK`;
  const lastGolden = newestGolden(h.goldens, now);
  return { role: "client", name: "client", dir: c.dest_dir, state, exitCode, summary, lastRun: h.lastRun, lastGolden, running: h.running, sources, space, warnings };
}

/** The health of every role this configuration names. */
export function checkHealth(cfg: Config, deps: HealthDeps): HealthReport {
  if (!cfg.server && !cfg.client) {
    throw new ShootError("CONFIG_MISSING", `${cfg.file}: status needs a [server] or a [client] section to know what to look at`);
  }
  const mon = monitorOf(cfg);
  // a directory this user may not read is said so, not reported as an internal error
  const readable = <T>(dir: string, name: "BACKUP_DIR_UNUSABLE" | "DEST_UNUSABLE", f: () => T): T => {
    try {
      return f();
    } catch (e) {
      const c = errnoCode(e);
      if (c === "EACCES" || c === "EPERM") throw new ShootError(name, `cannot read ${dir}: ${errorMessage(e)} (run shoot status as the user that runs the backups)`);
      throw e;
    }
  };
  const held = readable(cfg.server?.backup_dir ?? cfg.client!.dest_dir, cfg.server ? "BACKUP_DIR_UNUSABLE" : "DEST_UNUSABLE", () => heldArchives(cfg));
  const roles: RoleHealth[] = [];
  if (cfg.server) roles.push(readable(cfg.server.backup_dir, "BACKUP_DIR_UNUSABLE", () => serverHealth(cfg.server!, mon, held, deps)));
  if (cfg.client) roles.push(readable(cfg.client.dest_dir, "DEST_UNUSABLE", () => clientHealth(cfg.client!, mon, held, deps)));
  const failures = roles.map((r) => r.exitCode).filter((x) => x !== 0);
  const exitCode = failures.length ? mostSevere(failures) : 0;
  const nagios = exitCode !== 0 ? 2 : roles.some((r) => r.warnings.length > 0) ? 1 : 0;
  return { checkedAt: deps.clock.now().toISOString(), roles, exitCode, nagios, maxAgeMs: mon.max_age };
}

// --- renderings -------------------------------------------------------------------------------

const NAGIOS_WORD = ["OK", "WARNING", "CRITICAL"] as const;

function when(iso: string): string {
  return `${iso.replace("T", " ").replace(/\.\d+Z$/, "Z")}`;
}

/** `shoot status`: a block per role, then the verdict. */
export function renderHealth(r: HealthReport): string {
  const out: string[] = [];
  const row = (label: string, value: string) => out.push(`  ${label.padEnd(13)}${value}`);
  for (const role of r.roles) {
    out.push(`${role.role === "server" ? `server ${role.name}` : "client"} (${role.dir}): ${role.state.toUpperCase()}${role.exitCode ? ` ${role.exitCode} ${codeName(role.exitCode)}` : ""}`);
    if (role.running) row("running:", `since ${when(role.running.since)}, pid ${role.running.pid} (${role.running.role})`);
    const lr = role.lastRun;
    if (lr) {
      row("last run:", `${when(lr.ended)} (${ago(lr.ageMs)}) ${lr.code} ${lr.name}: ${lr.meaning}`);
      row("", lr.message);
      if (lr.durationMs !== undefined) row("duration:", formatDuration(lr.durationMs));
    } else if (!role.running) row("last run:", "none recorded");
    if (role.lastGolden) row("last golden:", `${when(role.lastGolden.at)} (${ago(role.lastGolden.ageMs)})${role.lastGolden.from === "archive" ? " (from the newest archive)" : ""}`);
    if (role.archive) row("archive:", `${role.archive.file}, ${formatBytes(role.archive.size)}${role.archive.md5 ? `, md5 ${role.archive.md5}` : ""}`);
    for (const s of role.sources ?? []) {
      row(`source:`, `${s.summary}${s.archive ? `; newest ${s.archive.file} (${formatBytes(s.archive.size)})` : ""}`);
      if (s.state === "failed" && s.last) row("", s.last.message);
    }
    if (role.space) {
      const o = role.space;
      const runsOut = o.daysLeft === undefined ? "not within a year at this growth" : o.daysLeft === 0 ? "too little for the next archive now" : `runs out in about ${formatDuration(o.daysLeft * DAY_MS)}`;
      row("space:", `${formatBytes(o.free)} free (reserve ${formatBytes(o.reserve)})${o.growthPerDay ? `, growing ${formatBytes(Math.round(o.growthPerDay))}/day` : ""}; ${runsOut}`);
    }
    for (const w of role.warnings) out.push(`  warning ${w.code} ${codeName(w.code)}: ${w.msg}`);
  }
  out.push(r.exitCode === 0
    ? `healthy${r.nagios === 1 ? ", with warnings" : ""}`
    : `not healthy: exit ${r.exitCode} ${codeName(r.exitCode)}`);
  // messages and names come from status files and servers: each line is escaped whole
  return out.map(escapeText).join("\n");
}

function perfLabel(s: string): string {
  return `'${s.replace(/'/g, "")}'`;
}

/** One Nagios/Icinga plugin line: state, what is wrong or fine, and performance data. */
export function renderNagios(r: HealthReport): string {
  const parts = r.roles.map((role) => (role.warnings.length && role.exitCode === 0 ? `${role.summary}; ${role.warnings.map((w) => `${codeName(w.code)}: ${w.msg}`).join("; ")}` : role.summary));
  const perf: string[] = [];
  for (const role of r.roles) {
    const p = role.role === "server" ? "server" : "client";
    const crit = Math.round(r.maxAgeMs / 1000);
    if (role.lastRun) perf.push(`${perfLabel(`${p}_age`)}=${Math.round(role.lastRun.ageMs / 1000)}s;;${crit};0`);
    if (role.archive) perf.push(`${perfLabel(`${p}_archive`)}=${role.archive.size}B`);
    if (role.space) perf.push(`${perfLabel(`${p}_free`)}=${role.space.free}B`);
    for (const s of role.sources ?? []) if (s.lastGolden) perf.push(`${perfLabel(`source_${s.name}_age`)}=${Math.round(s.lastGolden.ageMs / 1000)}s;;${crit};0`);
  }
  const text = shown(parts.join(" | ").replace(/\|/g, "/"), 1000);
  return escapeText(`SHOOT ${NAGIOS_WORD[r.nagios]} - ${text}${perf.length ? ` | ${perf.join(" ")}` : ""}`);
}

/**
 * The silent-failure alarms (UNCHANGED_TOO_LONG, SPACE_LOW) of one role, for a run's report:
 * the caller adds them to the outcome's warnings before reporting. Never throws.
 */
export function alarmsFor(cfg: Config, role: "server" | "client", deps: HealthDeps): Warning[] {
  const alarms = new Set([code("UNCHANGED_TOO_LONG"), code("SPACE_LOW")]);
  try {
    return checkHealth(cfg, deps).roles.filter((r) => r.role === role).flatMap((r) => r.warnings).filter((w) => alarms.has(w.code));
  } catch {
    return [];
  }
}
