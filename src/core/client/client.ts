/**
 * The client run: for every source, pull server.status, decide whether the server ended clean
 * and recently, check space, pull the archive and its checksum into a staging directory,
 * verify, and only then move the copy into place and prune old copies. Sources are pulled at
 * most `concurrency` at once, each on its own: one failing never stops another.
 *
 * Layout of dest_dir:
 *   client.status, client.status.1, .shoot.lock
 *   <source>/<archive>, <source>/<archive>.md5        verified copies (the .md5 is written last)
 *   <source>/.shoot-tmp-pull/                          staging; .shoot-partial/ inside for resuming
 *
 * Everything read from a server is untrusted: the archive's name must be a plain name of the
 * archive pattern, nothing from server.status becomes an rsync option or reaches a shell, and
 * nothing is written outside dest_dir/<source>/.
 */
import fs from "node:fs";
import path from "node:path";
import { code, codeName, isGolden, mostSevere, type CodeName } from "../common/codes.ts";
import { ShootError, errnoCode, errorMessage } from "../common/errors.ts";
import { isLocalRemote, type ClientConfig, type SourceConfig } from "../common/config.ts";
import type { Deps } from "../common/deps.ts";
import { flushToDisk, fsyncDir, readDirOrEmpty, sizeOf, writeFileAtomic } from "../state/fsutil.ts";
import { plainOutcome, staleLockMessage, withRun, type RunFrame, type RunSpec } from "../state/run.ts";
import { fileDigest } from "../transfer/digest.ts";
import { followDigest, followedDigest, type DigestAlgorithm, type FollowResult } from "../transfer/follow-digest.ts";
import { CHECKSUM_SUFFIX, LIST_SUFFIX, TEMP_PREFIX, archiveTime, isArchiveName, md5Line, parseMd5Line, sortArchives } from "../state/naming.ts";
import { describeArchive, verifyArchive, warnedPathsIn } from "../restore/verify.ts";
import { forgetCopies, heldCopies, recordVerified } from "../state/copies.ts";
import { unsafeDir } from "../state/strict-modes.ts";
import {
  sourcesSummary, type AfterVerified, type RunOutcome, type SourceOutcome, type StoreOutcome, type Warning,
} from "../common/outcome.ts";
import { shown } from "../common/text.ts";
import { clientCopies, describeRemoved, planRemoval, type PruneRecord } from "../state/held.ts";
import type { RetentionRules } from "../state/retention.ts";
import { archivesNeeded } from "../state/chain.ts";
import { judgeChain } from "./chain.ts";
import { SharedSsh } from "../transfer/ssh-shared.ts";
import { lastPullDurations, pullOrder, retryPause, runInSlots } from "./schedule.ts";
import {
  MAX_STATUS_BYTES, PARTIAL_DIR, classifyFailure, compressDelta, deltaBlockSize, parseStats, rsyncEnv, rsyncPullArgv, type PullSpec, type TransferStats,
} from "../transfer/rsync.ts";
import {
  CLIENT_STATUS, SERVER_STATUS, StatusWriter, lastFinal, newRunId, parseStatus, readStatusFile,
  type ArchiveInfo, type ParsedStatus, type StatusRecord,
} from "../state/status.ts";
import { formatAge, formatBytes, formatDuration } from "../common/units.ts";
import { ToolMissingError, type Child } from "../../io/process.ts";

/** Staging directory inside each source's directory; its name can never be taken for a copy. */
export const STAGE_DIR = `${TEMP_PREFIX}pull`;
/** A server clock this far ahead of ours is tolerated; beyond it a record is not believed. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;
/** The largest archive size a status record may claim (1 PiB): anything above is nonsense. */
const MAX_ARCHIVE_SIZE = 2 ** 50;
/** Directory entries of dest_dir that a source name must not take. */
const RESERVED_NAMES = new Set([CLIENT_STATUS, `${CLIENT_STATUS}.1`, "mail-spool"]);

export interface ClientRunOptions {
  /** Pull only these sources (names from the command line). */
  only?: readonly string[];
  signal?: AbortSignal;
  /** Called once a source's current copy is verified and in place (offsite copies). */
  afterVerified?: AfterVerified;
}

/** The sources a run pulls: all, or the ones named (each must exist). */
export function selectSources(cfg: ClientConfig, only: readonly string[] | undefined): SourceConfig[] {
  for (const s of cfg.sources) {
    if (RESERVED_NAMES.has(s.name)) throw new ShootError("CONFIG_INVALID", `source name ${JSON.stringify(s.name)} is reserved for shoot's own files in dest_dir`);
  }
  if (!only || only.length === 0) return [...cfg.sources];
  const known = cfg.sources.map((s) => s.name);
  const unknown = only.filter((n) => !known.includes(n));
  if (unknown.length > 0) {
    const listed = known.length > 20
      ? `${known.slice(0, 20).join(", ")} … and ${known.length - 20} more`
      : known.join(", ");
    const names = unknown.map((n) => JSON.stringify(n)).join(", ");
    const plural = unknown.length > 1 ? "s" : "";
    throw new ShootError("SOURCE_UNKNOWN", `unknown source${plural} ${names} (configured: ${listed})`);
  }
  return cfg.sources.filter((s) => only.includes(s.name));
}

/** Run `fn` over `items` with at most `limit` running at once; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  return out;
}

/** The run's final code: the most severe failure, else 9 when nothing was new, 30 when everything was a first copy, else 4. */
export function clientFinalCode(codes: readonly number[]): number {
  const failures = codes.filter((c) => !isGolden(c));
  if (failures.length > 0) return mostSevere(failures);
  if (codes.every((c) => c === code("UNCHANGED"))) return code("UNCHANGED");
  if (codes.every((c) => c === code("FIRST_ARCHIVE"))) return code("FIRST_ARCHIVE");
  return code("NEW_ARCHIVE");
}

// --- judging server.status (pure) -----------------------------------------------------------

export type StatusVerdict =
  | { ok: true; archive: ArchiveInfo; serverCode: number; final: StatusRecord }
  | { ok: false; code: CodeName; why: string };


/**
 * Decide from server.status whether there is an archive to pull, in the order
 * docs/status-protocol.md gives: too old, not finished, not golden, then the archive's
 * fields. `mtime` is the file's modification time as rsync kept it.
 */
