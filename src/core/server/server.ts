/**
 * The server run, step by step: sanity, first run, change detection, free space, archive
 * (checksum in the same pass, flushed, renamed into place when complete), rotation, final
 * code 4 / 9 / 30. Every step and every warning goes to server.status.
 */
import fs from "node:fs";
import path from "node:path";
import { writeArchive, type ArchiveEntry, type ArchiveResult } from "../archive/writer.ts";
import { ArchiveUnprovenError } from "../archive/pipeline.ts";
import { changedRuns, decodePieceIndex, encodePieceIndex } from "../archive/piece-index.ts";
import { code, codeName, type CodeName } from "../common/codes.ts";
import type { ServerConfig } from "../common/config.ts";
import type { Deps } from "../common/deps.ts";
import { ShootError, errnoCode, errorMessage } from "../common/errors.ts";
import { compileExcludes } from "../scan/exclude.ts";
import {
  createExclusive, exists, fsyncDir, LineWriter, readChunks, readLines, sizeOf, writeFileAtomic,
} from "../state/fsutil.ts";
import { removeLeftovers } from "../state/leftovers.ts";
import { unsafeDir } from "../state/strict-modes.ts";
import { describeRemoved, planRemoval, serverCopies, type PruneRecord } from "../state/held.ts";
import { describeRules } from "../state/retention.ts";
import { DumpPlan, type DumpRun } from "./dumps.ts";
import { archivesNeeded, levelOf } from "../state/chain.ts";
import { DumpdirStore, markChanges, type ChangeSet } from "../scan/changes.ts";
import { chainData, checkChain, planLevel, recordedEntries, sourcesKey, type LevelPlan } from "./incremental.ts";
import { childEnv } from "./wrapper.ts";
import { plainOutcome, staleLockMessage, unusableDir, withRun, type RunSpec } from "../state/run.ts";
import { compressList } from "../state/list-file.ts";
import { CHECKSUM_SUFFIX, compressionOf, LIST_SUFFIX, PIECES_SUFFIX, archiveTime, TEMP_PREFIX, archiveName, md5Line, parseArchiveName, parseMd5Line, sortArchives } from "../state/naming.ts";
import type { RunOutcome, Warning } from "../common/outcome.ts";
import { entryFromLine, entryLine, hasChanges, LIST_FORMAT, LIST_VERSION, lineKey, ListComparer, listHeaderOf, normaliseSources, openList, scanSources, systemOwners, type Changes, type ListHeader, type ScanSummary } from "../scan/scan.ts";
import { HOLD_BYTES, quickCompare, type QuickCheck } from "../scan/scan-parallel.ts";
import { SERVER_STATUS, StatusWriter, newRunId, type ArchiveInfo } from "../state/status.ts";
import { formatBytes } from "../common/units.ts";

/** The walk's list while the run goes on: beside the archives, with the temporary prefix, so a killed run's copy is cleaned up. */
function scanListPath(dir: string): string {
  return path.join(dir, `${TEMP_PREFIX}scan.list`);
}

/** Entries walked between two garbage collections (see scanToList). */
const GC_EVERY_ENTRIES = 32768;

/** Warning records written one by one; beyond this a count stands for the rest. */
const MAX_WARNING_RECORDS = 200;

export interface ServerRunOptions {
  /** Set when the wrapper started this run: it holds the lock and wrote the first records. */
  parent?: { run: string; lockToken: string };
  signal?: AbortSignal;
  /** How far the unchanged check on every core may get ahead of its comparison (default: scan-parallel's HOLD_BYTES). */
  parallelHoldBytes?: number;
  /** Bytes of tar stream written so far and the sources' size: for a progress display. */
  onArchiveProgress?: (done: number, total: number) => void;
  /** Called after the archive's last byte is written, before it is proven (tests damage it here). */
  onArchiveWritten?: (fd: number) => void;
}

class Run {
  readonly warnings: Warning[] = [];
  lastStep = "start";
  private warned = 0;
  constructor(readonly status: StatusWriter) {}

  step(step: string, msg: string, name: CodeName = "STEP", data?: Record<string, unknown>): void {
    this.lastStep = step;
    this.status.write(name, msg, { step, data });
  }

  warn(name: CodeName, msg: string): void {
    this.warnings.push({ code: code(name), msg });
    if (++this.warned <= MAX_WARNING_RECORDS) this.status.write(name, msg, { step: this.lastStep });
  }

  flushWarningCount(): void {
    if (this.warned > MAX_WARNING_RECORDS) {
      this.status.write("STEP", `${this.warned - MAX_WARNING_RECORDS} more warnings not recorded one by one (${this.warned} in all)`, { step: this.lastStep });
    }
  }
}

