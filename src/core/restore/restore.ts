/**
 * Restore an archive, or some paths of it, into a directory. Nothing is written until the
 * archive has been read whole and matched its checksum; nothing that exists is overwritten
 * without `force`; and nothing lands or points outside the target directory, whoever made the
 * archive:
 *
 * - absolute names and names with `..` are refused;
 * - an entry whose path runs through a symbolic link (one from the archive, or one already in
 *   the target directory) is refused;
 * - symbolic links are created last, after every file, and only when their target resolves
 *   inside the target directory (following the archive's other links), unless the caller
 *   allows links that point out;
 * - as a second line of defence, a file is created only where it did not exist (O_EXCL, after
 *   removing what `force` replaces) and never through a link (O_NOFOLLOW), in directories this
 *   restore made or found to be directories.
 *
 * The archive is read three times, each entry in turn: to check it (checksums, a whole tar
 * stream, the paths asked for, and the archive's links), to decide about each entry (one byte
 * per entry is kept), and to write. What is held beyond that byte grows with the archive's
 * links and directories, not with its files, so that a restore of millions of files fits in
 * the memory of a small host. The writing is done here rather than by node-tar's unpacker,
 * which keeps every path it has written (path reservations, a unicode cache): measured, 2.4 GiB
 * and 3 minutes for 400,000 files.
 *
 * File times are set on the open file before it is closed; directory modes and times at the
 * end, deepest first, so that writing the files in them does not undo them.
 */
import fs from "node:fs";
import path from "node:path";
import { code, type CodeName } from "../common/codes.ts";
import { ShootError, errnoCode, errorMessage } from "../common/errors.ts";
import { CHECKSUM_SUFFIX } from "../state/naming.ts";
import type { Progress } from "../report/progress.ts";
import type { TarListing } from "../archive/tar.ts";
import { formatBytes, formatDuration } from "../common/units.ts";
import { ArchiveReadError, archivePass, closeSource, describeReadError, openSource, tarSink, type ArchiveSource, type HeldArchive, type PassResult } from "./verify.ts";
import { fnv1a } from "../common/text.ts";

export interface RestoreOptions {
  /** The target directory; created when missing. */
  to: string;
  /** Archive paths to restore (with or without a leading "/"); all when empty. */
  paths?: readonly string[];
  /** Overwrite files that exist in the target directory. */
  force?: boolean;
  /** false: restore an archive that has no checksum file beside it (one made elsewhere). */
  checksum?: boolean;
  /** Create symbolic links whose target lies outside the target directory (after everything else). */
  allowOutsideLinks?: boolean;
  progressFor?: (label: string, total: number) => Progress;
  signal?: AbortSignal;
  /**
   * One archive of a chain (chain.ts): entries for which this is false are passed over as if
   * the archive did not hold them, and the paths asked for need not be in this archive. Called
   * in archive order, first for every entry in turn, then again for the same ones.
   */
  only?: (ordinal: number, entry: TarListing) => boolean;
}

export interface EntryNote {
  name: string;
  why: string;
}

export interface RestoreResult {
  code: number;
  message: string;
  archive: string;
  to: string;
  /** Entries written: files, directories, links. */
  restored: number;
  /** Bytes of file content written. */
  bytes: number;
  /** Entries refused because they would land or point outside the target. */
  refused: EntryNote[];
  /** Entries left out for other reasons (types a tar restore does not make, hard links to nothing). */
  skipped: EntryNote[];
  /** Files that exist and would have been overwritten (nothing was restored). */
  conflicts: EntryNote[];
  /** Entries that could not be written. */
  failed: EntryNote[];
  /** Hard-link targets restored because a selected path links to them. */
  alsoRestored: string[];
  ms: number;
}


/** What the plan decides for each entry: one byte per entry, in archive order. */
const RESTORE = 0;
const UNSELECTED = 1;
const REFUSED = 2;
const SKIPPED = 3;
const CONFLICT = 4;

/** Components of an archive name, or why it may not be restored. */
export function splitEntryName(raw: string): { parts: string[] } | { why: string } {
  if (raw.startsWith("/")) return { why: "absolute path" };
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return { why: "path with '..'" };
  return { parts };
}