export function judgeStatus(parsed: ParsedStatus, mtime: Date, now: Date, maxAgeMs: number): StatusVerdict {
  const bad = (c: CodeName, why: string): StatusVerdict => ({ ok: false, code: c, why });
  const { records, skipped } = parsed;
  if (records.length === 0) return bad("STATUS_INVALID", `server.status holds no readable record${skipped ? ` (${skipped} unreadable line(s))` : " (it is empty)"}`);
  const nowMs = now.getTime();
  const future = records.find((r) => Date.parse(r.t) > nowMs + MAX_CLOCK_SKEW_MS);
  if (future) return bad("STATUS_INVALID", `server.status holds a record from the future (${shown(future.t, 40)}; it is ${now.toISOString()} here): are the clocks set right?`);
  if (mtime.getTime() > nowMs + MAX_CLOCK_SKEW_MS) return bad("STATUS_INVALID", `server.status was modified in the future (${mtime.toISOString()}; it is ${now.toISOString()} here): are the clocks set right?`);
  const fileAge = nowMs - mtime.getTime();
  if (fileAge > maxAgeMs) return bad("STATUS_STALE", `server.status was last written ${formatAge(fileAge)} ago (max_age ${formatAge(maxAgeMs)}): the server has not run`);
  const last = records.at(-1)!;
  const lastAge = nowMs - Date.parse(last.t);
  if (lastAge > maxAgeMs) return bad("STATUS_STALE", `the newest record in server.status is ${formatAge(lastAge)} old (max_age ${formatAge(maxAgeMs)}): the server has not run`);
  const final = lastFinal(records);
  if (!final) {
    return bad("SERVER_BUSY", `the server is in the middle of a run (last record ${shown(last.t, 40)}: ${last.code} ${codeName(last.code)} ${shown(last.msg, 120)})${skipped ? `; ${skipped} unreadable line(s)` : ""}`);
  }
  if (!isGolden(final.code)) {
    return bad("SERVER_FAILED", `the server's last run ended with ${final.code} ${codeName(final.code)}: ${shown(final.msg, 300)} (at ${shown(final.t, 40)})`);
  }
  const finalAge = nowMs - Date.parse(final.t);
  if (finalAge > maxAgeMs) return bad("STATUS_STALE", `the server's last run ended ${formatAge(finalAge)} ago (max_age ${formatAge(maxAgeMs)}): the server has not run since`);
  const a = final.archive as Partial<Record<keyof ArchiveInfo, unknown>> | undefined;
  if (!a) return bad("STATUS_INVALID", `the server's final record (${final.code} ${codeName(final.code)}) names no archive`);
  if (typeof a.file !== "string" || !isArchiveName(a.file)) {
    return bad("UNSAFE_NAME", `server.status names the archive "${shown(String(a.file), 120)}", which is not a plain file name of the archive pattern; nothing was pulled`);
  }
  const dated = futureName(a.file, final.t, now);
  if (dated) return bad("FUTURE_NAME", dated);
  if (typeof a.size !== "number" || !Number.isSafeInteger(a.size) || a.size <= 0 || a.size > MAX_ARCHIVE_SIZE) {
    return bad("STATUS_INVALID", `server.status gives the archive an impossible size (${shown(String(a.size), 40)})`);
  }
  if (typeof a.md5 !== "string" || !/^[0-9a-f]{32}$/.test(a.md5)) return bad("STATUS_INVALID", "server.status gives the archive a checksum that is not 32 hex digits");
  if (a.sha256 !== undefined && (typeof a.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(a.sha256))) {
    return bad("STATUS_INVALID", "server.status gives the archive a sha256 that is not 64 hex digits");
  }
  // a fresh object with only the checked fields: nothing else from the record travels on
  const archive: ArchiveInfo = { file: a.file, size: a.size, md5: a.md5, ...(a.sha256 ? { sha256: a.sha256 as string } : {}) };
  return { ok: true, archive, serverCode: final.code, final };
}

/**
 * Why an archive name is not believed: its date is later than the record that names it (the
 * archive is named before that record is written), or than this host's clock, by more than
 * the skew tolerated. Held copies are never ordered by name, but a name from the future is a
 * lie or a wrong clock, and nothing is pulled on its word.
 */
export function futureName(file: string, recordTime: string, now: Date): string | undefined {
  const named = archiveTime(file)!.getTime();
  const limit = Math.min(Date.parse(recordTime), now.getTime()) + MAX_CLOCK_SKEW_MS;
  if (named <= limit) return undefined;
  const than = Date.parse(recordTime) <= now.getTime() ? `the record that names it (${new Date(Date.parse(recordTime)).toISOString()})` : `this host's clock (${now.toISOString()})`;
  return `server.status names the archive ${file}, dated ${archiveTime(file)!.toISOString()}: later than ${than} by more than ${formatDuration(MAX_CLOCK_SKEW_MS)}; nothing was pulled (is the server's clock right?)`;
}

// --- copies on disk -----------------------------------------------------------------------

/** Verified copies in a source's directory, oldest first by when they were verified here (never by name). */
export function verifiedCopies(dir: string): string[] {
  return heldCopies(dir);
}

/**
 * A verified copy's place among the copies, recorded before commit writes its .md5 (which makes
 * it count as held): a copy held always has its place. A full disk is said as such.
 */
function recordOrder(dir: string, file: string, now: Date): void {
  try {
    recordVerified(dir, file, now);
  } catch (e) {
    throw new SourceFailure(errnoCode(e) === "ENOSPC" ? "CLIENT_NO_SPACE" : "DEST_UNUSABLE", `${file} is verified, but its place among the copies in ${dir} could not be recorded (${errorMessage(e)}); it was not kept`);
  }
}

/** A source's directory is the backup host's own: refused when others may write in it (or it belongs to another user). */
function checkSourceDir(dir: string): void {
  const problem = unsafeDir(dir, "the copies' directory");
  if (problem) throw new SourceFailure("UNSAFE_PERMISSIONS", problem);
}


/** The MD5 of the verified copy held under this name (copies only ever arrive verified), if there is one. */
function heldChecksum(dir: string, file: string): string | undefined {
  try {
    if (!fs.lstatSync(path.join(dir, file)).isFile()) return undefined;
    return parseMd5Line(fs.readFileSync(path.join(dir, `${file}${CHECKSUM_SUFFIX}`), "utf8"), file);
  } catch {
    return undefined;
  }
}


/**
 * Start a staging directory afresh, keeping what can speed up the next transfer: rsync's
 * partial files, and whole files left unverified by an earlier run (moved into the partial
 * directory, where rsync takes them as the basis; they are never taken as copies).
 */
function prepareStage(stage: string): void {
  fs.mkdirSync(path.join(stage, PARTIAL_DIR), { recursive: true, mode: 0o700 });
  for (const e of fs.readdirSync(stage, { withFileTypes: true })) {
    if (e.name === PARTIAL_DIR) continue;
    const p = path.join(stage, e.name);
    if (e.isFile() && isArchiveName(e.name)) fs.renameSync(p, path.join(stage, PARTIAL_DIR, e.name));
    else fs.rmSync(p, { recursive: true, force: true });
  }
}

/** Partial files of other archives are of no use any more. */
function prunePartials(stage: string, keepName: string): void {
  const dir = path.join(stage, PARTIAL_DIR);
  for (const n of readDirOrEmpty(dir)) if (n !== keepName) fs.rmSync(path.join(dir, n), { recursive: true, force: true });
}

interface RetentionResult {
  removed: string[];
  /** What the rules removed, and why, for the ROTATED record. */
  record?: PruneRecord;
  error?: string;
}

/**
 * Keep what the rules keep of the verified copies, in the order they were verified and never
 * the newest verified (whatever the names say); once a verified copy is held, archives left
 * without a .md5 (a crash before it was written) go too.
 */