export async function runServer(cfg: ServerConfig, deps: Deps, opts: ServerRunOptions = {}): Promise<RunOutcome> {
  const dir = cfg.backup_dir;
  let steps: Run | undefined;
  let tmpArchive: string | undefined;
  const spec: RunSpec = {
    role: "server", dir, statusName: SERVER_STATUS, clock: deps.clock, hostname: deps.hostname, parent: opts.parent, unusable: "BACKUP_DIR_UNUSABLE",
    failure: (e) => {
      const f = asFailure(e, opts.signal);
      if (tmpArchive) fs.rmSync(tmpArchive, { force: true });
      steps?.flushWarningCount();
      const lastStep = steps?.lastStep ?? "start";
      return { ...f, step: lastStep, outcome: { warnings: steps?.warnings ?? [], lastStep } };
    },
  };
  // sanity of the backup directory comes first: the lock and the status file live there
  const now = deps.clock.now();
  const refused = (name: CodeName, why: string) => plainOutcome(spec, opts.parent?.run ?? newRunId(now), now, now, code(name), why);
  const problem = unusableDir(dir, "backup_dir");
  if (problem) return refused("BACKUP_DIR_UNUSABLE", problem);
  const unsafe = unsafeDir(dir, "backup_dir");
  if (unsafe) return refused("UNSAFE_PERMISSIONS", unsafe);

  return withRun(spec, async (frame) => {
    const run = (steps = new Run(frame.status));
    try {
      if (!opts.parent) {
        const stale = staleLockMessage(frame.lock);
        if (stale) run.step("lock", stale, "STALE_LOCK");
        const left = removeLeftovers(dir);
        if (left.removed.length) run.step("recover", `removed what an earlier run left: ${left.removed.join(", ")}`, "RECOVERED");
      }
      const result = await serverSteps(cfg, deps, run, opts, (p) => (tmpArchive = p));
      tmpArchive = undefined;
      run.flushWarningCount();
      const rec = frame.status.write(result.name, result.message, { step: "done", archive: result.archive, data: result.data });
      return {
        role: "server", host: deps.hostname, run: frame.run, started: frame.started, ended: deps.clock.now(), code: rec.code,
        message: result.message, archive: result.archive, warnings: run.warnings, lastStep: run.lastStep, statusFile: frame.statusFile,
      };
    } finally {
      try {
        fs.rmSync(scanListPath(dir), { force: true });
      } catch {
        // the next run's clean-up removes it
      }
    }
  });
}

function asFailure(e: unknown, signal?: AbortSignal): { name: CodeName; message: string } {
  if (signal?.aborted) return { name: "INTERRUPTED", message: `interrupted (${String(signal.reason ?? "signal")}); the temporary archive was removed` };
  if (e instanceof ShootError) return { name: codeName(e.code) as CodeName, message: e.message };
  return { name: "INTERNAL_ERROR", message: `internal error: ${(e as Error)?.stack ?? String(e)}` };
}

interface StepsResult {
  name: CodeName;
  message: string;
  archive?: ArchiveInfo;
  data?: Record<string, unknown>;
}

async function serverSteps(
  cfg: ServerConfig, deps: Deps, run: Run, opts: ServerRunOptions, setTmp: (p: string) => void,
): Promise<StepsResult> {
  const dir = cfg.backup_dir;
  const checkAbort = () => {
    if (opts.signal?.aborted) throw new ShootError("INTERRUPTED", "interrupted");
  };

  // 1. sanity: sources
  run.step("sanity", `checking ${cfg.sources.length} source(s) and ${dir}`);
  checkSources(cfg.sources);

  // 2. first run: no earlier archive and no status file from an earlier run
  const archives = sortArchives(fs.readdirSync(dir), cfg.name).filter((a) => exists(path.join(dir, a + CHECKSUM_SUFFIX)));
  const newest = archives.at(-1);
  const firstRun = newest === undefined && !exists(path.join(dir, `${SERVER_STATUS}.1`));
  // a restore point whose chain is broken is never "still current": a new archive is made
  const point = newest ? restorePoint(cfg, dir, newest, archives) : undefined;
  if (point?.problem) run.warn("CHAIN_BROKEN", `the newest restore point ${newest} cannot be restored: ${point.problem}; making a new archive`);

  // database dumps: run once through a hash when the files are unchanged, again into a new archive
  const dumps = new DumpPlan(cfg.dumps, dir, deps.spawner, childEnv(deps.env), (msg, data) => run.step("dump", msg, "DUMPED", data), opts.signal);

  // 4. (before 3: the estimate needs the scan) change detection
  const change = await detectChange(cfg, run, opts, { newest, firstRun, archives, point }, dumps, checkAbort);
  if ("unchanged" in change) return change.unchanged;
  const { scan, tmpList, previous } = change;

  // incremental or full (docs/incremental.md); with incremental archives on, directories carry their dumpdirs
  const sources = sourcesKey(cfg.sources);
  const plan = planLevel(cfg, dir, archives, deps.clock.now(), sources);
  if (plan.broken) run.warn("CHAIN_BROKEN", `${plan.broken}; making a full archive instead`);
  const records = cfg.incremental !== "off";
  const changes = records ? markWalk(cfg, tmpList, scan, plan) : undefined;
  try {
    if (changes) run.step("changes", `${plan.why}: ${changes.changed} of ${scan.entries} entries to archive, with ${changes.dirs} directory record(s)`);

    // 3. free space
    const content = changes && plan.level > 0 ? { bytes: changes.bytes, entries: changes.archived } : scan;
    const estimate = estimateSize(cfg, content, previous) + (previous?.dumps ?? []).reduce((n, d) => n + (Number.isSafeInteger(d.size) ? d.size : 0), 0);
    run.step("space", `estimated archive size ${formatBytes(estimate)}, reserve ${formatBytes(cfg.reserve)}`);
    ensureSpace(cfg, deps, run, estimate, archives);
    checkAbort();

    // 5. archive
    const name = nextArchiveName(cfg, deps.clock.now(), fs.readdirSync(dir), plan.level);
    const tmp = path.join(dir, `${TEMP_PREFIX}${name}`);
    setTmp(tmp);
    run.step("archive", `writing ${name} (${cfg.compression}) from ${changes ? changes.archived : scan.entries} entries`);
    const entries = changes ? recordedEntries(tmpList, changes) : listedEntries(tmpList);
    const result = await writeArchiveFile(cfg, tmp, entries, content.bytes, run, opts, dumps, deps.clock.now());
    checkAbort();
    return finishArchive(cfg, deps, run, { name, tmp, tmpList, scan, result, firstRun, dumps: dumps.done, plan: records ? { ...plan, sources } : undefined, last: newest });
  } finally {
    changes?.dumpdirs.close();
  }
}

