/**
 * What this host holds and whether it is still good. `heldArchives` finds the archives of
 * either role (the server's backup_dir, the client's dest_dir/<source>/); `verifyArchive`
 * hashes one against its .md5 file and the file list the server recorded, and with `deep`
 * also decompresses it and reads every entry, comparing names, types and sizes with that
 * list: a restore drill that leaves nothing behind and says how long reading it all took.
 *
 * One streaming pass does it all (hash → decompress → tar headers, read.ts), so a deep check
 * reads the file once; restore.ts uses the same pass before it writes anything. An archive
 * that cannot be read whole is reported with the byte where it went wrong, and the archives
 * after it are checked all the same.
 */
import fs from "node:fs";
import path from "node:path";
import { loadConfig, resolveConfigPath, type Config } from "../common/config.ts";
import { code, isFinal, type CodeName } from "../common/codes.ts";
import { SERVER_STATUS, readStatusFile, type StatusRecord } from "../state/status.ts";
import { ShootError, errnoCode, errorMessage } from "../common/errors.ts";
import { CHECKSUM_SUFFIX, LIST_SUFFIX, archiveTime, parseMd5Line, sortArchives } from "../state/naming.ts";
import { readDirOrEmpty } from "../state/fsutil.ts";
import type { Progress } from "../report/progress.ts";
import { lineKey, listHeaderOf, nameOfKey, openList, walkOrder, type ListHeader } from "../scan/scan.ts";
import type { TarListing } from "../archive/tar.ts";
import { DumpdirCheck } from "../archive/incremental.ts";
import type { Digests } from "./pass-digests.ts";
import { ArchiveDamage, archivePass, closeSource, openSource, type ArchiveSource, type PassOptions, type PassResult } from "./read.ts";
import { formatBytes, formatDuration } from "../common/units.ts";

// --- what is held ---------------------------------------------------------------------------

/** The state of an archive's .md5 file, as far as it can be told without hashing. */
export type ChecksumFileState = "ok" | "missing" | "bad" | "size-mismatch";

export interface HeldArchive {
  /** "file": an archive named by its path, held by neither role. */
  role: "server" | "client" | "file";
  /** The server's name, the client's source name, or "" for a file named by its path. */
  owner: string;
  dir: string;
  file: string;
  path: string;
  /** Bytes on disk. */
  bytes: number;
  /** When the server made it (from its name, UTC). */
  made?: Date;
  /** The checksum its .md5 file gives, when the file is one md5sum line for it. */
  md5?: string;
  checksumFile: ChecksumFileState;
  /** The header of the file list beside it (the server's; copies on a client have none). */
  list?: ListHeader;
  /** Why the list beside it gives no header (damaged, not a list of this version); absent when there is no list. */
  listProblem?: string;
  /** Read from elsewhere than `path` (an object in an offsite store): a fresh stream for each pass. */
  open?: () => Promise<NodeJS.ReadableStream>;
}

/** The header of a file list, or why the list beside the archive cannot serve; neither when there is none. */
function readListHeader(file: string): { header?: ListHeader; problem?: string } {
  try {
    return { header: listHeaderOf(file) };
  } catch (e) {
    return errnoCode(e) === "ENOENT" ? {} : { problem: errorMessage(e) };
  }
}

/** Describe one archive file on disk (cheap: stat and the small files beside it). */
export function describeArchive(file: string, role: HeldArchive["role"], owner: string): HeldArchive | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return undefined;
  }
  if (!st.isFile()) return undefined;
  const name = path.basename(file);
  let md5: string | undefined;
  let checksumFile: ChecksumFileState = "missing";
  try {
    const text = fs.readFileSync(`${file}${CHECKSUM_SUFFIX}`, "utf8");
    md5 = parseMd5Line(text.length < 4096 ? text : "", name);
    checksumFile = md5 ? "ok" : "bad";
  } catch {
    checksumFile = "missing";
  }
  const { header: list, problem: listProblem } = readListHeader(`${file}${LIST_SUFFIX}`);
  if (checksumFile === "ok" && list?.size !== undefined && list.size !== st.size) checksumFile = "size-mismatch";
  const held: HeldArchive = { role, owner, dir: path.dirname(file), file: name, path: file, bytes: st.size, made: archiveTime(name), md5, checksumFile, list };
  return listProblem ? { ...held, listProblem } : held;
}