function applyRetention(dir: string, rules: RetentionRules): RetentionResult {
  const removed: string[] = [];
  let record: PruneRecord | undefined;
  try {
    const verified = verifiedCopies(dir);
    const orphans = verified.length > 0 ? sortArchives(readDirOrEmpty(dir)).filter((n) => !verified.includes(n)) : [];
    record = planRemoval(clientCopies(dir, verified), rules).record;
    for (const n of [...record.removed.map((r) => r.file), ...orphans]) {
      // the .md5 goes first: a copy half removed is never counted as verified
      fs.rmSync(path.join(dir, `${n}${CHECKSUM_SUFFIX}`), { force: true });
      fs.rmSync(path.join(dir, n), { force: true });
      fs.rmSync(path.join(dir, `${n}${LIST_SUFFIX}`), { force: true });
      removed.push(n);
    }
    forgetCopies(dir, removed);
    return { removed, record };
  } catch (e) {
    return { removed, record, error: errorMessage(e) };
  }
}

/** The ROTATED record of what a retention pass removed, and why. */
function recordRemoved(status: StatusWriter, source: SourceConfig, kept: RetentionResult): void {
  if (kept.removed.length === 0) return;
  const why = kept.record?.removed.length ? describeRemoved(kept.record) : kept.removed.join(", ");
  status.write("ROTATED", `${source.name}: removed ${why}`, { step: "rotate", data: { source: source.name, ...kept.record, files: kept.removed } });
}

/** The rules for a source's copies: its own, else [client]'s. */
function rulesFor(cfg: ClientConfig, source: SourceConfig): RetentionRules {
  return source.retention ?? cfg.retention;
}

// --- one source -----------------------------------------------------------------------------

interface RunContext {
  cfg: ClientConfig;
  deps: Deps;
  status: StatusWriter;
  /** Aborts on SIGTERM/SIGINT or when max_runtime is reached. */
  signal?: AbortSignal;
  /** When max_runtime is reached (Date.now() time). */
  deadlineAt: number;
  children: Set<Child>;
  afterVerified?: AfterVerified;
}

class SourceFailure extends Error {
  /** `transient`: how the failure passes by nature, when it does (the run may try again). */
  constructor(readonly codeName: CodeName, message: string, readonly transient?: string) {
    super(message);
  }
}

/** Why ssh could not use `key` as an identity, if it can tell from the file alone. */
function unusableKey(key: string): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(key);
    fs.accessSync(key, fs.constants.R_OK);
  } catch (e) {
    return errnoCode(e) === "ENOENT" ? "does not exist" : `cannot be read (${errnoCode(e) ?? errorMessage(e)})`;
  }
  if (!st.isFile()) return "is not a regular file";
  // ssh ignores a private key of its own user that others may read
  if (st.uid === process.getuid?.() && (st.mode & 0o077) !== 0) return `can be read by other users (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`;
  return undefined;
}

/** Bytes of the files under `dir` now (rsync's temporary and partial files grow as data arrives). */
function bytesUnder(dir: string): number {
  let n = 0;
  try {
    for (const rel of fs.readdirSync(dir, { recursive: true })) n += fs.statSync(path.join(dir, String(rel)), { throwIfNoEntry: false })?.size ?? 0;
  } catch {
    // the directory changes under us: the next look counts again
  }
  return n;
}

/** rsync's receiver gathers this much before it writes (fileio.c: WRITE_SIZE * 8): growth comes in such steps. */
const RSYNC_WRITE_BUFFER = 256 * 1024;

/**
 * rsync's --timeout does not catch every silent sender: while its generator can still write
 * keep-alives, rsync counts that as I/O, so a server whose rsync hangs before the data flows
 * (a stalled disk, a stopped process, a connection that only goes quiet one way) held a pull
 * for ever, and through a shared connection that went silent after the login it does not end
 * the wait at all. So every pull (status, archive, file list) is also watched from here, each
 * with a directory of its own to watch: when nothing under `dir` has grown
 * for `timeout` (after connect_timeout for the connection; and never less than two of rsync's
 * write buffers take at `bwlimit`), rsync is stopped with SIGTERM, which keeps what arrived
 * for the next run.
 */
function watchStall(
  dir: string, cfg: Pick<ClientConfig, "timeout" | "connect_timeout">, bwlimit: number | undefined,
  onStall: (anyData: boolean) => void,
): () => void {
  const idleMs = Math.max(cfg.timeout, bwlimit ? (2 * RSYNC_WRITE_BUFFER * 1000) / bwlimit : 0);
  let seen = bytesUnder(dir);
  let anyData = false;
  let deadline = Date.now() + cfg.connect_timeout + idleMs;
  const timer = setInterval(() => {
    const now = bytesUnder(dir);
    if (now !== seen) {
      seen = now;
      anyData = true;
      deadline = Date.now() + idleMs;
    } else if (Date.now() > deadline) {
      clearInterval(timer);
      onStall(anyData);
    }
  }, Math.min(1000, Math.max(100, cfg.timeout / 4)));
  return () => clearInterval(timer);
}

async function rsync(
  ctx: RunContext, spec: PullSpec, fallback: CodeName, timeoutMs?: number, watchDir?: string,
  onStart?: (child: Child) => void,
): Promise<TransferStats> {
  if (ctx.signal?.aborted) throw new SourceFailure(fallback, "the run was interrupted");
  const argv = rsyncPullArgv(spec);
  let child: Child;
  try {
    child = ctx.deps.spawner.start(argv, {
      env: rsyncEnv(ctx.deps.env),
      captureStdout: true,
      maxStdout: 64 * 1024,
      stderrLines: 12,
      timeoutMs,
    });
  } catch (e) {
    if (e instanceof ToolMissingError) throw new SourceFailure("TOOL_MISSING", e.message);
    throw e;
  }
  ctx.children.add(child);
  onStart?.(child);
  let stalled: { anyData: boolean } | undefined;
  const unwatch = watchDir ? watchStall(watchDir, ctx.cfg, spec.source.bwlimit, (anyData) => {
    stalled = { anyData };
    child.kill("SIGTERM");
  }) : undefined;
  const result = await child.done.finally(() => {
    ctx.children.delete(child);
    unwatch?.();
  });
  if (stalled && result.exitCode !== 0) {
    // silence before the first byte passes like a connection time-out; a stall after data is not tried again
    const transient = stalled.anyData ? undefined : "no data had come yet when the time-out ended the transfer";
    const why = `no data arrived for ${formatDuration(ctx.cfg.timeout)} (timeout): the transfer was stopped; ` +
      "what arrived is kept for the next run";
    throw new SourceFailure(fallback, why, transient);
  }
  if (result.exitCode !== 0) {
    const f = classifyFailure(result, fallback, spec);
    if (ctx.signal?.reason instanceof DeadlineReached) {
      throw new SourceFailure(f.code, "the transfer was stopped; what arrived is kept for the next run");
    }
    if (ctx.signal?.aborted) throw new SourceFailure(f.code, `the run was interrupted: ${f.why}`);
    throw new SourceFailure(f.code, f.why, f.transient);
  }
  return parseStats(result.stdout);
}