/** The side file of an incremental archive's dumpdirs while the run goes on (a temporary file: a killed run's is cleaned up). */
function dumpdirsPath(dir: string): string {
  return path.join(dir, `${TEMP_PREFIX}dumpdirs`);
}

/** What the archive holds and every directory's dumpdir: against the base's list, or everything for a full archive. */
function markWalk(cfg: ServerConfig, tmpList: string, scan: ScanSummary, plan: LevelPlan): ChangeSet {
  const dir = cfg.backup_dir;
  // the directories the walk could not list (or walk into) are named by its warnings
  const withoutDumpdir = new Set(scan.warnings.map((w) => w.path.replace(/^\/+/, "")));
  const base = plan.base ? openList(path.join(dir, plan.base.file + LIST_SUFFIX)) : undefined;
  const dumpdirs = new DumpdirStore(dumpdirsPath(dir));
  try {
    return markChanges({ walkList: tmpList, entries: scan.entries, base: base?.lines, dumpdirs, withoutDumpdir, rootIsSource: normaliseSources(cfg.sources).includes("/") });
  } catch (e) {
    dumpdirs.close();
    throw new ShootError("SCAN_FAILED", `comparing the walk with ${plan.base?.file ?? "nothing"}'s file list failed: ${errorMessage(e)}`);
  } finally {
    base?.lines.return(undefined);
  }
}

interface Made {
  name: string;
  tmp: string;
  tmpList: string;
  scan: ScanSummary;
  result: ArchiveResult;
  firstRun: boolean;
  dumps: readonly DumpRun[];
  /** With incremental archives on: the level, base and sources the list header records. */
  plan?: LevelPlan & { sources: string[] };
  /**
   * The newest archive before this one: what the places are counted against (in another
   * compression no piece matches, and the count is one place, which is what rsync will find).
   */
  last?: string;
}