/** Every archive this host holds, server's first, each directory oldest first. */
export function heldArchives(cfg: Config): HeldArchive[] {
  const out: HeldArchive[] = [];
  const add = (dir: string, role: HeldArchive["role"], owner: string) => {
    for (const f of sortArchives(readDirOrEmpty(dir))) {
      const h = describeArchive(path.join(dir, f), role, owner);
      if (h) out.push(h);
    }
  };
  if (cfg.server) add(cfg.server.backup_dir, "server", cfg.server.name);
  if (cfg.client) for (const s of cfg.client.sources) add(path.join(cfg.client.dest_dir, s.name), "client", s.name);
  return out;
}

/**
 * The configuration for a command about an archive: needed to find one by name, not for a
 * path when no configuration was asked for (restoring on a host without shoot set up).
 */
export function configForArchive(flag: string | undefined, arg: string | undefined, env: Record<string, string | undefined>): Config | undefined {
  const file = resolveConfigPath(flag, env);
  if (arg?.includes("/") && !flag && !env.SHOOT_CONFIG && !fs.existsSync(file)) return undefined;
  return loadConfig(file);
}

/**
 * The archive a command line names: a path (anything with a "/"), else a name held here
 * (the newest copy when several directories hold it), else a file of that name here.
 */
export function resolveArchive(cfg: Config | undefined, arg: string): HeldArchive {
  if (arg === "") throw new ShootError("ARCHIVE_NOT_FOUND", "no archive named");
  const held = cfg ? heldArchives(cfg) : [];
  if (!arg.includes("/")) {
    const matches = held.filter((h) => h.file === arg);
    if (matches.length > 0) return matches.at(-1)!;
  }
  const byPath = describeArchive(path.resolve(arg), "file", "");
  if (byPath) {
    const same = held.find((h) => h.path === byPath.path);
    return same ?? byPath;
  }
  const names = held.map((h) => h.file);
  const hint = names.length > 0 ? `; held here: ${names.slice(-5).join(", ")}${names.length > 5 ? ` and ${names.length - 5} more (shoot list)` : ""}` : cfg ? "; this host holds no archives" : "";
  throw new ShootError("ARCHIVE_NOT_FOUND", `archive ${JSON.stringify(arg)} is neither held here nor a readable file${hint}`);
}

// --- verifying one archive ----------------------------------------------------------------

export interface VerifyOptions extends Pick<PassOptions, "progress" | "signal" | "hashed" | "pieceBytes" | "worker"> {
  deep?: boolean;
  /**
   * The files the run that made the archive warned about (see warnedPathsIn); by default they
   * are read from the status files beside the archive.
   */
  warned?: ReadonlySet<string>;
}

export interface ArchiveVerdict {
  archive: HeldArchive;
  ok: boolean;
  /** 0, or the code that says what is wrong: VERIFY_FAILED, ARCHIVE_DAMAGED, ARCHIVE_UNSUPPORTED. */
  code: number;
  /** What is wrong; empty when ok. */
  problems: string[];
  /** What is worth knowing but not wrong. */
  notes: string[];
  md5?: string;
  sha256?: string;
  /** Deep only: entries read, and how long reading and decompressing all of it took. */
  entries?: number;
  tarBytes?: number;
  readMs?: number;
  /** The file disappeared while being checked (rotation removed it): neither good nor bad. */
  gone?: boolean;
}

/** How many differences of one kind, and the first few names. */
class Found {
  count = 0;
  readonly names: string[] = [];
  add(name: string): void {
    if (this.count++ < EXAMPLES) this.names.push(name);
  }
}

const EXAMPLES = 3;

/**
 * Compare what the archive holds with the server's file list as both stream by. The writer
 * archives the list's entries in the list's order, so this is a merge, as the unchanged check
 * does: neither is held whole, and memory stays flat however many files there are. A listed
 * entry the archive has passed without holding is missing from it; an entry the list has
 * passed is not in the list. A difference the run that made the archive warned about (a file
 * vanished or changed while read) is counted apart: it is not damage. An archive whose entries
 * go back in that order was not written as the list says (rebuilt by another program, or
 * pieced together): that is a finding of its own, and the comparison stops there.
 */