/** Pull server.status into the staging directory and read it (with its time as rsync kept it); the file does not stay. */
async function pullStatus(
  ctx: RunContext, source: SourceConfig, stage: string, controlPath?: string,
): Promise<{ parsed: ParsedStatus; mtime: Date }> {
  const { cfg } = ctx;
  const timeoutMs = cfg.connect_timeout + cfg.timeout + 30_000;
  // JSON lines, pulled whole every run: compressed, a few KiB become one. Watched like the
  // archive: through a shared connection that went silent after the login, rsync's own
  // --timeout does not end the wait
  const spec = {
    client: cfg, source, files: [SERVER_STATUS], into: stage, maxSize: MAX_STATUS_BYTES, compress: true, controlPath,
  };
  await rsync(ctx, spec, "STATUS_PULL_FAILED", timeoutMs, stage);
  const file = path.join(stage, SERVER_STATUS);
  try {
    const st = fs.lstatSync(file);
    if (!st.isFile()) throw new Error("not a regular file");
    return { parsed: parseStatus(fs.readFileSync(file, "utf8")), mtime: st.mtime };
  } catch {
    throw new SourceFailure("STATUS_INVALID", `server.status was not transferred: it is larger than ${formatBytes(MAX_STATUS_BYTES)} or not a regular file`);
  } finally {
    fs.rmSync(file, { force: true });
  }
}

function describePull(a: ArchiveInfo, s: TransferStats): string {
  const parts = [`${formatBytes(a.size)}`];
  if (s.received !== undefined) parts.push(`${formatBytes(s.received)} received`);
  if (s.matched) parts.push(`${formatBytes(s.matched)} reused from data already here`);
  return parts.join(", ");
}

/**
 * One try of one source. `keepConnection` false: no connection kept for the transfers (a try after the
 * server closed connections during the key exchange: one login at a time eases the throttling).
 */
async function pullSource(ctx: RunContext, source: SourceConfig, keepConnection = true): Promise<SourceOutcome> {
  if (!keepConnection) {
    return pullSourceOver(ctx, source, { controlPath: undefined, settled: async () => ({ up: false }) });
  }
  // started now, while the source's directories are checked; every transfer goes through it
  const shared = SharedSsh.start(ctx.deps.spawner, ctx.deps.env, ctx.cfg, source);
  try {
    return await pullSourceOver(ctx, source, shared);
  } finally {
    await shared.close();
  }
}

/**
 * The shared connection's socket once it is up. When it could not be made because the server
 * cannot be reached, refused its host key or closed the connection during the key exchange,
 * the source ends with that now (connecting again for the status pull would only wait through
 * the same time-out twice); otherwise the transfers connect on their own.
 */
async function connected(
  ctx: RunContext, source: SourceConfig, shared: Pick<SharedSsh, "controlPath" | "settled">,
): Promise<string | undefined> {
  let onAbort = () => {};
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    ctx.signal?.addEventListener("abort", onAbort);
  });
  const s = await Promise.race([shared.settled(), aborted])
    .finally(() => ctx.signal?.removeEventListener("abort", onAbort));
  // stopped while connecting: the caller closes the connection being made
  if (!s || ctx.signal?.aborted) {
    const why = ctx.signal?.reason instanceof DeadlineReached
      ? "the connection was still being made"
      : "the run was interrupted";
    throw new SourceFailure("STATUS_PULL_FAILED", why);
  }
  if (s.up) return shared.controlPath;
  if (!s.ended) return undefined;
  const f = classifyFailure(s.ended, "STATUS_PULL_FAILED", { client: ctx.cfg, source });
  if (f.code === "UNREACHABLE" || f.code === "HOST_KEY_FAILED" || f.code === "THROTTLED") {
    throw new SourceFailure(f.code, f.why, f.transient);
  }
  return undefined;
}

async function pullSourceOver(
  ctx: RunContext, source: SourceConfig, shared: SourceConnection & Pick<SharedSsh, "settled">,
): Promise<SourceOutcome> {
  const { cfg, deps, status } = ctx;
  const dir = path.join(cfg.dest_dir, source.name);
  const stage = path.join(dir, STAGE_DIR);
  const warnings: Warning[] = [];
  const step = (msg: string) => {
    status.write("STEP", `${source.name}: ${msg}`, { step: "pull", data: { source: source.name } });
    deps.log.info(`${source.name}: ${msg}`);
  };
  try {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new SourceFailure("DEST_UNUSABLE", `${dir} cannot be used: ${errorMessage(e)}`);
    }
    checkSourceDir(dir);
    try {
      prepareStage(stage);
    } catch (e) {
      throw new SourceFailure("DEST_UNUSABLE", `${dir} cannot be used: ${errorMessage(e)}`);
    }

    // 1. server.status (ssh says only "Permission denied" when it cannot use the key: say why first)
    const keyProblem = source.identity && !isLocalRemote(source.remote) ? unusableKey(source.identity) : undefined;
    if (keyProblem) throw new SourceFailure("STATUS_PULL_FAILED", `identity ${source.identity} ${keyProblem}: ssh cannot log in with it`);
    step("pulling server.status");
    const { parsed, mtime } = await pullStatus(ctx, source, stage, await connected(ctx, source, shared));
    if (parsed.skipped > 0) warnings.push({ code: code("STATUS_TORN"), msg: `${parsed.skipped} unreadable line(s) in the server's status file were skipped` });

    // 2. too old, not finished, not golden, unsafe
    const verdict = judgeStatus(parsed, mtime, deps.clock.now(), cfg.max_age);
    if (!verdict.ok) throw new SourceFailure(verdict.code, verdict.why);
    const a = verdict.archive;
    const chain = judgeChain(verdict.final.data, a);
    if (!chain.ok) throw new SourceFailure("STATUS_INVALID", `server.status: ${chain.why}; nothing was pulled`);
    const first = verifiedCopies(dir).length === 0;

    // 2b. the archives an incremental one needs before it (docs/incremental.md), each pulled like it when not held
    const pull: PullOne = { ctx, source, shared, stage, dir, records: parsed.records, withList: chain.lists, fullSize: chain.links[0]?.size ?? a.size, step };
    const links: string[] = [];
    for (const link of chain.links) {
      if (held(dir, link, chain.lists)) continue;
      await pullOne(pull, link);
      links.push(link.file);
    }
    const also = links.length ? `; first the ${links.length} archive(s) it needs: ${links.join(", ")}` : "";

    if (held(dir, a, chain.lists)) {
      const kept = applyRetention(dir, rulesFor(cfg, source));
      recordRemoved(status, source, kept);
      if (kept.error) throw new SourceFailure("CLIENT_ROTATION_FAILED", `${a.file} is current, but removing old copies failed: ${kept.error}`);
      fs.rmSync(stage, { recursive: true, force: true });
      const why = verdict.serverCode === code("UNCHANGED") ? "nothing changed on the server" : "pulled by an earlier run";
      if (links.length) return { name: source.name, code: code("NEW_ARCHIVE"), message: `already holds the current archive ${a.file} (${why})${also}`, archive: a, warnings };
      return { name: source.name, code: code("UNCHANGED"), message: `already holds the current archive ${a.file} (${why})`, archive: a, warnings };
    }
    const stats = await pullOne({ ...pull, last: true }, a);

    // 5. retention
    const kept = applyRetention(dir, rulesFor(cfg, source));
    recordRemoved(status, source, kept);
    fs.rmSync(stage, { recursive: true, force: true });
    const message = `pulled and verified ${a.file} (${describePull(a, stats)})${first ? ", the first copy of this source" : ""}${also}`;
    if (kept.error) {
      return { name: source.name, code: code("CLIENT_ROTATION_FAILED"), message: `${message}; removing old copies failed: ${kept.error}`, archive: a, wireBytes: stats.received, warnings };
    }
    return { name: source.name, code: code(first ? "FIRST_ARCHIVE" : "NEW_ARCHIVE"), message, archive: a, wireBytes: stats.received, warnings };
  } catch (e) {
    tidyStage(stage);
    if (e instanceof SourceFailure) {
      const transient = e.transient ? { transient: e.transient } : {};
      return { name: source.name, code: code(e.codeName), message: e.message, warnings, ...transient };
    }
    if (e instanceof ShootError) return { name: source.name, code: e.code, message: e.message, warnings };
    return { name: source.name, code: code("INTERNAL_ERROR"), message: `internal error: ${errorMessage(e)}`, warnings };
  }
}