/** A path as a person writes it (`/etc/hosts`, `etc/hosts/`) in archive form. */
export function selectionKey(p: string): string {
  const parts = p.split("/").filter((x) => x !== "" && x !== ".");
  if (parts.includes("..")) throw new ShootError("USAGE", `path ${JSON.stringify(p)} contains '..': name paths as the archive lists them (shoot list ARCHIVE)`);
  if (parts.length === 0) throw new ShootError("USAGE", `path ${JSON.stringify(p)} names nothing`);
  return parts.join("/");
}

type DiskKind = "none" | "dir" | "file" | "symlink" | "other" | "blocked";
type DiskEntry = { kind: DiskKind; target?: string };
const NOTHING: DiskEntry = { kind: "none" };

/**
 * What is on disk below the target before anything is written, as the plan sees it. Only what
 * is found at directories' paths is kept (the plan looks at the same parents again and again),
 * not what is found at every file's; and below a path that does not exist nothing does, so a
 * restore into an empty directory looks at its top names alone.
 */
class DiskView {
  private cache = new Map<string, DiskEntry>();
  constructor(private readonly root: string) {}

  /** @param leaf a file's or link's own path: looked at, not kept */
  at(key: string, leaf = false): DiskEntry {
    const hit = this.cache.get(key);
    if (hit) return hit;
    for (let i = key.indexOf("/"); i > 0; i = key.indexOf("/", i + 1)) {
      if (this.cache.get(key.slice(0, i))?.kind === "none") return NOTHING;
    }
    let found: DiskEntry;
    const abs = key === "" ? this.root : path.join(this.root, key);
    try {
      const st = fs.lstatSync(abs);
      if (st.isSymbolicLink()) found = { kind: "symlink", target: fs.readlinkSync(abs) };
      else found = { kind: st.isDirectory() ? "dir" : st.isFile() ? "file" : "other" };
    } catch (e) {
      found = { kind: errnoCode(e) === "ENOTDIR" ? "blocked" : "none" };
    }
    if (!leaf) this.cache.set(key, found);
    return found;
  }
}

/** The longest chain of links followed before a target counts as a loop (as the kernel's ELOOP). */
const MAX_LINK_HOPS = 40;

/**
 * Does a link at `linkParts` with `target` resolve inside the root? Followed component by
 * component, through the archive's own links and those already on disk, because `..` after
 * a link climbs from where the link points, not from where it stands.
 */
export function linkStaysInside(linkParts: readonly string[], target: string, rootIsSlash: boolean, linkAt: (key: string) => string | undefined): boolean {
  if (rootIsSlash) return true;
  if (target.startsWith("/")) return false;
  const stack = linkParts.slice(0, -1);
  const queue = target.split("/");
  let hops = 0;
  while (queue.length > 0) {
    const c = queue.shift()!;
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (stack.length === 0) return false;
      stack.pop();
      continue;
    }
    stack.push(c);
    const t = linkAt(stack.join("/"));
    if (t === undefined) continue;
    if (++hops > MAX_LINK_HOPS || t.startsWith("/")) return false;
    stack.pop();
    queue.unshift(...t.split("/"));
  }
  return true;
}

function isWithin(key: string, sel: string): boolean {
  return key === sel || key.startsWith(`${sel}/`);
}

/** A selected symbolic link, made after everything else. */
interface LinkToMake {
  ordinal: number;
  key: string;
  parts: string[];
  target: string;
  uid: number;
  gid: number;
  mtimeNs: bigint;
}

/** A restored directory, whose mode, owner and time are set at the end. */
interface DirToFinish {
  key: string;
  depth: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
}

/** A name and type as one number, to tell that the write pass meets the entries the plan decided about. */
function fingerprint(l: TarListing): number {
  return fnv1a(`${l.type}\0${l.name}`);
}

/**
 * The first read: which paths asked for are in the archive, its first top-level names (for the
 * message when some are not), and what the plan needs from the whole archive before it can
 * decide about any entry: the symbolic links selected (an entry is refused when a parent is one,
 * wherever in the archive it comes), and the names selected hard links point to.
 */
class Survey {
  entries = 0;
  readonly tops = new Set<string>();
  /** Selected symbolic links, name → target; of a name given twice, the last. */
  readonly links = new Map<string, string>();
  readonly symlinks: LinkToMake[] = [];
  /** Names selected hard links point to: the plan remembers what it decided for them. */
  readonly linkTargets = new Set<string>();
  /** Of those, names outside the selection: their files are restored too. */
  readonly alsoNeeded = new Set<string>();
  private readonly unmatched: Set<string>;