export class ListComparison {
  readonly extra = new Found();
  readonly duplicate = new Found();
  readonly typeDiff = new Found();
  readonly sizeDiff = new Found();
  readonly missing = new Found();
  /** Directory records whose dumpdir does not agree with the list (incremental archives). */
  readonly dumpdirDiff = new Found();
  /** Listed entries an incremental archive does not hold because its dumpdirs say they did not change. */
  unchanged = 0;
  /** Differences the run's own warnings explain. */
  explained = 0;
  /** Why the list cannot be read to its end; nothing it was compared with counts. */
  damaged: string | undefined;
  /** Where the archive's entries first go back in the list's order; compared up to there. */
  outOfOrder: string | undefined;
  private key: string | undefined;
  private line: string | undefined;
  private lineNo = 1;
  private listed = 0;
  private lastName: string | undefined;
  private readonly dumpdirs: DumpdirCheck;
  private readonly dumpsSeen = new Set<string>();

  /**
   * @param lines the list's lines after its header
   * @param warned the paths (with their leading "/") the run's warnings name
   */
  constructor(private readonly header: ListHeader, private readonly lines: Iterator<string>, private readonly warned: ReadonlySet<string>) {
    this.dumpdirs = new DumpdirCheck((name) => warned.has(`/${name}`));
    this.advance();
  }

  add(e: TarListing): void {
    if (this.damaged !== undefined || this.outOfOrder !== undefined) return;
    // database dumps follow the files; the list's header names them, its lines do not
    const dump = this.header.dumps?.find((d) => d.name === e.name);
    if (dump) {
      this.dumpsSeen.add(e.name);
      if (e.type !== "file" || e.size !== dump.size) this.sizeDiff.add(`${e.name} (a dump of ${dump.size} bytes in the list, ${e.type === "file" ? `${e.size} bytes` : `a ${e.type}`} in the archive)`);
      return;
    }
    // the record of "/" when it is a source: it has no line in the list
    if (e.name === "" && e.type === "dir" && this.lastName === undefined) return this.note(this.dumpdirs.directory("", e.dumpdir));
    if (this.lastName !== undefined) {
      const order = walkOrder(this.lastName, e.name);
      if (order === 0) return this.duplicate.add(e.name);
      if (order > 0) {
        this.outOfOrder = `/${e.name} comes after /${this.lastName}`;
        return;
      }
    }
    this.lastName = e.name;
    const key = JSON.stringify(e.name);
    while (this.key !== undefined && this.key !== key && walkOrder(nameOfKey(this.key), e.name) < 0) this.passListed();
    if (this.damaged !== undefined) return;
    if (this.key !== key) return this.extra.add(e.name);
    const [, type, , , , size] = JSON.parse(this.line!) as [string, string, number, number, number, number];
    this.note(this.dumpdirs.listed(e.name, type === "dir", true));
    if (e.type === "dir") this.note(this.dumpdirs.directory(e.name, e.dumpdir));
    // the writer stores a hard link whose first name it could not read as the file itself
    const sameType = type === e.type || (type === "hardlink" && e.type === "file");
    if (!sameType) this.typeDiff.add(`${e.name} (${type} in the list, ${e.type} in the archive)`);
    else if (e.type === "file" && type === "file" && size !== e.size) {
      if (this.warned.has(`/${e.name}`)) this.explained++;
      else this.sizeDiff.add(`${e.name} (${size} → ${e.size} bytes)`);
    }
    this.advance();
  }

  /** The archive has ended: the rest of the list is missing from it. */
  finish(): void {
    if (this.outOfOrder !== undefined) return;
    while (this.key !== undefined) this.passListed();
    this.note(this.dumpdirs.finish());
    for (const d of this.header.dumps ?? []) if (!this.dumpsSeen.has(d.name)) this.missing.add(d.name);
    if (this.damaged === undefined && this.listed !== this.header.entries) {
      this.damaged = `it holds ${this.listed} entries, its header says ${this.header.entries} (truncated?)`;
    }
  }