/** The verified copies held in `dir` that restore point `a` needs before it, as a status record would give them. */
function heldLinks(dir: string, a: ArchiveInfo): ArchiveInfo[] {
  return archivesNeeded(a.file, verifiedCopies(dir)).slice(0, -1).flatMap((file) => {
    const h = describeArchive(path.join(dir, file), "client", "");
    return h?.md5 ? [{ file, size: h.bytes, md5: h.md5, ...(h.list?.sha256 ? { sha256: h.list.sha256 } : {}) }] : [];
  });
}

/**
 * The offsite step, after the pull: the source's current copy (new, or held from an earlier
 * run) goes to each store. Its outcome sits beside the pull's code and never changes it.
 */
async function withOffsite(ctx: RunContext, source: SourceConfig, o: SourceOutcome): Promise<SourceOutcome> {
  if (!ctx.afterVerified || !isGolden(o.code) || !o.archive || ctx.signal?.aborted) return o;
  const dir = path.join(ctx.cfg.dest_dir, source.name);
  let offsite: StoreOutcome[];
  try {
    // an incremental copy goes after the copies it needs (docs/incremental.md): a store that
    // holds them already finds each in place
    offsite = [];
    for (const link of heldLinks(dir, o.archive)) offsite.push(...(await ctx.afterVerified({ source: source.name, dir, archive: link }, (name, msg, data) => ctx.status.write(name, msg, { step: "offsite", data }))));
    offsite.push(...(await ctx.afterVerified({ source: source.name, dir, archive: o.archive }, (name, msg, data) => ctx.status.write(name, msg, { step: "offsite", data }))));
  } catch (e) {
    offsite = [{ store: "offsite", code: code("STORE_FAILED"), message: errorMessage(e) }];
  }
  return offsite.length ? { ...o, offsite } : o;
}

/** The source's connection: `close` when there is one to close once the last archive's transfers have ended. */
type SourceConnection = Pick<SharedSsh, "controlPath"> & Partial<Pick<SharedSsh, "close">>;

/** What pulling one archive needs from the source's run. */
interface PullOne {
  ctx: RunContext;
  source: SourceConfig;
  shared: SourceConnection;
  /** The source's last archive: its connection has no more use once its transfers end. */
  last?: boolean;
  stage: string;
  dir: string;
  records: readonly StatusRecord[];
  /** Keep the server's file list beside the copy even without a deep check (a link of a chain). */
  withList: boolean;
  /** The size of the full archive of the chain: a list is about as large as that archive's. */
  fullSize: number;
  step: (msg: string) => void;
}

/**
 * Whether the verified copy of `a` is held (with its file list when one is needed); throws when
 * a copy of that name is held with another checksum.
 */
function held(dir: string, a: ArchiveInfo, withList: boolean): boolean {
  const heldMd5 = heldChecksum(dir, a.file);
  if (heldMd5 !== undefined && heldMd5 !== a.md5) {
    // a server never makes two archives of one name: a copy held is never replaced by another
    throw new SourceFailure("STATUS_INVALID", `server.status gives ${a.file} the MD5 ${a.md5}, but the verified copy held under that name has ${heldMd5}; it is kept and nothing was pulled`);
  }
  return heldMd5 === a.md5 && sizeOf(path.join(dir, a.file)) === a.size && (!withList || sizeOf(path.join(dir, `${a.file}${LIST_SUFFIX}`)) !== undefined);
}

interface ChangedPlaces {
  places: number;
  /** Counted from the archive's pieces, not from the scan's entries (deltaBlockSize). */
  exact: boolean;
}

/**
 * In how many places the archive `file` differs from the last one, as the server's run that
 * made it found, for the delta's block size: its ARCHIVE_WRITTEN record's count from the hashes
 * of the compressed pieces (`exact`), or else its SCANNED record's runs of new, changed or
 * deleted entries (from an older server, how many entries); undefined when the records do not
 * say. The pieces' count is against the server's last archive (`placesAgainst`); when that is
 * not among the copies `held` here, rsync matches an older copy, which differs in more places,
 * so the count is only a floor, as the scan's is. Only a hint: whatever a server writes here
 * changes how many bytes travel, never what is kept.
 */
export function changedPlaces(
  records: readonly StatusRecord[], file: string, held: readonly string[],
): ChangedPlaces | undefined {
  const count = (n: unknown) => (typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : undefined);
  const made = records.find((r) => r.archive?.file === file && isGolden(r.code));
  if (!made) return undefined;
  const data = (name: string) => records.find((r) => r.run === made.run && r.name === name)?.data ?? {};
  const written = data("ARCHIVE_WRITTEN");
  const exact = count(written.places);
  const against = written.placesAgainst;
  // a server before placesAgainst was recorded counted against its last archive all the same
  if (exact !== undefined) return { places: exact, exact: typeof against !== "string" || held.includes(against) };
  const scanned = data("SCANNED");
  const places = count(scanned.places ?? scanned.changed);
  return places === undefined ? undefined : { places, exact: false };
}