  constructor(readonly selection: readonly string[], private readonly only?: RestoreOptions["only"]) {
    this.unmatched = new Set(selection);
  }

  selected(key: string): boolean {
    return this.selection.length === 0 || this.selection.some((sel) => isWithin(key, sel));
  }

  take(l: TarListing): void {
    const ordinal = this.entries++;
    if (this.only && !this.only(ordinal, l)) return;
    const s = splitEntryName(l.name);
    if ("why" in s) return;
    const key = s.parts.join("/");
    if (this.tops.size < 5 && s.parts[0] !== undefined) this.tops.add(s.parts[0]);
    if (this.unmatched.size > 0) for (const sel of this.unmatched) if (isWithin(key, sel)) this.unmatched.delete(sel);
    if (!this.selected(key)) return;
    if (l.type === "symlink") {
      this.links.set(key, l.linkTarget ?? "");
      this.symlinks.push({ ordinal, key, parts: s.parts, target: l.linkTarget ?? "", uid: l.uid, gid: l.gid, mtimeNs: l.mtimeNs });
    } else if (l.type === "hardlink") {
      const t = splitEntryName(l.linkTarget ?? "");
      if ("why" in t) return;
      const tkey = t.parts.join("/");
      this.linkTargets.add(tkey);
      if (!this.selected(tkey)) this.alsoNeeded.add(tkey);
    }
  }

  /** Paths asked for that no entry of the archive is, or lies below. */
  missing(): string[] {
    return [...this.unmatched];
  }
}

interface PlanOptions {
  root: string;
  force: boolean;
  allowOutsideLinks: boolean;
  only?: RestoreOptions["only"];
}

/**
 * The second read: a decision for each entry, in archive order, as one byte. Pure apart from
 * looking at the target directory; nothing is written.
 */
class Planner {
  readonly decisions: Uint8Array;
  readonly fingerprints: Uint32Array;
  readonly refused: EntryNote[] = [];
  readonly skipped: EntryNote[] = [];
  readonly conflicts: EntryNote[] = [];
  readonly alsoRestored: string[] = [];
  readonly dirs: DirToFinish[] = [];
  restored = 0;
  bytes = 0;
  private ordinal = 0;
  private readonly disk: DiskView;
  private readonly rootIsSlash: boolean;
  /** What was decided for the names hard links point to, as the plan passed them. */
  private readonly targetDecisions = new Map<string, number>();

  readonly force: boolean;

  constructor(private readonly survey: Survey, private readonly opts: PlanOptions) {
    this.force = opts.force;
    this.decisions = new Uint8Array(survey.entries);
    this.fingerprints = new Uint32Array(survey.entries);
    this.disk = new DiskView(opts.root);
    this.rootIsSlash = opts.root === "/";
  }

  take(l: TarListing): void {
    const ordinal = this.ordinal++;
    if (ordinal >= this.decisions.length) throw new ShootError("VERIFY_FAILED", "the archive changed while it was being read (more entries than at first); nothing was restored");
    this.fingerprints[ordinal] = fingerprint(l);
    if (this.opts.only && !this.opts.only(ordinal, l)) {
      this.decisions[ordinal] = UNSELECTED;
      return;
    }
    const s = splitEntryName(l.name);
    if ("why" in s) {
      this.decisions[ordinal] = this.note(this.refused, REFUSED, l.name, s.why);
      return;
    }
    const decision = this.decide(l, s.parts);
    this.decisions[ordinal] = decision;
    if (decision !== RESTORE) return;
    this.restored++;
    if (l.type === "file") this.bytes += l.size;
    if (l.type === "dir") this.dirs.push({ key: s.parts.join("/"), depth: s.parts.length, mode: l.mode, uid: l.uid, gid: l.gid, mtimeNs: l.mtimeNs });
  }

  /** Every entry was decided about: as many as the first read found. */
  complete(): boolean {
    return this.ordinal === this.decisions.length;
  }

  private note(list: EntryNote[], decision: number, name: string, why: string): number {
    list.push({ name, why });
    return decision;
  }