/** The archive's checksum and list beside it, the archive under its name, rotation: steps 5 (end) to 7. */
function finishArchive(cfg: ServerConfig, deps: Deps, run: Run, m: Made): StepsResult {
  const { name, tmp, tmpList, scan, result, firstRun } = m;
  const dir = cfg.backup_dir;
  run.step("checksum", `md5 ${result.md5}, ${formatBytes(result.size)}`);
  // when it was made, as retention will place it: in its list, and as its modification time
  const made = deps.clock.now();
  try {
    fs.utimesSync(tmp, made, made);
    writeFileAtomic(dir, name + CHECKSUM_SUFFIX, md5Line(result.md5, name));
    // compressed (state/list-file.ts): a list is written beside every archive, an incremental's too
    const list = compressList(archivedList(name, tmpList, scan, result, made, m.dumps, m.plan));
    writeFileAtomic(dir, name + LIST_SUFFIX, list);
    // the archive takes its final name last: a name that exists always has its checksum beside it
    fs.renameSync(tmp, path.join(dir, name));
    fsyncDir(dir);
    const st = fs.statSync(path.join(dir, name));
    if (st.size !== result.size) throw new Error(`${name} is ${st.size} bytes on disk, ${result.size} were written`);
    if (parseMd5Line(fs.readFileSync(path.join(dir, name + CHECKSUM_SUFFIX), "utf8"), name) !== result.md5) throw new Error(`${name}${CHECKSUM_SUFFIX} does not read back as written`);
  } catch (e) {
    if (errnoCode(e) === "ENOSPC") throw new ShootError("NO_SPACE", `no space left in ${dir} while writing the checksum and file list`);
    throw new ShootError("CHECKSUM_FAILED", `writing the checksum of ${name} failed: ${errorMessage(e)}`);
  }
  const archive: ArchiveInfo = { file: name, size: result.size, md5: result.md5, sha256: result.sha256 };
  const engine = cfg.compression === "none" ? "" : ` (${result.engine})`;
  const proof = `proven restorable: every piece decompressed to its input, the tar stream parsed to its end with all ${result.entries} entries as read, the file read back`;
  const level = m.plan?.level ?? 0;
  const data = m.plan ? chainData(level, m.plan.chain) : undefined;
  const index = result.pieces ? pieceIndex(dir, name, result.pieces, m.last) : {};
  // only a hint for the backup host's delta blocks: said, never a failure
  if (index.problem) run.step("archive", `${index.problem}; delta blocks will follow the scan's count`);
  // what the places were counted against: a backup host that does not hold it matches an older copy
  const places = index.places === undefined ? {} : { places: index.places, placesAgainst: m.last };
  run.step("archive", `${name} complete: ${formatBytes(result.size)} from ${formatBytes(result.inputBytes)}${engine}; ${proof}`, "ARCHIVE_WRITTEN", { file: name, size: result.size, proven: result.proven, entries: result.entries, ...places, ...data });

  // 6. rotation
  run.step("rotate", `keeping what ${describeRules(cfg.retention)} keep`);
  const removed = rotate(dir, cfg, name);
  if (removed.removed.length) run.step("rotate", `removed ${describeRemoved(removed)}`, "ROTATED", { ...removed });
  const left = removeLeftovers(dir);
  for (const f of left.failed) run.warn("CLEANUP_FAILED", `could not remove ${f}`);

  // 7. done
  const summary = `${name}: ${formatBytes(result.size)}, md5 ${result.md5}${run.warnings.length ? `, ${run.warnings.length} warning(s)` : ""}`;
  const kind = level > 0 ? ` (incremental, level ${level}, against ${m.plan!.base!.file})` : "";
  return firstRun
    ? { name: "FIRST_ARCHIVE", message: `first backup made: ${summary}`, archive, data }
    : { name: "NEW_ARCHIVE", message: `new backup made: ${summary}${kind}`, archive, data };
}

/**
 * What the final record says of restore point `newest` when it is still current: its level and
 * chain (for the client, which pulls every link); or why it cannot be restored.
 */
function restorePoint(cfg: ServerConfig, dir: string, newest: string, archives: readonly string[]): { data?: Record<string, unknown>; problem?: string } {
  const level = levelOf(newest) ?? 0;
  if (level === 0) return { data: cfg.incremental === "off" ? undefined : chainData(0, []) };
  const checked = checkChain(dir, newest, archives);
  if ("problem" in checked) return { problem: checked.problem };
  return { data: chainData(level, checked.links.slice(0, -1).map((l) => l.info)) };
}

/** Every source is there and can be read: otherwise the run fails before it walks anything. */
function checkSources(sources: readonly string[]): void {
  for (const src of sources) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(src);
    } catch (e) {
      if (errnoCode(e) === "ENOENT") throw new ShootError("SOURCE_MISSING", `source ${src} does not exist`);
      throw new ShootError("SOURCE_UNREADABLE", `source ${src} cannot be read: ${errorMessage(e)}`);
    }
    try {
      fs.accessSync(src, fs.constants.R_OK | (st.isDirectory() ? fs.constants.X_OK : 0));
    } catch (e) {
      throw new ShootError("SOURCE_UNREADABLE", `source ${src} cannot be read: ${errnoCode(e) ?? errorMessage(e)}`);
    }
  }
}

type Change = { unchanged: StepsResult } | { scan: ScanSummary; tmpList: string; previous?: ListHeader };

/** What the backup directory holds when the run begins: the archives, the newest and whether it is a restore point that restores. */
interface HeldState {
  newest: string | undefined;
  firstRun: boolean;
  archives: readonly string[];
  point?: { data?: Record<string, unknown>; problem?: string };
}

/**
 * Has anything changed since `newest`? First the quick check on every core, which reads no
 * file list into memory; when it cannot answer, the walk that writes the new list to a file
 * and compares it with the last one as it goes. The answer is the run's end (nothing changed),
 * or the walk the archive is made from.
 */