/** Steps 3 and 4 for one archive: space, pull, verify, move into place, and its PULLED record. */
async function pullOne(p: PullOne, a: ArchiveInfo): Promise<TransferStats> {
  const { ctx, source, stage, dir, step } = p;
  const { cfg, deps, status } = ctx;
  // 3. space. Data kept from an interrupted transfer only saves time: partials of other
  // archives go first, and this archive's own partial goes when the space is short (resuming
  // needs room for the partial and the whole new file). Kept, either would block every later
  // pull on a nearly full disk with CLIENT_NO_SPACE.
  prunePartials(stage, a.file);
  let free = deps.disk.freeBytes(dir);
  const partial = path.join(stage, PARTIAL_DIR, a.file);
  if (free < a.size + cfg.reserve && sizeOf(partial) !== undefined) {
    fs.rmSync(partial, { force: true });
    free = deps.disk.freeBytes(dir);
  }
  if (free < a.size + cfg.reserve) {
    throw new SourceFailure("CLIENT_NO_SPACE", `${a.file} needs ${formatBytes(a.size)} plus the reserve of ${formatBytes(cfg.reserve)}; ${formatBytes(free)} is free in ${dir}`);
  }

  // 4. pull, verify, move into place
  step(`pulling ${a.file} (${formatBytes(a.size)})`);
  const controlPath = p.shared.controlPath;
  // the server's file list comes over the same connection while the archive does (verify =
  // "deep", or a link of a chain whose list restore points are put together from)
  const deep = cfg.verify === "deep";
  const list = deep || p.withList
    ? pullList(ctx, source, stage, a, controlPath, Math.max(a.size, p.fullSize))
    : undefined;
  const held = verifiedCopies(dir);
  const changed = changedPlaces(p.records, a.file, held);
  const blockSize = deltaBlockSize(a.size, changed?.places, changed?.exact);
  const compress = compressDelta(a.file, held);
  const pulled = pullArchive(ctx, source, stage, a, controlPath, { blockSize, compress });
  const { stats, hashed } = await pulled.catch(async (e: unknown) => {
    // without a good archive the list is of no use: stopped, not waited for
    list?.stop();
    await list?.result;
    throw e;
  });
  const listed = await list?.result;
  // the proof and the commit need no connection: it closes while they run
  if (p.last) void p.shared.close?.();
  const proof = list ? await proveCopy(ctx, source, stage, a, p.records, listed, deep) : undefined;
  recordOrder(dir, a.file, deps.clock.now());
  commit(stage, dir, a, proof !== undefined);
  status.write("PULLED", `${source.name}: pulled and verified ${a.file} (${describePull(a, stats)})`, {
    step: "pull", archive: a,
    data: {
      source: source.name, literal: stats.literal, matched: stats.matched, received: stats.received, sent: stats.sent,
      hashed, sharedSsh: controlPath !== undefined, proof, blockSize, places: changed?.places, exactPlaces: changed?.exact, compress,
    },
  });
  return stats;
}

/** After a failure the staging directory stays only when it holds data worth resuming from. */
function tidyStage(stage: string): void {
  try {
    if (readDirOrEmpty(path.join(stage, PARTIAL_DIR)).length === 0) fs.rmSync(stage, { recursive: true, force: true });
  } catch {
    // left for the next run, which starts the staging directory afresh anyway
  }
}

/**
 * The checksum a pulled copy's bytes are held to: the SHA-256 the server recorded, else its MD5.
 * The server takes both in one pass over the bytes it writes, and the MD5 the copy keeps in its
 * .md5 file must be the one in the status record (checked apart from the bytes), so the SHA-256
 * alone answers for the bytes. It is the stronger check, and with SHA instructions it costs
 * half what MD5 costs (700 MB: 0.52 s against 1.1 s, on one core of the bench machine).
 */
function copyCheck(a: ArchiveInfo): { algorithm: DigestAlgorithm; label: string; recorded: string } {
  return a.sha256 !== undefined ? { algorithm: "sha256", label: "SHA-256", recorded: a.sha256 } : { algorithm: "md5", label: "MD5", recorded: a.md5 };
}

/**
 * Check the staged archive against its .md5 file and the status record; a bad one is removed.
 * The checksum taken while it was received counts when it is of this very file. Returns which
 * checksum was compared and when it was taken, for the PULLED record.
 */
async function verify(stage: string, a: ArchiveInfo, followed: FollowResult): Promise<string> {
  const file = path.join(stage, a.file);
  const md5File = path.join(stage, `${a.file}${CHECKSUM_SUFFIX}`);
  const reject = (why: string): never => {
    // a bad copy is never kept, not even as the basis of a later transfer
    fs.rmSync(file, { force: true });
    fs.rmSync(md5File, { force: true });
    fs.rmSync(path.join(stage, PARTIAL_DIR, a.file), { force: true });
    throw new SourceFailure("CHECKSUM_MISMATCH", `${a.file} was rejected and not kept: ${why}`);
  };
  let size: number;
  try {
    const st = fs.lstatSync(file);
    if (!st.isFile()) return reject("it is not a regular file");
    size = st.size;
  } catch {
    return reject(`it was not transferred: on the server it is larger than the ${formatBytes(a.size)} its status record gives, or not a regular file`);
  }
  if (size !== a.size) return reject(`it has ${size} bytes, its status record says ${a.size}`);
  let listed: string | undefined;
  try {
    const st = fs.lstatSync(md5File);
    listed = st.isFile() && st.size < 4096 ? parseMd5Line(fs.readFileSync(md5File, "utf8"), a.file) : undefined;
  } catch {
    listed = undefined;
  }
  if (!listed) return reject(`its checksum file ${a.file}${CHECKSUM_SUFFIX} is missing or not one md5sum line for it`);
  if (listed !== a.md5) return reject(`its checksum file says ${listed}, the status record ${a.md5}`);
  const check = copyCheck(a);
  const during = followedDigest(file, followed);
  const digest = during ?? await fileDigest(file, check.algorithm);
  if (digest !== check.recorded) return reject(`its ${check.label} is ${digest}, the server recorded ${check.recorded}`);
  return `${check.label} ${during ? "while receiving" : `after receiving (${followed.why ?? "read while received, but not the file that was kept"})`}`;
}

/**
 * The archive and its .md5 into the staging directory, hashed while they arrive, flushed to
 * disk and checked (a bad copy is removed). Returns rsync's counts and how it was hashed.
 */
async function pullArchive(
  ctx: RunContext, source: SourceConfig, stage: string, a: ArchiveInfo,
  controlPath: string | undefined, delta: Pick<PullSpec, "blockSize" | "compress">,
): Promise<{ stats: TransferStats; hashed: string }> {
  const follower = followDigest(stage, a.file, copyCheck(a).algorithm);
  const stats = await rsync(ctx, {
    client: ctx.cfg, source, files: [a.file, `${a.file}${CHECKSUM_SUFFIX}`], into: stage,
    // the checksum file is tiny; an archive bigger than its record says is not transferred
    maxSize: Math.max(a.size, 64 * 1024),
    resumable: { basisDir: ".." },
    ...delta,
    controlPath,
  }, "PULL_FAILED", undefined, stage).catch((e: unknown) => {
    follower.cancel();
    throw e;
  });
  // what is still dirty goes to disk while the hashing ends: on its own the fsync took
  // 0.46 s for 700 MB (commit's fsync then finds little left to write)
  const flushed = flushToDisk(path.join(stage, a.file));
  const hashed = await follower.finish().then((followed) => verify(stage, a, followed)).catch(async (e: unknown) => {
    await flushed; // a rejected copy is removed; what its flush met no longer matters
    throw e;
  });
  const flushError = await flushed;
  if (flushError !== undefined) throw flushError;
  return { stats, hashed };
}