  /** Stop reading the list (closes it) when the comparison ends early. */
  close(): void {
    this.lines.return?.(undefined);
  }

  /** A problem DumpdirCheck found. */
  private note(problem: string | undefined): void {
    if (problem !== undefined && problem !== "unchanged") this.dumpdirDiff.add(problem);
  }

  private passListed(): void {
    const name = nameOfKey(this.key!);
    const d = this.dumpdirs.listed(name, this.line!.startsWith(`[${this.key},"dir"`), false);
    this.note(d);
    if (d === "unchanged") this.unchanged++;
    else if (this.warned.has(`/${name}`)) this.explained++;
    else this.missing.add(name);
    this.advance();
  }

  private advance(): void {
    this.key = this.line = undefined;
    try {
      for (let r = this.lines.next(); !r.done; r = this.lines.next()) {
        this.lineNo++;
        if (r.value === "") continue;
        const key = lineKey(r.value);
        if (key === undefined) {
          this.damaged = `line ${this.lineNo} is not an entry`;
          return;
        }
        this.listed++;
        this.key = key;
        this.line = r.value;
        return;
      }
    } catch (e) {
      this.damaged = `it cannot be read to its end: ${errorMessage(e)}`;
    }
  }
}

/** Files the run that made this archive warned about (vanished, unreadable, changed while read), from the status files beside it. */
function warnedPaths(a: HeldArchive): Set<string> {
  const records = [SERVER_STATUS, `${SERVER_STATUS}.1`].flatMap((f) => {
    try {
      return readStatusFile(path.join(a.dir, f))?.records ?? [];
    } catch {
      return [];
    }
  });
  return warnedPathsIn(records, a.file);
}

/** Files the run that made archive `file` warned about, from that run's status records. */
export function warnedPathsIn(records: readonly StatusRecord[], file: string): Set<string> {
  const out = new Set<string>();
  const made = records.find((r) => r.archive?.file === file && isFinal(r.code));
  if (!made) return out;
  const warningCodes = new Set([code("FILE_VANISHED"), code("FILE_UNREADABLE"), code("FILE_CHANGED")]);
  for (const r of records) {
    if (r.run !== made.run || !warningCodes.has(r.code)) continue;
    // the message starts with the file's path: "/srv/x/log: changed since the scan (…)"
    const colon = r.msg.indexOf(": ");
    if (colon > 0) out.add(r.msg.slice(0, colon));
  }
  return out;
}

function examples(found: Found): string {
  const shown = found.names.map((x) => `/${x}`).join(", ");
  return found.count > found.names.length ? `${shown}, … (${found.count} in all)` : shown;
}

/** The server's file list beside `a`, opened for reading a line at a time; nothing when there is none. */
function openListOf(a: HeldArchive): ReturnType<typeof openList> | { error: string } | undefined {
  const file = `${a.path}${LIST_SUFFIX}`;
  try {
    return openList(file);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return undefined;
    return { error: errnoCode(e) ? `its file list cannot be read: ${errorMessage(e)}` : `its file list ${path.basename(file)} is damaged: ${errorMessage(e)}` };
  }
}

/**
 * Check the computed digests against the .md5 file and the file list's header (verify takes
 * both digests: an MD5 not taken would count as differing).
 */
function checksumProblems(a: HeldArchive, got: { size: number } & Digests): string[] {
  const problems: string[] = [];
  if (a.checksumFile === "missing") problems.push(`no checksum file ${a.file}${CHECKSUM_SUFFIX} beside it`);
  else if (a.checksumFile === "bad") problems.push(`${a.file}${CHECKSUM_SUFFIX} is not one md5sum line for it`);
  else if (a.md5 !== got.md5) problems.push(`its MD5 is ${got.md5}, ${a.file}${CHECKSUM_SUFFIX} says ${a.md5}`);
  const h = a.list;
  if (h) {
    // the list was written by the server in the same run as the archive: a checksum file
    // rewritten to match a changed archive does not rewrite this
    if (h.size !== undefined && h.size !== got.size) problems.push(`it has ${got.size} bytes, the server's file list recorded ${h.size}`);
    if (h.md5 && h.md5 !== got.md5) problems.push(`its MD5 is ${got.md5}, the server's file list recorded ${h.md5}`);
    else if (h.sha256 && h.sha256 !== got.sha256) problems.push(`its SHA-256 is ${got.sha256}, the server's file list recorded ${h.sha256}`);
  }
  return problems;
}