  private decide(l: TarListing, parts: string[]): number {
    const key = parts.join("/");
    if (key === "") return UNSELECTED; // the archive's top directory
    let selected = this.survey.selected(key);
    if (!selected && l.type === "file" && this.survey.alsoNeeded.has(key)) {
      selected = true;
      if (!this.alsoRestored.includes(key)) this.alsoRestored.push(key);
    }
    if (!selected) return UNSELECTED;
    const decision = this.refusal(l, parts, key) ?? this.conflict(l, key);
    if (this.survey.linkTargets.has(key)) this.targetDecisions.set(key, decision);
    return decision;
  }

  /** The first parent of `parts` that is a link (the archive's or one on disk), if any. */
  private linkInPath(parts: readonly string[]): string | undefined {
    let k = "";
    let onDisk = true; // below a path that is not a directory on disk, nothing is
    for (let i = 0; i < parts.length - 1; i++) {
      k = i === 0 ? parts[0]! : `${k}/${parts[i]}`;
      if (this.survey.links.has(k)) return `the archive's symbolic link ${k}`;
      if (!onDisk) continue;
      const here = this.disk.at(k);
      if (here.kind === "symlink") return `the existing symbolic link ${path.join(this.opts.root, k)}`;
      onDisk = here.kind === "dir";
    }
    return undefined;
  }

  private refusal(l: TarListing, parts: string[], key: string): number | undefined {
    if (l.type === "other") return this.note(this.skipped, SKIPPED, key, "not a file, directory or link (device, FIFO or sparse file): not restored");
    const through = this.linkInPath(parts);
    if (through) return this.note(this.refused, REFUSED, key, `would be written through ${through}`);
    if (l.type === "symlink" && !this.opts.allowOutsideLinks) {
      const linkAt = (k: string) => this.survey.links.get(k) ?? (this.disk.at(k).kind === "symlink" ? this.disk.at(k).target : undefined);
      if (!linkStaysInside(parts, l.linkTarget ?? "", this.rootIsSlash, linkAt)) {
        return this.note(this.refused, REFUSED, key, `symbolic link to ${JSON.stringify(l.linkTarget)}, which points outside ${this.opts.root}`);
      }
    }
    if (l.type !== "hardlink") return undefined;
    const t = splitEntryName(l.linkTarget ?? "");
    if ("why" in t) return this.note(this.refused, REFUSED, key, `hard link to ${JSON.stringify(l.linkTarget)} (${t.why})`);
    const via = this.linkInPath([...t.parts, ""]);
    if (via) return this.note(this.refused, REFUSED, key, `hard link through ${via}`);
    const tkey = t.parts.join("/");
    if (this.targetDecisions.get(tkey) !== RESTORE && this.disk.at(tkey, true).kind !== "file") {
      return this.note(this.skipped, SKIPPED, key, `hard link to /${tkey}, which is neither restored nor on disk`);
    }
    return undefined;
  }

  /** What is in the way of an entry to be written. */
  private conflict(l: TarListing, key: string): number {
    const here = this.disk.at(key, l.type !== "dir");
    if (here.kind === "blocked") return this.opts.force ? RESTORE : this.note(this.conflicts, CONFLICT, key, "a parent directory of it is a file here");
    if (here.kind === "none") return RESTORE;
    if (l.type === "dir") {
      if (here.kind === "dir" || this.opts.force) return RESTORE;
      return this.note(this.conflicts, CONFLICT, key, `exists here as a ${here.kind}`);
    }
    if (here.kind === "dir") return this.note(this.conflicts, CONFLICT, key, "a directory of that name is in the way (remove it first; --force does not remove directories)");
    return this.opts.force ? RESTORE : this.note(this.conflicts, CONFLICT, key, "exists");
  }
}

/** Seconds with the fraction the archive holds (to the microsecond a double keeps), as utimes takes them. */
function seconds(mtimeNs: bigint): number {
  return Number(mtimeNs / 1000n) / 1e6;
}

const CREATE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

/**
 * The third read: the entries the plan chose, written as they stream by. Symbolic links wait
 * for the end; so do directories' modes and times.
 */
class Writer {
  readonly failed: EntryNote[] = [];
  /** Directories this restore made or found to be directories (not links): written into without looking again. */
  private readonly dirsOk = new Set<string>([""]);
  private ordinal = 0;
  private file: { fd: number; left: number; key: string; l: TarListing } | undefined;
  private readonly asRoot = process.getuid?.() === 0;

  constructor(private readonly root: string, private readonly plan: Planner) {}