/** Where the server's file list arrives: a directory of its own, never taken for a basis by the archive's transfer. */
const LIST_DIR = `${TEMP_PREFIX}list`;

interface ListPull {
  /** What the pull met; undefined when it went well. Never rejects. */
  result: Promise<unknown>;
  /** Stop it (the archive failed: there is nothing to check against the list). */
  stop(): void;
}

/**
 * Start pulling the server's file list for `a`. A list is about 100 bytes an entry as text and
 * can be larger than a small archive of many files (an incremental archive's list is the whole
 * tree's: `listBound` is its full archive's size). It is stored gzip-compressed in members
 * (state/list-file.ts): the basis rsync finds in the source's directory (the last copy's list)
 * saves the members no change falls in, which are few when a day's changes are spread over the
 * tree; a plain list of an earlier server is text that rsync compresses on the way.
 */
function pullList(
  ctx: RunContext, source: SourceConfig, stage: string, a: ArchiveInfo,
  controlPath: string | undefined, listBound: number,
): ListPull {
  const into = path.join(stage, LIST_DIR);
  try {
    fs.mkdirSync(into, { mode: 0o700 });
  } catch (e) {
    if (errnoCode(e) !== "EEXIST") return { result: Promise.resolve(e), stop() {} };
  }
  let child: Child | undefined;
  const spec: PullSpec = {
    client: ctx.cfg, source, files: [`${a.file}${LIST_SUFFIX}`], into, maxSize: Math.max(64 << 20, 4 * listBound),
    // relative to `into`: the source's directory, where the copies and their lists are held
    resumable: { basisDir: "../.." },
    compress: true,
    controlPath,
  };
  const timeoutMs = ctx.cfg.connect_timeout + ctx.cfg.timeout + 30_000;
  const result = rsync(ctx, spec, "PULL_FAILED", timeoutMs, into, (c) => (child = c))
    .then(() => undefined, (e: unknown) => e ?? new Error("the file list's transfer failed"));
  return { result, stop: () => child?.kill("SIGTERM") };
}

/**
 * With the server's file list beside the staged copy (pullList, `listError` what its pull
 * met): verify = "deep" reads the copy's whole tar stream and checks every entry against that
 * list (restore/verify.ts); `deep` false (verify = "checksum", a link of a chain) only checks
 * that the list is this archive's, to keep it beside the copy. A copy that does not prove
 * restorable is removed and never counted. Returns what was proven, for PULLED.
 */
async function proveCopy(
  ctx: RunContext, source: SourceConfig, stage: string, a: ArchiveInfo, records: readonly StatusRecord[],
  listError: unknown, deep: boolean,
): Promise<string> {
  const list = `${a.file}${LIST_SUFFIX}`;
  const reject = (why: string): never => {
    for (const f of [a.file, `${a.file}${CHECKSUM_SUFFIX}`, list]) fs.rmSync(path.join(stage, f), { force: true });
    fs.rmSync(path.join(stage, PARTIAL_DIR, a.file), { force: true });
    throw new SourceFailure("COPY_UNPROVEN", `${a.file} matches its checksum but was not kept: ${why}`);
  };
  if (listError !== undefined) {
    if (!(listError instanceof SourceFailure) || listError.codeName !== "PULL_FAILED") throw listError;
    // most often the server's rotation removed the archive and its list while this run pulled
    // them: as with the archive itself, the next run tries again
    for (const f of [a.file, `${a.file}${CHECKSUM_SUFFIX}`]) fs.rmSync(path.join(stage, f), { force: true });
    const why = `the server's file list ${list} could not be pulled, so ${a.file} could not be checked against it ` +
      `and was not kept: ${listError.message}`;
    throw new SourceFailure("PULL_FAILED", why);
  }
  // a list larger than its bound is not transferred at all: then there is none to check against
  const pulled = path.join(stage, LIST_DIR, list);
  if (fs.existsSync(pulled)) fs.renameSync(pulled, path.join(stage, list));
  const held = describeArchive(path.join(stage, a.file), "client", source.name);
  if (!held?.list) {
    const why = held?.listProblem ? `: ${held.listProblem}` : "";
    return reject(`the server's file list ${list} is not a file list of this version, or not one for this archive${why}`);
  }
  if (!deep) {
    // verify = "checksum": the list is kept to put restore points of several archives together
    if (held.list.md5 !== a.md5 || held.list.size !== a.size) return reject(`the server's file list ${list} describes another archive (MD5 ${held.list.md5}, ${held.list.size} bytes)`);
    return "checksum; the server's file list kept beside it";
  }
  // the pull proved the bytes (the SHA-256 of the record, taken as they arrived, and the MD5 its
  // .md5 gives is the record's): the tar stream is read, not hashed again
  const hashed = a.sha256 === undefined ? undefined : { md5: a.md5, sha256: a.sha256 };
  const warned = warnedPathsIn(records, a.file);
  // small pieces: with many copies proven at once, 1 MiB pieces waiting for the collector
  // were a good part of the client's memory
  const v = await verifyArchive(held, { deep: true, warned, signal: ctx.signal, hashed, pieceBytes: 64 << 10 });
  if (!v.ok) return reject(v.problems.join("; "));
  return `deep: ${v.entries} entries read to the end of the tar stream and checked against the server's file list`;
}

/**
 * Move a verified archive into place, with the server's file list when it was pulled; its .md5
 * (written by us, not the server's) comes last and marks it verified.
 */