async function detectChange(
  cfg: ServerConfig, run: Run, opts: ServerRunOptions, held: HeldState, dumps: DumpPlan, checkAbort: () => void,
): Promise<Change> {
  const { newest, firstRun, archives, point } = held;
  const dir = cfg.backup_dir;
  run.step("scan", `walking ${cfg.sources.join(", ")}`);
  const tmpList = scanListPath(dir);
  const scanStarted = performance.now();
  const scanned = (entries: number, bytes: number, what: string, changed?: number, places?: number) =>
    run.step("scan", `scanned ${entries} entries${what}`, "SCANNED", { entries, bytes, changed, places });
  const unchangedSince = (archive: ArchiveInfo): Change => ({
    unchanged: { name: "UNCHANGED", message: `nothing changed since ${newest}; it is still current`, archive, data: point?.data },
  });
  // an archive in another compression is never "still current", and its size predicts nothing
  const sameCompression = newest !== undefined && compressionOf(newest) === cfg.compression;
  if (!firstRun && newest && sameCompression && !point?.problem) {
    const hold = opts.parallelHoldBytes ?? HOLD_BYTES;
    const quick = await unchangedOnEveryCore(cfg, dir, newest, hold);
    const dumpsSame = quick.unchanged ? await dumps.unchanged(quick.unchanged.check.header?.dumps) : undefined;
    if (quick.unchanged && dumpsSame?.same) {
      const { check, archive } = quick.unchanged;
      for (const w of check.warnings) run.warn(w.code, w.message);
      const scanMs = Math.round(performance.now() - scanStarted);
      scanned(check.entries, check.bytes, ` in ${scanMs} ms (${check.threads} thread${check.threads === 1 ? "" : "s"}${check.statx ? ", statx" : ""}): nothing changed since ${newest}`);
      return unchangedSince(archive);
    }
    // not an error (the walk below decides alone), but slower: the record says why
    if (dumpsSame && !dumpsSame.same) run.step("scan", `no file changed since ${newest}, but ${dumpsSame.summary}: walking again to write a new archive`);
    else if (quick.problem) run.step("scan", `the walk on every core could not finish (${quick.problem}): walking again on one`);
    else if (quick.ahead) run.step("scan", `the walk on every core got more than ${formatBytes(hold)} of lines ahead of its comparison: walking again on one thread, which compares as it goes`);
    checkAbort();
  }
  // the walk's list goes to a file as it is made, and the archive is written from that file:
  // memory does not grow with the number of files
  const last = !firstRun && newest ? openLastList(cfg, dir, newest, sameCompression) : undefined;
  const walked = scanToList(cfg, tmpList, last, dumps.names());
  if (walked.taken) {
    throw new ShootError("DUMP_NAME_TAKEN", `the sources hold /${walked.taken}, the name a dump takes in the archive: ` +
      "rename the dump (name or extension in [[server.dump]]) or exclude the file");
  }
  const scan = walked.scan;
  for (const w of scan.warnings) run.warn(w.code, w.message);
  const scanMs = Math.round(performance.now() - scanStarted);
  checkAbort();

  if (last && newest) {
    const verdict = verdictOf(dir, newest, last, walked);
    const dumpsSame = verdict.archive ? await dumps.unchanged(last.header?.dumps) : undefined;
    if (verdict.archive && !dumpsSame?.same) verdict.summary = `no file changed, but ${dumpsSame?.summary}`;
    else if (verdict.archive && point?.problem) verdict.summary = `no file changed, but the restore point ${newest} cannot be restored`;
    else if (verdict.archive) {
      scanned(scan.entries, scan.bytes, ` in ${scanMs} ms: nothing changed since ${newest}`);
      return unchangedSince(verdict.archive);
    }
    // how many places changed since the last archive: the backup host sizes its delta blocks
    // by it (rsync.ts, deltaBlockSize)
    const ch = walked.changes;
    const changed = ch && hasChanges(ch) ? ch.added + ch.changed + ch.removed : undefined;
    scanned(scan.entries, scan.bytes, ` in ${scanMs} ms: ${verdict.summary}`, changed, changed === undefined ? undefined : Math.max(1, ch!.places));
  } else {
    scanned(scan.entries, scan.bytes, ` (${formatBytes(scan.bytes)}) in ${scanMs} ms${firstRun ? "; first run" : ""}`);
  }
  const sameKind = archives.filter((a) => compressionOf(a) === cfg.compression);
  return { scan, tmpList, previous: sameCompression ? sizeRatioSource(dir, sameKind, last?.header) : undefined };
}


/**
 * The common cron run: nothing changed. Answered by the parallel walk (scan-parallel.ts)
 * only when the answer is a clear "unchanged, and the archive is whole"; otherwise the
 * ordinary scan decides and says why, and `problem` tells why the parallel walk could not.
 */
async function unchangedOnEveryCore(cfg: ServerConfig, dir: string, newest: string, holdBytes: number): Promise<{ unchanged?: { check: QuickCheck; archive: ArchiveInfo }; problem?: string; ahead?: boolean }> {
  let check: QuickCheck;
  try {
    check = await quickCompare(cfg.sources, { excludes: cfg.exclude, skip: [dir], oneFileSystem: cfg.one_file_system }, path.join(dir, newest + LIST_SUFFIX), undefined, holdBytes);
  } catch (e) {
    return { problem: errorMessage(e) };
  }
  if (check.failure !== undefined) return { problem: check.failure };
  if (check.ahead) return { ahead: true };
  const archive = check.same && check.header ? archiveOfList(dir, newest, check.header) : undefined;
  return archive ? { unchanged: { check, archive } } : {};
}