  entry(l: TarListing): void {
    if (this.file) {
      // content comes whole before the next entry; should it not, the file is not left open
      fs.closeSync(this.file.fd);
      this.fail(this.file.key, new Error("its content ended early"));
      this.file = undefined;
    }
    const ordinal = this.ordinal++;
    if (this.plan.fingerprints[ordinal] !== fingerprint(l)) {
      throw new ShootError("RESTORE_FAILED", `the archive changed while it was being restored (entry ${ordinal + 1} is not the one checked); what was written so far stays`);
    }
    if (this.plan.decisions[ordinal] !== RESTORE || l.type === "symlink") return;
    const s = splitEntryName(l.name);
    if ("why" in s) return; // never decided RESTORE; checked again all the same
    const key = s.parts.join("/");
    const abs = path.join(this.root, key);
    try {
      if (l.type === "dir") {
        this.dirs(s.parts, s.parts.length - 1);
        // a file where the directory belongs: the plan let it be replaced only with force
        if (this.plan.force && !this.dirsOk.has(key) && fs.lstatSync(abs, { throwIfNoEntry: false })?.isDirectory() === false) fs.unlinkSync(abs);
        this.dirs(s.parts, s.parts.length);
      } else if (l.type === "file") {
        this.dirs(s.parts, s.parts.length - 1);
        const fd = this.create(abs, () => fs.openSync(abs, CREATE_FLAGS, 0o600));
        this.file = { fd, left: l.size, key, l };
        if (l.size === 0) this.close();
      } else if (l.type === "hardlink") {
        const t = splitEntryName(l.linkTarget ?? "");
        if ("why" in t) return;
        this.dirs(s.parts, s.parts.length - 1);
        this.create(abs, () => fs.linkSync(path.join(this.root, t.parts.join("/")), abs));
      }
    } catch (e) {
      this.fail(key, e);
    }
  }

  data(piece: Uint8Array): void {
    const f = this.file;
    if (!f) return;
    try {
      for (let at = 0; at < piece.length;) at += fs.writeSync(f.fd, piece, at, piece.length - at);
      f.left -= piece.length;
      if (f.left === 0) this.close();
    } catch (e) {
      this.file = undefined;
      fs.closeSync(f.fd);
      this.fail(f.key, e);
    }
  }

  /** Symbolic links, now that every file is in place: their parents are checked again. */
  links(symlinks: readonly LinkToMake[]): void {
    for (const k of symlinks) {
      if (this.plan.decisions[k.ordinal] !== RESTORE) continue;
      try {
        this.dirs(k.parts, k.parts.length - 1, true);
        const abs = path.join(this.root, k.key);
        this.clear(abs);
        fs.symlinkSync(k.target, abs);
        if (this.asRoot) fs.lchownSync(abs, k.uid, k.gid);
        fs.lutimesSync(abs, seconds(k.mtimeNs), seconds(k.mtimeNs));
      } catch (e) {
        this.fail(k.key, e);
      }
    }
  }

  /** Directories' owners, modes and times, deepest first: after this nothing is written into them. */
  finishDirs(dirs: readonly DirToFinish[]): void {
    for (const d of [...dirs].sort((x, y) => y.depth - x.depth)) {
      const abs = path.join(this.root, d.key);
      try {
        if (this.asRoot) fs.lchownSync(abs, d.uid, d.gid);
        fs.chmodSync(abs, d.mode);
        fs.utimesSync(abs, seconds(d.mtimeNs), seconds(d.mtimeNs));
      } catch (e) {
        this.fail(d.key, e, "setting owner, mode and time");
      }
    }
  }

  private close(): void {
    const f = this.file!;
    this.file = undefined;
    try {
      // the owner first: changing it clears set-user-ID and set-group-ID bits the mode sets
      if (this.asRoot) fs.fchownSync(f.fd, f.l.uid, f.l.gid);
      fs.fchmodSync(f.fd, f.l.mode);
      fs.futimesSync(f.fd, seconds(f.l.mtimeNs), seconds(f.l.mtimeNs));
    } catch (e) {
      this.fail(f.key, e, "setting owner, mode and time");
    } finally {
      fs.closeSync(f.fd);
    }
  }