/**
 * Hash one archive (and with `deep`, read all of it); never throws for a bad archive. Its code:
 * VERIFY_FAILED when it differs from its checksum or file list (an archive that changed since,
 * which may also no longer read), else ARCHIVE_DAMAGED or ARCHIVE_UNSUPPORTED when it cannot
 * be read whole.
 */
export async function verifyArchive(a: HeldArchive, opts: VerifyOptions = {}): Promise<ArchiveVerdict> {
  const verdict: ArchiveVerdict = { archive: a, ok: false, code: code("VERIFY_FAILED"), problems: [], notes: [] };
  let fd: ArchiveSource;
  try {
    fd = openSource(a);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return { ...verdict, ok: true, code: 0, gone: true, notes: ["removed while this check ran (rotation)"] };
    return { ...verdict, problems: [`cannot be opened: ${errorMessage(e)}`] };
  }
  let comparison: ListComparison | undefined;
  try {
    const list = opts.deep ? openListOf(a) : undefined;
    if (list && "error" in list) verdict.problems.push(list.error);
    comparison = list && "header" in list ? new ListComparison(list.header, list.lines, opts.warned ?? warnedPaths(a)) : undefined;
    let entries = 0;
    const onEntry = (e: TarListing) => {
      entries++;
      comparison?.add(e);
    };
    let pass: PassResult;
    try {
      const { progress, signal, hashed, pieceBytes, worker } = opts;
      const deep = opts.deep === true;
      pass = await archivePass(fd, { progress, signal, hashed, pieceBytes, worker, decompress: deep, onEntry: deep ? onEntry : undefined });
    } catch (e) {
      if (!(e instanceof ArchiveDamage)) throw e;
      return damaged(verdict, e, entries);
    } finally {
      opts.progress?.finish();
    }
    verdict.md5 = pass.md5;
    verdict.sha256 = pass.sha256;
    verdict.problems.push(...checksumProblems(a, pass));
    if (opts.deep) {
      verdict.entries = entries;
      verdict.tarBytes = pass.tarBytes;
      verdict.readMs = pass.ms;
      if (comparison) {
        comparison.finish();
        const c = comparison;
        if (c.damaged !== undefined) verdict.problems.push(`its file list ${a.file}${LIST_SUFFIX} is damaged: ${c.damaged}`);
        else {
          if (c.extra.count) verdict.problems.push(`${c.extra.count} entries are not in the server's file list, or not where it puts them: ${examples(c.extra)}`);
          if (c.duplicate.count) verdict.problems.push(`${c.duplicate.count} entries appear twice: ${examples(c.duplicate)}`);
          if (c.typeDiff.count) verdict.problems.push(`${c.typeDiff.count} entries differ in type from the file list: ${examples(c.typeDiff)}`);
          // The list records the scan; a file that vanished or changed size between the scan and
          // its read is archived as found, and the run that made the archive warned about it.
          // A difference no warning explains is damage (or a forgery that rewrote the checksums).
          // entries out of order make the ones passed before it look missing: those are not counted
          if (c.outOfOrder !== undefined) verdict.problems.push(`its entries are not in the order of the server's file list, as they would be had the server written it (${c.outOfOrder}); compared up to there`);
          else if (c.missing.count) verdict.problems.push(`${c.missing.count} listed entries are not in the archive: ${examples(c.missing)}`);
          if (c.sizeDiff.count) verdict.problems.push(`${c.sizeDiff.count} files differ in size from the file list: ${examples(c.sizeDiff)}`);
          if (c.dumpdirDiff.count) verdict.problems.push(`${c.dumpdirDiff.count} directory records disagree with the file list, so GNU tar would restore this point wrong: ${c.dumpdirDiff.names.join("; ")}${c.dumpdirDiff.count > c.dumpdirDiff.names.length ? "; …" : ""}`);
          if (c.unchanged) verdict.notes.push(`${c.unchanged} listed entries are not in this incremental archive: unchanged since ${a.list?.base ?? "its base"}, as its directory records say`);
          if (c.explained) verdict.notes.push(`${c.explained} entries differ from the file list as the run that made it warned (changed or vanished while it was written)`);
          if (!verdict.problems.length) verdict.notes.push(`all ${entries} entries match the server's file list${c.explained ? " or its run's warnings" : ""}`);
        }
      } else if (!list) {
        verdict.notes.push("no file list beside it: entries were read but not compared");
      }
      const rate = pass.ms > 0 ? (pass.tarBytes / pass.ms) * 1000 : 0;
      verdict.notes.push(`restore drill: read and decompressed ${formatBytes(pass.tarBytes)} in ${entries} entries in ${formatDuration(pass.ms)}${rate ? ` (${formatBytes(Math.round(rate))}/s)` : ""}; a full restore takes at least that long`);
    }
    verdict.ok = verdict.problems.length === 0;
    if (verdict.ok) verdict.code = 0;
    return verdict;
  } finally {
    comparison?.close();
    closeSource(fd);
  }
}