/** The archive a file list describes, if the file is still there at the size recorded: "unchanged" must never point at a broken file. */
function archiveOfList(dir: string, file: string, h: ListHeader): ArchiveInfo | undefined {
  if (!h.md5 || h.size === undefined || sizeOf(path.join(dir, file)) !== h.size) return undefined;
  return { file, size: h.size, md5: h.md5, sha256: h.sha256 };
}

/**
 * The last archive's file list: open, after its header, for a comparison in one pass; or why
 * the walk cannot be compared with it (a new archive is made in any case), with its header
 * when it could be read.
 */
type LastList = { reason: string; header?: ListHeader } | { reason?: undefined; header: ListHeader; lines: Generator<string> };

function openLastList(cfg: ServerConfig, dir: string, newest: string, sameCompression: boolean): LastList {
  let list: ReturnType<typeof openList>;
  try {
    list = openList(path.join(dir, newest + LIST_SUFFIX));
  } catch (e) {
    return { reason: `no usable file list for ${newest} (${errorMessage(e)}): making a new archive` };
  }
  if (sameCompression) return list;
  list.lines.return(undefined);
  return { header: list.header, reason: `compression changed to ${cfg.compression}: making a new archive` };
}

interface Walked {
  scan: ScanSummary;
  /** What differs from the last list; undefined when there was none, or it could not be read to its end. */
  changes?: Changes;
  /** Why the comparison stopped part-way (a damaged list): the walk itself went on. */
  compareProblem?: string;
  /** A walked name that a dump takes in the archive. */
  taken?: string;
}

/** Walk the sources, each entry's line to `file` and, when there is a last list, into the comparison. */
function scanToList(cfg: ServerConfig, file: string, last?: LastList, taken: ReadonlySet<string> = new Set()): Walked {
  const lines = last?.reason === undefined ? last?.lines : undefined;
  let comparer = lines ? new ListComparer(lines) : undefined;
  let compareProblem: string | undefined;
  let out: LineWriter | undefined;
  try {
    fs.rmSync(file, { force: true }); // a killed run's
    const writer = (out = new LineWriter(file));
    let seen = 0;
    let clash: string | undefined;
    const scan = scanSources(cfg.sources, { matcher: compileExcludes(cfg.exclude), skip: [cfg.backup_dir], oneFileSystem: cfg.one_file_system }, (e) => {
      if (taken.size && taken.has(e.name)) clash ??= e.name;
      const line = entryLine(e);
      writer.line(line);
      // the walk's garbage (a stat result, an entry and a line per file) is collected late
      // unless asked: measured on 100k files, a run peaked at 114 MiB without this, 88 MiB with
      // it, for about 2 % of the run's time
      if (++seen % GC_EVERY_ENTRIES === 0) Bun.gc(true);
      if (!comparer) return;
      try {
        comparer.next(e.name, e.nameJson, line);
      } catch (err) {
        compareProblem = errorMessage(err);
        comparer = undefined;
      }
    });
    writer.close();
    // and once more at the end, so that the archive's buffers reuse what the walk left
    Bun.gc(true);
    let changes: Changes | undefined;
    try {
      changes = comparer?.finish();
    } catch (err) {
      compareProblem = errorMessage(err);
    }
    return { scan, changes, compareProblem, taken: clash };
  } catch (e) {
    const c = errnoCode(e);
    if (c === "ENOSPC" || c === "EDQUOT") throw new ShootError("NO_SPACE", `no space left in ${cfg.backup_dir} for the list of the walk; earlier archives are untouched`);
    throw new ShootError("SCAN_FAILED", `walking the sources failed: ${errorMessage(e)}`);
  } finally {
    try {
      out?.close(); // a second close does nothing
    } catch {
      // already failing: the first error is the one to report
    }
    lines?.return(undefined);
  }
}

/** Unchanged (with the archive that is still current), or a summary of why a new archive is due. */
function verdictOf(dir: string, newest: string, last: LastList, walked: Walked): { archive?: ArchiveInfo; summary: string } {
  if (last.reason !== undefined) return { summary: last.reason };
  const ch = walked.changes;
  if (!ch) return { summary: `the file list of ${newest} could not be read to its end (${walked.compareProblem}): making a new archive` };
  if (hasChanges(ch)) return { summary: `${ch.added} new, ${ch.changed} changed, ${ch.removed} deleted (${ch.examples.slice(0, 5).join(", ")})` };
  if (last.header.entries !== walked.scan.entries) {
    return { summary: `the file list of ${newest} holds ${walked.scan.entries} entries, its header says ${last.header.entries} (truncated?): making a new archive` };
  }
  const archive = archiveOfList(dir, newest, last.header);
  return archive ? { archive, summary: "unchanged" } : { summary: `${newest} is not the size its file list records: making a new archive` };
}

/**
 * The file list of the new archive: the walk's lines less the entries the archive does not
 * hold whole (vanished, unreadable, changed while read). The list must describe the archive,
 * and an entry missing from it counts as new next time, so the next run tries it again
 * instead of calling the tree unchanged.
 */