  /**
   * The first `count` names of `parts` exist as directories: made when missing, and never a
   * link or a file, which would carry what is written elsewhere. `again`: looked at even when
   * seen before (for links, made when everything else is in place).
   */
  private dirs(parts: readonly string[], count: number, again = false): void {
    let key = "";
    for (let i = 0; i < count; i++) {
      key = key === "" ? parts[i]! : `${key}/${parts[i]}`;
      if (!again && this.dirsOk.has(key)) continue;
      const abs = path.join(this.root, key);
      let st: fs.Stats | undefined;
      try {
        st = fs.lstatSync(abs);
      } catch (e) {
        if (errnoCode(e) !== "ENOENT") throw e;
      }
      if (!st) fs.mkdirSync(abs, { mode: 0o755 });
      else if (!st.isDirectory()) throw new Error(`${abs} is not a directory (a link or file is in the way)`);
      this.dirsOk.add(key);
    }
  }

  /**
   * `make` a new file or link at `abs`: tried first as it is (nearly always nothing is there),
   * and once more after making room when something was.
   */
  private create<T>(abs: string, make: () => T): T {
    try {
      return make();
    } catch (e) {
      if (errnoCode(e) !== "EEXIST") throw e;
    }
    this.clear(abs);
    return make();
  }

  /**
   * Make room for a file or link at `abs`. The plan found nothing there, or `force` allowed
   * replacing it; whatever stands there now that is not a directory is removed, not followed.
   */
  private clear(abs: string): void {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch {
      return;
    }
    if (st.isDirectory()) throw new Error("a directory of that name is in the way");
    fs.unlinkSync(abs);
  }

  private fail(name: string, e: unknown, doing?: string): void {
    this.failed.push({ name, why: doing ? `${doing}: ${errorMessage(e)}` : errorMessage(e) });
  }
}

/** One read of the whole archive, each entry (and with `onData`, its content) to the callbacks. */
async function readPass(
  fd: ArchiveSource, label: string, opts: RestoreOptions, total: number,
  onEntry: (e: TarListing) => void, onData?: (piece: Uint8Array) => void,
): Promise<{ pass: PassResult; ended: boolean }> {
  const { sink, ended } = tarSink(onEntry, onData);
  const progress = opts.progressFor?.(label, total);
  try {
    const pass = await archivePass(fd, sink, { progress, signal: opts.signal });
    return { pass, ended: ended() };
  } finally {
    progress?.finish();
  }
}

/** Refuse before writing when the archive is not what its checksum files say. */
function checkIntegrity(a: HeldArchive, pass: PassResult, ended: boolean, checksum: boolean): void {
  const fail = (why: string) => {
    throw new ShootError("VERIFY_FAILED", `${a.file}: ${why}; nothing was restored`);
  };
  if (!ended) fail("the tar stream ends without its end-of-archive blocks: the archive is truncated");
  if (checksum) {
    if (a.checksumFile === "missing") fail(`there is no checksum file ${a.file}${CHECKSUM_SUFFIX} beside it (restore with --no-checksum to go ahead without one)`);
    if (a.checksumFile === "bad") fail(`${a.file}${CHECKSUM_SUFFIX} is not one md5sum line for it`);
    if (a.md5 !== pass.md5) fail(`its MD5 is ${pass.md5}, ${a.file}${CHECKSUM_SUFFIX} says ${a.md5}`);
  }
  const h = a.list;
  if (h?.md5 && h.md5 !== pass.md5) fail(`its MD5 is ${pass.md5}, the server's file list recorded ${h.md5}`);
  if (h?.sha256 && h.sha256 !== pass.sha256) fail(`its SHA-256 is ${pass.sha256}, the server's file list recorded ${h.sha256}`);
}

function entries(n: number): string {
  return `${n} ${n === 1 ? "entry" : "entries"}`;
}

function listNotes(notes: readonly EntryNote[], n = 5): string {
  return `${notes.slice(0, n).map((x) => `${x.name} (${x.why})`).join("; ")}${notes.length > n ? `; … ${notes.length} in all` : ""}`;
}