function commit(stage: string, dir: string, a: ArchiveInfo, withList: boolean): void {
  const staged = path.join(stage, a.file);
  const fd = fs.openSync(staged, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(staged, 0o600);
  fs.rmSync(path.join(stage, `${a.file}${CHECKSUM_SUFFIX}`), { force: true });
  if (withList) fs.renameSync(path.join(stage, `${a.file}${LIST_SUFFIX}`), path.join(dir, `${a.file}${LIST_SUFFIX}`));
  fs.renameSync(staged, path.join(dir, a.file));
  fsyncDir(dir);
  writeFileAtomic(dir, `${a.file}${CHECKSUM_SUFFIX}`, md5Line(a.md5, a.file));
  fsyncDir(dir);
}

// --- the run --------------------------------------------------------------------------------

export async function runClient(cfg: ClientConfig, deps: Deps, opts: ClientRunOptions = {}): Promise<RunOutcome> {
  const sources = selectSources(cfg, opts.only);
  const dir = cfg.dest_dir;
  const names = sources.map((s) => s.name);
  const spec: RunSpec = {
    role: "client", dir, statusName: CLIENT_STATUS, clock: deps.clock, hostname: deps.hostname, unusable: "DEST_UNUSABLE",
    runStart: { detail: names.join(", "), data: { sources: names } },
    failure: (e) => ({ name: "INTERNAL_ERROR", message: `client run failed: ${errorMessage(e)}`, step: "end" }),
  };
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (e) {
    const now = deps.clock.now();
    return plainOutcome(spec, newRunId(now), now, now, code("DEST_UNUSABLE"), `dest_dir ${dir} cannot be created or written: ${errorMessage(e)}`);
  }
  const unsafe = unsafeDir(dir, "dest_dir");
  if (unsafe) {
    const now = deps.clock.now();
    return plainOutcome(spec, newRunId(now), now, now, code("UNSAFE_PERMISSIONS"), unsafe);
  }
  // read before this run's file replaces them (an ordering hint, taken before the lock): how
  // long each source took last time
  const statusFile = path.join(dir, CLIENT_STATUS);
  const records = [...readStatusFile(`${statusFile}.1`)?.records ?? [], ...readStatusFile(statusFile)?.records ?? []];
  const history = lastPullDurations(records);
  return withRun(spec, (frame) => clientRun(cfg, deps, opts, sources, history, frame));
}

/**
 * Every source through the slots, each on its own; the run ends with the most severe source's
 * code. `history`: how long each source's last pull took (schedule.ts).
 */
async function clientRun(
  cfg: ClientConfig, deps: Deps, opts: ClientRunOptions, sources: SourceConfig[],
  history: ReadonlyMap<string, number>, frame: RunFrame,
): Promise<RunOutcome> {
  const { status } = frame;
  const deadline = runDeadline(cfg.max_runtime, opts.signal);
  const ctx: RunContext = {
    cfg, deps, status, signal: deadline.signal, deadlineAt: deadline.at, children: new Set(),
    afterVerified: opts.afterVerified,
  };
  const onAbort = () => {
    // rsync keeps what it has received in the partial directory when stopped with SIGTERM
    for (const c of ctx.children) c.kill("SIGTERM");
  };
  ctx.signal!.addEventListener("abort", onAbort);
  try {
    const stale = staleLockMessage(frame.lock);
    if (stale) status.write("STALE_LOCK", stale);
    const outcomes = await pullAll(ctx, sources, history, opts.signal);
    let final = clientFinalCode(outcomes.map((o) => o.code));
    if (opts.signal?.aborted) final = code("INTERRUPTED");
    const failed = outcomes.filter((o) => !isGolden(o.code)).map((o) => `${o.name}: ${o.code} ${codeName(o.code)}`);
    const named = failed.length > 10 ? [...failed.slice(0, 10), `+${failed.length - 10} more`] : failed;
    const message = `${sourcesSummary(outcomes.map((o) => o.code))}${failed.length ? ` (${named.join("; ")})` : ""}`;
    status.write(codeName(final) as CodeName, message, { step: "end" });
    return {
      role: "client", host: deps.hostname, run: frame.run, started: frame.started, ended: deps.clock.now(),
      code: final, message, warnings: [], sources: outcomes, statusFile: frame.statusFile,
    };
  } finally {
    ctx.signal!.removeEventListener("abort", onAbort);
    deadline.dispose();
  }
}

/** The run's signal: the caller's (SIGTERM, SIGINT) or max_runtime reached, whichever comes first. */
function runDeadline(
  maxRuntime: number, outer: AbortSignal | undefined,
): { signal: AbortSignal; at: number; dispose(): void } {
  const reached = new AbortController();
  // a timer longer than 2^31 ms would fire at once: such a max_runtime means no limit here
  const timer = maxRuntime < 2 ** 31 ? setTimeout(() => reached.abort(new DeadlineReached()), maxRuntime) : undefined;
  return {
    signal: outer ? AbortSignal.any([outer, reached.signal]) : reached.signal,
    at: Date.now() + maxRuntime,
    dispose: () => clearTimeout(timer),
  };
}

class DeadlineReached extends Error {
  constructor() {
    super("max_runtime reached");
  }
}

/**
 * Every source through the slots (schedule.ts: longest last pull first, one slot kept for the
 * quickest, a failure that passes tried again after a pause), each ending with a SOURCE_DONE
 * record. A source stopped or never started because max_runtime was reached ends DEADLINE.
 */
async function pullAll(
  ctx: RunContext, sources: readonly SourceConfig[], history: ReadonlyMap<string, number>,
  outer: AbortSignal | undefined,
): Promise<SourceOutcome[]> {
  const { cfg, deps, status } = ctx;
  const byName = new Map<string, SourceOutcome>();
  const spent = new Map<string, number>();
  const throttled = new Set<string>();
  const deadlineHit = () => ctx.signal?.reason instanceof DeadlineReached && !outer?.aborted;
  const limitWords = `the run reached max_runtime (${formatDuration(cfg.max_runtime)})`;
  await runInSlots<SourceConfig, SourceOutcome>({
    limit: cfg.concurrency,
    ordered: pullOrder(sources, history),
    signal: ctx.signal,
    run: async (s) => {
      const t0 = performance.now();
      const o = await withOffsite(ctx, s, await pullSource(ctx, s, !throttled.has(s.name)));
      spent.set(s.name, (spent.get(s.name) ?? 0) + (performance.now() - t0));
      return o;
    },
    again: (s, o, attempt) => {
      if (!o.transient || attempt >= cfg.tries) return undefined;
      if (o.code === code("THROTTLED")) throttled.add(s.name);
      const pause = retryPause(cfg.retry_wait, attempt, Math.random());
      if (Date.now() + pause >= ctx.deadlineAt) return undefined;
      const msg = `${s.name}: try ${attempt} of ${cfg.tries} failed, which passes (${o.transient}): ` +
        `${o.code} ${codeName(o.code)}: ${o.message}; trying again in ${formatDuration(pause)}, when a slot is free`;
      const data = { source: s.name, try: attempt, code: o.code, pauseMs: pause };
      status.write("RETRY", msg, { step: "pull", data });
      deps.log.info(msg);
      return pause;
    },
    notStarted: (s) => deadlineHit()
      ? { name: s.name, code: code("DEADLINE"), message: `not started: ${limitWords} before a slot was free` }
      : { name: s.name, code: code("INTERRUPTED"), message: "not started: the run was interrupted" },
    done: (s, result, tries) => {
      let o: SourceOutcome = { ...result, tries, durationMs: Math.round(spent.get(s.name) ?? 0) };
      if (tries > 1) o.message = `${o.message} (${tries} tries)`;
      if (tries > 0 && deadlineHit() && !isGolden(o.code)) {
        o = { ...o, code: code("DEADLINE"), message: `${limitWords} while this source was being pulled: ${o.message}` };
      }
      byName.set(s.name, o);
      status.write("SOURCE_DONE", `${s.name}: ${o.code} ${codeName(o.code)}: ${o.message}`, {
        step: "pull", ...(o.archive ? { archive: o.archive } : {}),
        data: { source: s.name, code: o.code, name: codeName(o.code), tries, durationMs: o.durationMs },
      });
    },
  });
  return sources.map((s) => byName.get(s.name)!);
}