function* archivedList(archive: string, walkList: string, scan: ScanSummary, result: ArchiveResult, made: Date, dumps: readonly DumpRun[], plan?: LevelPlan & { sources: string[] }): Generator<string | Uint8Array> {
  const left = new Set(result.skipped.map((n) => JSON.stringify(n)));
  const header: ListHeader = {
    format: LIST_FORMAT, v: LIST_VERSION, archive, entries: scan.entries - left.size, bytes: scan.bytes, size: result.size, md5: result.md5, sha256: result.sha256, made: made.toISOString(),
    ...(dumps.length ? { dumps: dumps.map((d) => ({ name: d.entry, size: d.size, sha256: d.sha256 })) } : {}),
    ...(plan ? { level: plan.level, ...(plan.base ? { base: plan.base.file } : {}), sources: plan.sources } : {}),
  };
  yield `${JSON.stringify(header)}\n`;
  // the common case, nothing left out, copies bytes: no string per line to collect afterwards
  if (left.size === 0) yield* readChunks(walkList);
  else for (const line of readLines(walkList)) if (line !== "" && !left.has(lineKey(line) ?? "")) yield `${line}\n`;
}

/**
 * The list header whose archive predicts how well this tree compresses: the last archive's,
 * unless it is an incremental one, which holds a small part of what its header counts; then
 * the newest full archive's.
 */