export async function runRestore(a: HeldArchive, opts: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const result: RestoreResult = {
    code: 0, message: "", archive: a.path, to: opts.to, restored: 0, bytes: 0,
    refused: [], skipped: [], conflicts: [], failed: [], alsoRestored: [], ms: 0,
  };
  const finish = (name: CodeName | "OK", message: string): RestoreResult => ({
    ...result, code: name === "OK" ? 0 : code(name), message, ms: performance.now() - started,
  });
  const survey = new Survey((opts.paths ?? []).map(selectionKey), opts.only);
  const unreadable = (e: unknown): never => {
    if (!(e instanceof ArchiveReadError)) throw e;
    throw new ShootError("VERIFY_FAILED", `${a.file}: ${describeReadError(e, a.bytes)}; nothing was restored`);
  };

  const fd = openSource(a);
  try {
    // 1. read it whole: checksum, stream, the paths asked for, the links; nothing is written before this passes
    const first = await readPass(fd, "checking", opts, a.bytes, (e) => survey.take(e)).catch(unreadable);
    checkIntegrity(a, first.pass, first.ended, opts.checksum !== false);
    const unmatched = opts.only ? [] : survey.missing();
    if (unmatched.length > 0) {
      const tops = [...survey.tops];
      throw new ShootError("ARCHIVE_NOT_FOUND", `not in ${a.file}: ${unmatched.map((u) => `/${u}`).join(", ")} (its entries start with ${tops.map((t) => `/${t}`).join(", ") || "nothing"}; see shoot list ${a.file}); nothing was restored`);
    }

    // 2. the target, and the plan
    try {
      fs.mkdirSync(opts.to, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new ShootError("RESTORE_FAILED", `cannot create the target directory ${opts.to}: ${errorMessage(e)}`);
    }
    const root = fs.realpathSync(opts.to);
    if (!fs.statSync(root).isDirectory()) throw new ShootError("RESTORE_FAILED", `${opts.to} is not a directory`);
    result.to = root;
    const plan = new Planner(survey, { root, force: opts.force === true, allowOutsideLinks: opts.allowOutsideLinks === true, only: opts.only });
    const second = await readPass(fd, "planning", opts, a.bytes, (e) => plan.take(e)).catch(unreadable);
    if (second.pass.md5 !== first.pass.md5 || !plan.complete()) throw new ShootError("VERIFY_FAILED", `${a.file}: the archive changed while it was being read; nothing was restored`);
    result.alsoRestored = plan.alsoRestored;
    result.refused = plan.refused;
    result.skipped = plan.skipped;
    result.conflicts = plan.conflicts;
    if (result.conflicts.length > 0) {
      return finish("RESTORE_EXISTS", `${entries(result.conflicts.length)} exist in ${root} already (${listNotes(result.conflicts, 3)}); nothing was restored (--force overwrites files)`);
    }

    // 3. files, directories and hard links, in archive order
    const writer = new Writer(root, plan);
    result.failed = writer.failed;
    let third: { pass: PassResult };
    try {
      third = await readPass(fd, "restoring", opts, a.bytes, (e) => writer.entry(e), (piece) => writer.data(piece));
    } catch (e) {
      const why = e instanceof ArchiveReadError || e instanceof ShootError ? errorMessage(e) : undefined;
      if (why === undefined) throw e;
      result.failed.push({ name: a.file, why });
      return finish("RESTORE_FAILED", `restoring ${a.file} into ${root} failed part way: ${why}`);
    }
    if (third.pass.md5 !== first.pass.md5) result.failed.push({ name: a.file, why: "the archive changed while it was being restored" });

    // 4. links last, so that nothing was ever written through one; then directory metadata
    writer.links(survey.symlinks);
    writer.finishDirs(plan.dirs);
    result.restored = plan.restored;
    result.bytes = plan.bytes;
    const took = formatDuration(performance.now() - started);
    const what = `${entries(result.restored)} (${formatBytes(result.bytes)}) from ${a.file} into ${root} in ${took}`;
    if (result.failed.length > 0) return finish("RESTORE_FAILED", `restored ${what}, but ${entries(result.failed.length)} could not be written: ${listNotes(result.failed)}`);
    if (result.refused.length > 0) {
      const links = result.refused.some((r) => r.why.includes("points outside")) && !opts.allowOutsideLinks ? " (--allow-outside-links creates links that point out, after everything else)" : "";
      return finish("RESTORE_UNSAFE", `restored ${what}; refused ${entries(result.refused.length)} that would land or point outside it: ${listNotes(result.refused)}${links}`);
    }
    return finish("OK", `restored ${what}${result.skipped.length ? `; skipped ${result.skipped.length}: ${listNotes(result.skipped)}` : ""}`);
  } finally {
    closeSource(fd);
  }
}