/** The verdict on an archive that cannot be read whole: its damage, and whether it still matches its checksum. */
function damaged(verdict: ArchiveVerdict, e: ArchiveDamage, entries: number): ArchiveVerdict {
  const a = verdict.archive;
  const sums = e.digests ? checksumProblems(a, e.digests) : [];
  verdict.md5 = e.digests?.md5;
  verdict.sha256 = e.digests?.sha256;
  verdict.entries = entries;
  verdict.problems.push(`${e.message} (after ${entries} ${entries === 1 ? "entry" : "entries"})`, ...sums);
  const name: CodeName = sums.length > 0 ? "VERIFY_FAILED" : e.kind === "unsupported" ? "ARCHIVE_UNSUPPORTED" : "ARCHIVE_DAMAGED";
  verdict.code = code(name);
  return verdict;
}

// --- verifying everything held ------------------------------------------------------------

export interface VerifyReport {
  verdicts: ArchiveVerdict[];
  /**
   * 0 when every archive checked is good, else the worst verdict's code: ARCHIVE_DAMAGED (one
   * that matches its checksum yet does not read: it was written so), then VERIFY_FAILED, then
   * ARCHIVE_UNSUPPORTED (ARCHIVE_NOT_FOUND when there was nothing to check).
   */
  code: number;
  message: string;
}

export async function runVerify(
  archives: readonly HeldArchive[],
  opts: VerifyOptions & { progressFor?: (a: HeldArchive) => Progress; onVerdict?: (v: ArchiveVerdict) => void } = {},
): Promise<VerifyReport> {
  if (archives.length === 0) return { verdicts: [], code: code("ARCHIVE_NOT_FOUND"), message: "no archives are held here: nothing to verify" };
  const verdicts: ArchiveVerdict[] = [];
  for (const a of archives) {
    if (opts.signal?.aborted) break;
    // one archive at a time: a second thread decompresses while this one hashes
    const v = await verifyArchive(a, { ...opts, worker: true, progress: opts.progressFor?.(a) });
    verdicts.push(v);
    opts.onVerdict?.(v);
  }
  const bad = verdicts.filter((v) => !v.ok);
  const checked = verdicts.filter((v) => !v.gone).length;
  if (bad.length === 0) {
    return { verdicts, code: 0, message: `${checked} archive(s) verified${opts.deep ? " (deep)" : ""}: all good` };
  }
  const worst = (["ARCHIVE_DAMAGED", "VERIFY_FAILED", "ARCHIVE_UNSUPPORTED"] as const).find((n) => bad.some((v) => v.code === code(n))) ?? "VERIFY_FAILED";
  return { verdicts, code: code(worst), message: `${bad.length} of ${checked} archive(s) failed verification: ${bad.map((v) => v.archive.file).join(", ")}` };
}