function sizeRatioSource(dir: string, archives: readonly string[], header: ListHeader | undefined): ListHeader | undefined {
  if (!header?.level) return header;
  const full = archives.findLast((a) => levelOf(a) === 0);
  try {
    return full ? listHeaderOf(path.join(dir, full + LIST_SUFFIX)) : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes of tar stream for this much content in this many entries (an upper bound). */
function tarSize(bytes: number, entries: number): number {
  // per entry a header block, a pax header with its record (a sub-second mtime needs one, so
  // almost every file has it) and padding to the next block: 100,201 small files measured
  // 2,158 bytes an entry with their content, about 1.75 KiB of it overhead
  return bytes + entries * 2048 + 10240;
}

/**
 * Size the archive will take: the tar stream, scaled by how well the last archive of the
 * same compression compressed its own tar stream; without one, the tar stream itself.
 */
export function estimateSize(cfg: Pick<ServerConfig, "compression">, scan: Pick<ScanSummary, "bytes" | "entries">, previous?: Pick<ListHeader, "bytes" | "entries" | "size">): number {
  const raw = tarSize(scan.bytes, scan.entries);
  if (cfg.compression !== "none" && previous?.size) {
    const ratio = Math.min(1, previous.size / tarSize(previous.bytes, previous.entries));
    return Math.ceil(raw * ratio * 1.1) + 1024 * 1024;
  }
  return raw;
}

function ensureSpace(cfg: ServerConfig, deps: Deps, run: Run, estimate: number, archivesOldestFirst: string[]): void {
  const dir = cfg.backup_dir;
  let free = deps.disk.freeBytes(dir);
  if (free - estimate >= cfg.reserve) return;
  if (cfg.make_room) {
    // never the newest, nor an archive it needs: it is the only good backup until the new one
    // is complete (and an incremental one is made against its chain)
    const newest = archivesOldestFirst.at(-1);
    const needed = new Set(newest ? archivesNeeded(newest, archivesOldestFirst) : []);
    for (const old of archivesOldestFirst.filter((a) => !needed.has(a))) {
      removeArchive(dir, old);
      run.step("space", `make_room: removed ${old} to make room`, "ROTATED");
      free = deps.disk.freeBytes(dir);
      if (free - estimate >= cfg.reserve) return;
    }
  }
  throw new ShootError("NO_SPACE", `not enough free space in ${dir}: ${formatBytes(free)} free, the archive needs about ${formatBytes(estimate)} and ${formatBytes(cfg.reserve)} must stay free (reserve); nothing was deleted${cfg.make_room ? " beyond what make_room allows" : " (make_room = false)"}`);
}

/**
 * Write the archive into `tmp` and prove it restorable (archive/pieces.ts) before anything is
 * named after it: a proof that fails is ARCHIVE_UNPROVEN, the file is removed, and the
 * previous archive stays the newest.
 */
async function writeArchiveFile(
  cfg: ServerConfig, tmp: string, entries: Iterable<ArchiveEntry>, totalBytes: number, run: Run, opts: ServerRunOptions, dumps: DumpPlan, when: Date,
): Promise<ArchiveResult> {
  const { signal, onArchiveProgress: onProgress } = opts;
  let fd: number;
  try {
    fd = createExclusive(tmp, 0o600, true);
  } catch (e) {
    throw new ShootError("ARCHIVE_FAILED", `cannot create ${tmp}: ${errorMessage(e)}`);
  }
  try {
    const result = await writeArchive(entries, fd, {
      compression: cfg.compression,
      level: cfg.level,
      flushBehind: true,
      signal,
      onWarning: (w) => run.warn(w.code, w.message),
      onProgress: onProgress ? (p) => onProgress(p.inputBytes, totalBytes) : undefined,
      onWritten: opts.onArchiveWritten,
      streams: dumps.count ? await dumps.streams(when) : undefined,
    });
    fs.fsyncSync(fd);
    return result;
  } catch (e) {
    dumps.stop();
    fs.rmSync(tmp, { force: true });
    if (signal?.aborted) throw new ShootError("INTERRUPTED", "interrupted while writing the archive; the temporary archive was removed");
    if (e instanceof ArchiveUnprovenError) {
      throw new ShootError("ARCHIVE_UNPROVEN", `the archive just written does not prove restorable, so it was removed and the previous archive stays the newest: ${e.message}`);
    }
    if (errnoCode(e) === "ENOSPC" || errnoCode(e) === "EDQUOT") {
      throw new ShootError("NO_SPACE", `the file system of ${cfg.backup_dir} filled up while the archive was written; the partial archive was removed, earlier archives are untouched`);
    }
    // a dump that failed keeps its own code: the archive it went into is gone, the previous one stays the newest
    if (e instanceof ShootError) throw new ShootError(codeName(e.code) as CodeName, `${e.message}; the archive was not kept, the previous one stays the newest`);
    throw new ShootError("ARCHIVE_FAILED", `writing the archive failed: ${errorMessage(e)}`);
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // closed already
    }
  }
}

/** The entries of the walk's list, read back one at a time. */
function* listedEntries(walkList: string): Generator<ArchiveEntry> {
  const owners = systemOwners();
  for (const line of readLines(walkList)) if (line !== "") yield entryFromLine(line, owners);
}

/**
 * The next archive name: now, but a second after the newest at the earliest, so that names
 * sort by age as plain text (a run within the same second as the last one takes the next
 * second) and a clock set back never makes rotation remove the new archive.
 */
export function nextArchiveName(cfg: Pick<ServerConfig, "name" | "compression">, now: Date, existing: readonly string[], level = 0): string {
  const names = new Set(existing);
  const newest = sortArchives(existing, cfg.name).at(-1);
  const newestKey = newest ? parseArchiveName(newest)!.key : "";
  let t = Math.floor(now.getTime() / 1000) * 1000;
  if (newest) t = Math.max(t, archiveTime(newest)!.getTime() + 1000);
  for (let tries = 0; tries < 10000; tries++, t += 1000) {
    const c = archiveName(cfg.name, new Date(t), cfg.compression, level);
    if (parseArchiveName(c)!.key > newestKey && !names.has(c) && !names.has(`${TEMP_PREFIX}${c}`)) return c;
  }
  throw new ShootError("ARCHIVE_FAILED", "no free archive name");
}

interface PieceCount {
  places?: number;
  problem?: string;
}

/**
 * Keeps the piece index beside the new archive and counts the places where it differs from
 * `last` (archive/piece-index.ts), which the backup host sizes its delta blocks by. Only a
 * hint, so a failure costs no archive: it is said (`problem`, every cause met) and the scan's
 * count is used.
 */
function pieceIndex(dir: string, name: string, pieces: BigUint64Array, last?: string): PieceCount {
  const problems: string[] = [];
  try {
    writeFileAtomic(dir, name + PIECES_SUFFIX, encodePieceIndex(pieces));
  } catch (e) {
    problems.push(`the piece index ${name}${PIECES_SUFFIX} could not be written: ${errorMessage(e)}`);
  }
  const before = last ? readPieceIndex(dir, last + PIECES_SUFFIX, problems) : undefined;
  return { places: before ? changedRuns(before, pieces) : undefined, problem: problems.join("; ") || undefined };
}

/** The last archive's piece index, or undefined with the reason added to `problems`. */
function readPieceIndex(dir: string, file: string, problems: string[]): BigUint64Array | undefined {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(path.join(dir, file));
  } catch (e) {
    // a last archive made before indexes were kept has none: no problem
    if (errnoCode(e) !== "ENOENT") problems.push(`${file} could not be read: ${errorMessage(e)}`);
    return undefined;
  }
  const before = decodePieceIndex(bytes);
  if (!before) problems.push(`${file} is not a piece index`);
  return before;
}

function removeArchive(dir: string, name: string): void {
  // the archive goes first: a checksum without its archive is a leftover the next run removes
  fs.rmSync(path.join(dir, name), { force: true });
  fs.rmSync(path.join(dir, name + CHECKSUM_SUFFIX), { force: true });
  fs.rmSync(path.join(dir, name + LIST_SUFFIX), { force: true });
  fs.rmSync(path.join(dir, name + PIECES_SUFFIX), { force: true });
}

/** Remove what the retention rules do not keep (never the archive just made); what went, and why. */
function rotate(dir: string, cfg: ServerConfig, justMade: string): PruneRecord {
  const { record } = planRemoval(serverCopies(dir, cfg.name), cfg.retention);
  record.removed = record.removed.filter((r) => r.file !== justMade);
  try {
    for (const r of record.removed) removeArchive(dir, r.file);
  } catch (e) {
    throw new ShootError("ROTATION_FAILED", `removing old archives failed: ${errorMessage(e)}`);
  }
  return record;
}
