/**
 * Restore an archive, or some paths of it, into a directory. Nothing is written until the
 * archive has been read whole and matched its checksum; nothing that exists is overwritten
 * without `force`; and nothing lands, points or is changed outside the target directory,
 * whoever made the archive. Restore acts on what the disk holds, never on what the archive
 * claims:
 *
 * - absolute names and names with `..` are refused;
 * - every name is reached through directories opened one component at a time from the target
 *   without following a link (extract.ts, cursor.ts, at.ts); files are created only where
 *   nothing is (O_EXCL) and never through a link (O_NOFOLLOW); owners, modes and times are set
 *   on descriptors, or on the name itself (AT_SYMLINK_NOFOLLOW);
 * - an entry whose path runs through a symbolic link (one from the archive, or one already in
 *   the target) is refused;
 * - a name the archive gives two kinds (a file and a directory, a directory and a link, a
 *   file that is also the parent of other entries, …) is made as neither, and nothing below
 *   it is made (RESTORE_CONFLICT);
 * - symbolic links are made last, after every file, and only when their target resolves
 *   inside the target directory, checked on the disk after all of them are made; with
 *   `allowOutsideLinks` such links are made too, and still nothing is ever created, written,
 *   changed or followed through them;
 * - devices, FIFOs, unknown types, names that are not UTF-8 or longer than PATH_MAX are left
 *   out and named (ARCHIVE_UNSUPPORTED);
 * - what the archive would write is added up while it is checked, and a restore that does not
 *   fit the target's free space or inodes is refused before anything is written; a file
 *   system that fills up anyway stops it there (RESTORE_NO_SPACE).
 *
 * The archive is read twice, each entry in turn: to check it (checksums, a whole tar stream,
 * the paths asked for, the names of its directories and links, the space it needs), and to
 * write. Between the two, the plan decides about each entry (one byte per entry is kept) from
 * the entries the check kept (listings.ts: in a file once they are many). Only the check
 * hashes the archive (its SHA-256 alone when the file list vouches for the .md5 file's MD5:
 * sha256Suffices); the file's stamp tells that it did not change since (an archive read as
 * a stream, which has none, is read and hashed once more for the plan). What is held beyond
 * that byte grows with the archive's links and directories, not with its files, so that a
 * restore of millions of files fits in the memory of a small host.
 */
import fs from "node:fs";
import path from "node:path";
import { code, type CodeName } from "../common/codes.ts";
import { ShootError, errnoCode, errorMessage } from "../common/errors.ts";
import { CHECKSUM_SUFFIX } from "../state/naming.ts";
import type { Progress } from "../report/progress.ts";
import type { TarListing } from "../archive/tar.ts";
import { formatBytes, formatDuration } from "../common/units.ts";
import type { HeldArchive } from "./verify.ts";
import { ArchiveDamage, archivePass, closeSource, openSource, stampOf } from "./read.ts";
import type { UnfinishedRestore } from "./unfinished.ts";
import type { ArchiveSource, PassOptions, PassResult } from "./read.ts";
import type { Digests } from "./pass-digests.ts";
import { openAt, type At } from "./at.ts";
import { ListingLog } from "./listings.ts";
import { Extractor, keyOf, splitEntryName, type DirToFinish, type EntryNote, type LinkToMake, type PlanView } from "./extract.ts";

export { splitEntryName, type EntryNote };
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
  /** Called with the target (resolved) just before the first thing is written into it. */
  beforeWriting?: (root: string) => void;
  /**
   * One archive of a chain (chain.ts): entries for which this is false are passed over as if
   * the archive did not hold them, and the paths asked for need not be in this archive. Called
   * in archive order, first for every entry in turn, then again for the same ones.
   */
  only?: (ordinal: number, entry: TarListing) => boolean;
}

export interface RestoreResult {
  code: number;
  message: string;
  archive: string;
  to: string;
  /** Entries made: files, directories, links. */
  restored: number;
  /** Bytes of file content written (a sparse file's whole size). */
  bytes: number;
  /** Entries refused because they would land, point or write outside the target. */
  refused: EntryNote[];
  /** Entries at or below a name the archive gives two kinds, made as neither. */
  clashes: EntryNote[];
  /** Entries left out as shoot does not restore them (devices, FIFOs, unknown types, hard links to nothing, names it cannot make). */
  skipped: EntryNote[];
  /** Files that exist and would have been overwritten (nothing was restored). */
  conflicts: EntryNote[];
  /** Entries that could not be written. */
  failed: EntryNote[];
  /** Hard-link targets restored because a selected path links to them. */
  alsoRestored: string[];
  ms: number;
  /** The note of an earlier restore into the target that did not finish (unfinished.ts). */
  earlierUnfinished?: UnfinishedRestore | "unreadable";
}

/** What the plan decides for each entry: one byte per entry, in archive order. */
const RESTORE = 0;
const UNSELECTED = 1;
const REFUSED = 2;
const SKIPPED = 3;
const EXISTS = 4;
const CLASH = 5;

/** Longest name the system takes (PATH_MAX with its NUL), and longest component (NAME_MAX). */
const PATH_MAX = 4095;
const NAME_MAX = 255;

/** A name longer than the system takes (in UTF-8 bytes), told without counting them when its length alone tells. */
function tooLong(s: string, max: number): boolean {
  return s.length > max || (s.length > max / 3 && Buffer.byteLength(s) > max);
}

/** A path as a person writes it (`/etc/hosts`, `etc/hosts/`) in archive form. */
export function selectionKey(p: string): string {
  const parts = p.split("/").filter((x) => x !== "" && x !== ".");
  if (parts.includes("..")) throw new ShootError("USAGE", `path ${JSON.stringify(p)} contains '..': name paths as the archive lists them (shoot list ARCHIVE)`);
  if (parts.length === 0) throw new ShootError("USAGE", `path ${JSON.stringify(p)} names nothing`);
  return parts.join("/");
}

/** The longest chain of links followed before a target counts as a loop (as the kernel's ELOOP). */
const MAX_LINK_HOPS = 40;

/**
 * Does a link at `linkParts` with `target` resolve inside the root? Followed component by
 * component, through the links `linkAt` knows, because `..` after a link climbs from where
 * the link points, not from where it stands.
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

/** A name and type as one number, to tell that the write pass meets the entries the plan decided about. */
function fingerprint(l: TarListing): number {
  return fnv1a(`${l.type}\0${l.name}`);
}

/**
 * What a name is in the archive, as bits: a directory entry, the parent of other entries, a
 * symbolic link, a hard link to a symbolic link seen before it (GNU tar makes that a second link).
 */
const DIR = 1;
const PARENT = 2;
const SYMLINK = 4;
const LINK_TO_LINK = 8;

/** Free space and inodes where the target is, and the block size what is written is counted in. */
interface Space {
  bytes: number;
  inodes: number;
  block: number;
  where: string;
}

/** The target's file system, found through its nearest existing ancestor; undefined when it cannot be asked. */
function spaceAt(to: string): Space | undefined {
  for (let p = path.resolve(to); ; p = path.dirname(p)) {
    try {
      const s = fs.statfsSync(p);
      // a file system that counts no inodes (btrfs) has no limit on them to check
      return { bytes: s.bavail * s.bsize, inodes: s.files > 0 ? s.ffree : Infinity, block: s.bsize || 4096, where: p };
    } catch (e) {
      if (errnoCode(e) !== "ENOENT" || p === path.dirname(p)) return undefined;
    }
  }
}

/** Bytes of content a file entry writes (a sparse file's pieces). */
function storedBytes(l: TarListing): number {
  return l.sparse ? l.sparse.reduce((n, p) => n + p.length, 0) : l.size;
}

/**
 * The first read: which paths asked for are in the archive, its first top-level names (for the
 * message when some are not), and what the plan needs from the whole archive before it can
 * decide about any entry: what each directory and link name is (an entry is refused when a
 * parent is a link, a name given two kinds is made as neither, wherever in the archive the
 * other comes), the names selected hard links point to, and the space it all takes.
 */
class Survey {
  entries = 0;
  readonly tops = new Set<string>();
  /** Names of directories, parents and links, as DIR | PARENT | SYMLINK bits. */
  readonly kinds = new Map<string, number>();
  /** Selected symbolic links, name → target; of a name given twice, the last. */
  readonly links = new Map<string, string>();
  readonly symlinks: LinkToMake[] = [];
  readonly lastLink = new Map<string, number>();
  /** Names selected hard links point to: the plan remembers what it decided for them. */
  readonly linkTargets = new Set<string>();
  /** Of those, names outside the selection: their files are restored too. */
  readonly alsoNeeded = new Set<string>();
  readonly need = { bytes: 0, inodes: 0 };
  private readonly unmatched: Set<string>;

  constructor(
    readonly selection: readonly string[],
    private readonly space: Space | undefined,
    private readonly only?: RestoreOptions["only"],
  ) {
    this.unmatched = new Set(selection);
  }

  selected(key: string): boolean {
    return this.selection.length === 0 || this.selection.some((sel) => isWithin(key, sel));
  }

  take(l: TarListing): void {
    const ordinal = this.entries++;
    if (this.only && !this.only(ordinal, l)) return;
    if (tooLong(l.name, PATH_MAX)) return; // left out by the plan, never split
    const s = splitEntryName(l.name);
    if ("why" in s) return;
    const key = s.parts.join("/");
    if (this.tops.size < 5 && s.parts[0] !== undefined) this.tops.add(s.parts[0]);
    if (this.unmatched.size > 0) for (const sel of this.unmatched) if (isWithin(key, sel)) this.unmatched.delete(sel);
    if (!this.selected(key) || key === "") return;
    const block = this.space?.block ?? 4096;
    const newParents = this.markParents(s.parts);
    let bytes = newParents * block;
    if (l.type === "dir") bytes += this.mark(key, DIR) ? block : 0;
    else if (l.type === "file") bytes += Math.ceil(storedBytes(l) / block) * block;
    else if (l.type === "symlink") {
      this.mark(key, SYMLINK);
      this.links.set(key, l.linkTarget ?? "");
      this.lastLink.set(key, ordinal);
      this.symlinks.push({ ordinal, key, parts: s.parts, target: l.linkTarget ?? "", uid: l.uid, gid: l.gid, mtimeNs: l.mtimeNs });
      // a target too long to keep in the inode takes a block
      if ((l.linkTarget ?? "").length > 60) bytes += block;
    } else if (l.type === "hardlink") {
      const t = splitEntryName(l.linkTarget ?? "");
      if (!("why" in t)) {
        const tkey = t.parts.join("/");
        this.linkTargets.add(tkey);
        if (!this.selected(tkey)) this.alsoNeeded.add(tkey);
        if (this.isLink(tkey)) this.mark(key, LINK_TO_LINK);
      }
    }
    this.account(bytes, 1 + newParents, key);
  }

  /** Set a kind bit on a name; true when the name had neither DIR nor PARENT before (a new directory). */
  private mark(key: string, bit: number): boolean {
    const v = this.kinds.get(key) ?? 0;
    this.kinds.set(key, v | bit);
    return (v & (DIR | PARENT)) === 0;
  }

  /** Mark every parent of `parts` as one; how many of them are new directories. */
  private markParents(parts: readonly string[]): number {
    let added = 0;
    for (let n = parts.length - 1; n >= 1; n--) {
      const k = keyOf(parts, n);
      const v = this.kinds.get(k) ?? 0;
      if (v & PARENT) break;
      this.kinds.set(k, v | PARENT);
      if (!(v & DIR)) added++;
    }
    return added;
  }

  /** Count what an entry takes; refuse the restore as soon as it cannot fit (a bomb is never read to its end). */
  private account(bytes: number, inodes: number, key: string): void {
    this.need.bytes += bytes;
    this.need.inodes += inodes;
    const s = this.space;
    if (!s || (this.need.bytes <= s.bytes && this.need.inodes <= s.inodes)) return;
    const short = this.need.bytes > s.bytes ? `${formatBytes(this.need.bytes)} by /${key}, more than the ${formatBytes(s.bytes)} free` : `${this.need.inodes} files and directories by /${key}, more than the ${s.inodes} inodes free`;
    throw new ShootError("RESTORE_NO_SPACE", `restoring it would take ${short} on the file system of ${s.where}; nothing was restored (free some space, or restore some paths only)`);
  }

  /**
   * Names that are both a symbolic link and a directory entry. (A link that is only the parent
   * of other entries is made; those entries are refused as written through it.)
   */
  clashes(): Set<string> {
    const out = new Set<string>();
    for (const [k, v] of this.kinds) if (v & SYMLINK && v & DIR) out.add(k);
    return out;
  }

  isLink(key: string): boolean {
    return ((this.kinds.get(key) ?? 0) & SYMLINK) !== 0;
  }

  /** Paths asked for that no entry of the archive is, or lies below. */
  missing(): string[] {
    return [...this.unmatched];
  }
}

type Disk = "none" | "dir" | "file" | "symlink" | "other" | "blocked";

/** What the plan knows of a directory path: on disk (looked at once), and the first link on the way to it. */
interface DirInfo {
  disk: Disk;
  target?: string;
  through?: string;
}

const ROOT_INFO: DirInfo = { disk: "dir" };

interface PlanOptions {
  root: string;
  force: boolean;
  allowOutsideLinks: boolean;
  only?: RestoreOptions["only"];
}

/**
 * The plan: a decision for each entry, in archive order, as one byte. Pure apart from
 * looking at the target directory; nothing is written. What is on disk is looked at once per
 * directory path (remembered) and once per file's own name; below a path that does not exist
 * nothing does, so a restore into an empty directory looks at its top names alone.
 */
class Planner implements PlanView {
  readonly decisions: Uint8Array;
  readonly fingerprints: Uint32Array;
  readonly refused: EntryNote[] = [];
  readonly skipped: EntryNote[] = [];
  readonly conflicts: EntryNote[] = [];
  readonly clashNotes: EntryNote[] = [];
  readonly alsoRestored: string[] = [];
  readonly dirs: DirToFinish[] = [];
  readonly clashes: Set<string>;
  readonly force: boolean;
  readonly lastLink: ReadonlyMap<string, number>;
  private ordinal = 0;
  private readonly rootIsSlash: boolean;
  private readonly dirInfos = new Map<string, DirInfo>();
  /** What was decided for the names hard links point to, as the plan passed them. */
  private readonly targetDecisions = new Map<string, number>();

  constructor(private readonly survey: Survey, private readonly opts: PlanOptions) {
    this.force = opts.force;
    this.decisions = new Uint8Array(survey.entries);
    this.fingerprints = new Uint32Array(survey.entries);
    this.rootIsSlash = opts.root === "/";
    this.clashes = survey.clashes();
    this.lastLink = survey.lastLink;
  }

  chosen(ordinal: number, l?: TarListing): boolean {
    if (l && this.fingerprints[ordinal] !== fingerprint(l)) {
      throw new ShootError("RESTORE_FAILED", `the archive changed while it was being restored (entry ${ordinal + 1} is not the one checked); what was written so far stays`);
    }
    return this.decisions[ordinal] === RESTORE;
  }

  dirMode(key: string): number {
    // one the archive holds is made for its owner alone until the end sets its mode; one it only implies, as tar makes it
    return (this.survey.kinds.get(key) ?? 0) & DIR ? 0o700 : 0o777;
  }

  take(l: TarListing): void {
    const ordinal = this.ordinal++;
    if (ordinal >= this.decisions.length) throw new ShootError("VERIFY_FAILED", "the archive changed while it was being read (more entries than at first); nothing was restored");
    this.fingerprints[ordinal] = fingerprint(l);
    if (this.opts.only && !this.opts.only(ordinal, l)) {
      this.decisions[ordinal] = UNSELECTED;
      return;
    }
    if (tooLong(l.name, PATH_MAX)) {
      this.decisions[ordinal] = this.note(this.skipped, SKIPPED, `${l.name.slice(0, 100)}…`, `its name is longer than the ${PATH_MAX + 1} bytes (PATH_MAX) the system takes: not restored`);
      return;
    }
    const s = splitEntryName(l.name);
    if ("why" in s) {
      this.decisions[ordinal] = this.note(this.refused, REFUSED, l.name, s.why);
      return;
    }
    const decision = this.decide(l, s.parts);
    this.decisions[ordinal] = decision;
    if (decision === RESTORE && l.type === "dir") this.dirs.push({ key: s.parts.join("/"), depth: s.parts.length, mode: l.mode, uid: l.uid, gid: l.gid, mtimeNs: l.mtimeNs });
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
    if (key === "") return l.type === "dir" ? UNSELECTED : this.note(this.skipped, SKIPPED, l.name, "its name is empty"); // "." is the target itself
    let selected = this.survey.selected(key);
    if (!selected && l.type === "file" && this.survey.alsoNeeded.has(key)) {
      selected = true;
      if (!this.alsoRestored.includes(key)) this.alsoRestored.push(key);
    }
    if (!selected) return UNSELECTED;
    const decision = this.clash(l, parts, key) ?? this.leftOut(l, parts, key) ?? this.refusal(l, parts, key) ?? this.exists(l, parts, key);
    if (this.survey.linkTargets.has(key)) this.targetDecisions.set(key, decision);
    return decision;
  }

  /** A name the archive gives two kinds, or one below such a name (as far as the plan knows by now; the write pass looks again). */
  private clash(l: TarListing, parts: string[], key: string): number | undefined {
    const kinds = this.survey.kinds.get(key) ?? 0;
    const other =
      l.type === "dir" ? kinds & (SYMLINK | LINK_TO_LINK)
      : l.type === "symlink" ? kinds & DIR
      : l.type === "hardlink" ? kinds & (DIR | PARENT | SYMLINK)
      : kinds & (DIR | PARENT | SYMLINK | LINK_TO_LINK);
    if (other) this.clashes.add(key);
    if (!this.clashes.has(key) && !this.dirClashed(parts)) return undefined;
    const kind = l.type === "other" ? l.kind ?? "other" : l.type;
    return this.note(this.clashNotes, CLASH, key, `the archive gives this name (or a directory above it) two kinds; this entry is a ${kind}: made as neither`);
  }

  private dirClashed(parts: readonly string[]): boolean {
    if (this.clashes.size === 0) return false;
    for (let n = 1; n < parts.length; n++) if (this.clashes.has(keyOf(parts, n))) return true;
    return false;
  }

  /** What shoot does not make: kinds it does not restore, names the system cannot take. */
  private leftOut(l: TarListing, parts: string[], key: string): number | undefined {
    if (l.type === "other") return this.note(this.skipped, SKIPPED, key, `${l.kind ?? "not a file, directory or link"}: not restored`);
    if (l.unrestorable) return this.note(this.skipped, SKIPPED, key, `${l.unrestorable}: not restored`);
    if (parts.some((p) => tooLong(p, NAME_MAX))) return this.note(this.skipped, SKIPPED, `${key.slice(0, 100)}…`, `a component of its name is longer than the ${NAME_MAX} bytes the system takes: not restored`);
    if (l.type === "symlink" && !l.linkTarget) return this.note(this.skipped, SKIPPED, key, "a symbolic link to nothing (its target is empty): not restored");
    if (l.type === "symlink" && tooLong(l.linkTarget ?? "", PATH_MAX)) return this.note(this.skipped, SKIPPED, key, `its target is longer than the ${PATH_MAX + 1} bytes (PATH_MAX) the system takes: not restored`);
    return undefined;
  }

  /** The directory of the first `n` components: on disk, and the first link on the way (remembered by path). */
  private dirInfo(parts: readonly string[], n: number): DirInfo {
    if (n === 0) return ROOT_INFO;
    const k = keyOf(parts, n);
    const hit = this.dirInfos.get(k);
    if (hit) return hit;
    const parent = this.dirInfo(parts, n - 1);
    const here = parent.disk === "dir" ? this.look(k) : { disk: (parent.disk === "none" ? "none" : "blocked") as Disk };
    const through = parent.through ?? (this.survey.isLink(k) ? `the archive's symbolic link ${k}` : here.disk === "symlink" ? `the existing symbolic link ${path.join(this.opts.root, k)}` : undefined);
    const info: DirInfo = { ...here, through };
    this.dirInfos.set(k, info);
    return info;
  }

  /** What is at a name below the target now (read only: the write pass acts through descriptors). */
  private look(key: string): { disk: Disk; target?: string } {
    const abs = path.join(this.opts.root, key);
    try {
      const st = fs.lstatSync(abs);
      if (st.isSymbolicLink()) return { disk: "symlink", target: fs.readlinkSync(abs) };
      return { disk: st.isDirectory() ? "dir" : st.isFile() ? "file" : "other" };
    } catch (e) {
      return { disk: errnoCode(e) === "ENOTDIR" ? "blocked" : "none" };
    }
  }

  /** What is at an entry's own name: a file's is looked at, not remembered. */
  private diskAt(parts: readonly string[], remember: boolean): { disk: Disk; target?: string } {
    if (remember) return this.dirInfo(parts, parts.length);
    const parent = this.dirInfo(parts, parts.length - 1);
    if (parent.disk !== "dir") return { disk: parent.disk === "none" ? "none" : "blocked" };
    return this.look(parts.join("/"));
  }

  private refusal(l: TarListing, parts: string[], key: string): number | undefined {
    const through = this.dirInfo(parts, parts.length - 1).through;
    if (through) return this.note(this.refused, REFUSED, key, `would be written through ${through}`);
    if (l.type === "symlink" && !this.opts.allowOutsideLinks) {
      const linkAt = (k: string) => {
        if (this.survey.isLink(k)) return this.survey.links.get(k);
        const d = this.dirInfos.get(k) ?? this.look(k);
        return d.disk === "symlink" ? d.target : undefined;
      };
      if (!linkStaysInside(parts, l.linkTarget ?? "", this.rootIsSlash, linkAt)) {
        return this.note(this.refused, REFUSED, key, `symbolic link to ${JSON.stringify(l.linkTarget)}, which points outside ${this.opts.root}`);
      }
    }
    return l.type === "hardlink" ? this.hardLinkRefusal(l, key) : undefined;
  }

  private hardLinkRefusal(l: TarListing, key: string): number | undefined {
    const t = splitEntryName(l.linkTarget ?? "");
    if ("why" in t) return this.note(this.refused, REFUSED, key, `hard link to ${JSON.stringify(l.linkTarget)} (${t.why})`);
    if (t.parts.length === 0) return this.note(this.refused, REFUSED, key, "hard link to the target directory itself");
    const via = this.dirInfo(t.parts, t.parts.length - 1).through;
    if (via) return this.note(this.refused, REFUSED, key, `hard link through ${via}`);
    const tkey = t.parts.join("/");
    const kinds = this.survey.kinds.get(tkey) ?? 0;
    if (kinds & SYMLINK) return this.note(this.refused, REFUSED, key, `hard link to /${tkey}, a symbolic link (a second name for a link no check would see)`);
    if (kinds & (DIR | PARENT)) return this.note(this.refused, REFUSED, key, `hard link to /${tkey}, a directory`);
    if (this.targetDecisions.get(tkey) !== RESTORE && this.diskAt(t.parts, false).disk !== "file") {
      return this.note(this.skipped, SKIPPED, key, `hard link to /${tkey}, which is neither restored before it nor a file on disk: not restored`);
    }
    return undefined;
  }

  /** What is in the way of an entry to be written. */
  private exists(l: TarListing, parts: string[], key: string): number {
    const here = this.diskAt(parts, l.type === "dir");
    if (here.disk === "blocked") return this.opts.force ? RESTORE : this.note(this.conflicts, EXISTS, key, "a parent directory of it is a file here");
    if (here.disk === "none") return RESTORE;
    if (l.type === "dir") {
      if (here.disk === "dir" || this.opts.force) return RESTORE;
      return this.note(this.conflicts, EXISTS, key, `exists here as a ${here.disk}`);
    }
    if (here.disk === "dir") return this.note(this.conflicts, EXISTS, key, "a directory of that name is in the way (remove it first; --force does not remove directories)");
    return this.opts.force ? RESTORE : this.note(this.conflicts, EXISTS, key, "exists");
  }
}

/** One read of the whole archive, each entry (and with `onData`, its content) to the callbacks. */
async function readPass(
  fd: ArchiveSource,
  label: string,
  opts: RestoreOptions,
  total: number,
  each: Pick<PassOptions, "onEntry" | "onData" | "hashed" | "worker" | "sha256Only">,
): Promise<PassResult> {
  const progress = opts.progressFor?.(label, total);
  try {
    return await archivePass(fd, { progress, signal: opts.signal, ...each });
  } finally {
    progress?.finish();
  }
}

/**
 * Whether the check may take the SHA-256 alone: the file list records it, and records the very
 * MD5 the .md5 file gives (or that file is not asked for). Both digests then name the same
 * bytes; the SHA-256 names them more strongly and takes half the time of the MD5, which was
 * most of the check's work. Every single damage (the archive, its .md5 file, the list) is
 * caught as before: the two files no longer agree, or the SHA-256 differs. `shoot verify`, and
 * every pull, take both.
 */
export function sha256Suffices(a: HeldArchive, checksum: boolean): boolean {
  const h = a.list;
  if (!h?.sha256) return false;
  return !checksum || (a.checksumFile === "ok" && h.md5 !== undefined && h.md5 === a.md5);
}

/** Refuse before writing when the archive is not what its checksum files say (`md5Vouched`: its MD5 was not taken). */
function checksumProblem(a: HeldArchive, got: Digests, checksum: boolean, md5Vouched: boolean): string | undefined {
  if (checksum) {
    if (a.checksumFile === "missing") return `there is no checksum file ${a.file}${CHECKSUM_SUFFIX} beside it (restore with --no-checksum to go ahead without one)`;
    if (a.checksumFile === "bad") return `${a.file}${CHECKSUM_SUFFIX} is not one md5sum line for it`;
    if (!md5Vouched && a.md5 !== got.md5) return `its MD5 is ${got.md5}, ${a.file}${CHECKSUM_SUFFIX} says ${a.md5}`;
  }
  const h = a.list;
  if (!md5Vouched && h?.md5 && h.md5 !== got.md5) return `its MD5 is ${got.md5}, the server's file list recorded ${h.md5}`;
  if (h?.sha256 && h.sha256 !== got.sha256) return `its SHA-256 is ${got.sha256}, the server's file list recorded ${h.sha256}`;
  return undefined;
}

/** The first read, failing as a ShootError that names what is wrong: a checksum that does not match first (the archive changed since), then damage. */
async function check(
  fd: ArchiveSource,
  a: HeldArchive,
  opts: RestoreOptions,
  survey: Survey,
  log?: ListingLog,
): Promise<PassResult> {
  let pass: PassResult;
  const checksum = opts.checksum !== false;
  const sha256Only = sha256Suffices(a, checksum);
  try {
    const onEntry = (e: TarListing) => {
      survey.take(e);
      log?.add(e);
    };
    pass = await readPass(fd, "checking", opts, a.bytes, { onEntry, worker: true, sha256Only });
  } catch (e) {
    if (!(e instanceof ArchiveDamage)) throw e;
    const sums = e.digests ? checksumProblem(a, e.digests, checksum, sha256Only) : undefined;
    if (sums) throw new ShootError("VERIFY_FAILED", `${a.file}: ${sums}, and it cannot be read whole: ${e.message}; nothing was restored`);
    throw new ShootError(e.kind === "unsupported" ? "ARCHIVE_UNSUPPORTED" : "ARCHIVE_DAMAGED", `${a.file}: ${e.message}; nothing was restored`);
  }
  const sums = checksumProblem(a, pass, checksum, sha256Only);
  if (sums) throw new ShootError("VERIFY_FAILED", `${a.file}: ${sums}; nothing was restored`);
  return pass;
}

function entries(n: number): string {
  return `${n} ${n === 1 ? "entry" : "entries"}`;
}

function listNotes(notes: readonly EntryNote[], n = 5): string {
  return `${notes.slice(0, n).map((x) => `${x.name} (${x.why})`).join("; ")}${notes.length > n ? `; … ${notes.length} in all` : ""}`;
}

/** The target directory, made when missing; its real path. */
function makeTarget(to: string): string {
  try {
    fs.mkdirSync(to, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new ShootError("RESTORE_FAILED", `cannot create the target directory ${to}: ${errorMessage(e)}`);
  }
  const root = fs.realpathSync(to);
  if (!fs.statSync(root).isDirectory()) throw new ShootError("RESTORE_FAILED", `${to} is not a directory`);
  return root;
}

function loadAt(): At {
  try {
    return openAt();
  } catch (e) {
    throw new ShootError("RESTORE_FAILED", `restore needs the C library's directory calls, which cannot be loaded here: ${errorMessage(e)}`);
  }
}

export async function runRestore(a: HeldArchive, opts: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const result: RestoreResult = {
    code: 0, message: "", archive: a.path, to: opts.to, restored: 0, bytes: 0,
    refused: [], clashes: [], skipped: [], conflicts: [], failed: [], alsoRestored: [], ms: 0,
  };
  const finish = (name: CodeName | "OK", message: string): RestoreResult => ({
    ...result, code: name === "OK" ? 0 : code(name), message, ms: performance.now() - started,
  });
  const at = loadAt();
  const survey = new Survey((opts.paths ?? []).map(selectionKey), spaceAt(opts.to), opts.only);
  const fd = openSource(a);
  const stamp = stampOf(fd);
  // a file can be told unchanged by its stamp: the plan then takes the entries the check kept
  const log = stamp === undefined ? undefined : new ListingLog();
  let rootFd = -1;
  let extractor: Extractor | undefined;
  try {
    // 1. read it whole: checksum, stream, the paths asked for, names and space; nothing is written before this passes
    const first = await check(fd, a, opts, survey, log);
    const unchanged = sameAsChecked(fd, stamp, first);
    const unmatched = opts.only ? [] : survey.missing();
    if (unmatched.length > 0) {
      const tops = [...survey.tops];
      throw new ShootError("ARCHIVE_NOT_FOUND", `not in ${a.file}: ${unmatched.map((u) => `/${u}`).join(", ")} (its entries start with ${tops.map((t) => `/${t}`).join(", ") || "nothing"}; see shoot list ${a.file}); nothing was restored`);
    }

    // 2. the target, and the plan
    const root = makeTarget(opts.to);
    result.to = root;
    const plan = new Planner(survey, { root, force: opts.force === true, allowOutsideLinks: opts.allowOutsideLinks === true, only: opts.only });
    const asChecked = await planAll(fd, a, opts, plan, log, unchanged);
    if (!asChecked || !plan.complete() || !unchanged.still()) {
      const why = "the archive changed while it was being read; nothing was restored";
      throw new ShootError("VERIFY_FAILED", `${a.file}: ${why}`);
    }
    Object.assign(result, { alsoRestored: plan.alsoRestored, refused: plan.refused, skipped: plan.skipped, conflicts: plan.conflicts });
    if (result.conflicts.length > 0) {
      return finish("RESTORE_EXISTS", `${entries(result.conflicts.length)} exist in ${root} already (${listNotes(result.conflicts, 3)}); nothing was restored (--force overwrites files)`);
    }

    // 3. files, directories and hard links, in archive order; then links, then directories' metadata
    // what the check left (its pieces of tar stream) is collected before the write pass starts
    // its own thread and pieces: left to the collector, both were held at once at the peak
    Bun.gc(true);
    opts.beforeWriting?.(root);
    rootFd = at.openRoot(root);
    extractor = new Extractor(at, rootFd, root, plan);
    const cut = await extract(fd, a, opts, extractor, unchanged);
    // a signal that came while the writers finished what they had been sent stops it here
    opts.signal?.throwIfAborted();
    const stopped = cut ?? lastOfAll(extractor, survey, plan, root, opts);
    result.restored = extractor.restored;
    result.bytes = extractor.bytes;
    result.failed = extractor.failed;
    result.clashes = [...plan.clashNotes, ...extractor.clashed];
    result.refused = [...plan.refused, ...extractor.refused];
    if (stopped) return finish(stopped.name, stopped.message);
    return outcome(result, `${a.file} into ${root} in ${formatDuration(performance.now() - started)}`, opts, finish);
  } finally {
    extractor?.close();
    if (rootFd >= 0) at.close(rootFd);
    log?.close();
    closeSource(fd);
  }
}

/** How a later pass tells that the archive is the one the first checked; the digests it need not compute again. */
interface Unchanged {
  hashed: PassOptions["hashed"];
  /** A stream's later passes hash it as the check did: the SHA-256 alone when that sufficed. */
  sha256Only: boolean;
  by: (pass: PassResult) => boolean;
  /** The file's stamp is still the one taken before the check (always true of a stream). */
  still: () => boolean;
}

/**
 * A file is told unchanged by its stamp, taken before the first pass (a write since moves its
 * ctime) and by the lengths read: hashing it again would double the cost of a restore. A
 * stream, which has no stamp, is hashed by every pass.
 */
function sameAsChecked(src: ArchiveSource, stamp: string | undefined, first: PassResult): Unchanged {
  const same = (p: PassResult) => p.size === first.size && p.tarBytes === first.tarBytes;
  const sha256Only = first.md5 === undefined;
  if (stamp === undefined) {
    const hashedAlike = (p: PassResult) => p.md5 === first.md5 && p.sha256 === first.sha256;
    return { hashed: undefined, sha256Only, by: (p) => same(p) && hashedAlike(p), still: () => true };
  }
  const still = () => stampOf(src) === stamp;
  return { hashed: { md5: first.md5, sha256: first.sha256 }, sha256Only, by: (p) => same(p) && still(), still };
}

/**
 * Every entry to the plan: those the check kept, or for a stream (no log) read again; false
 * when that read does not read as the first did.
 */
async function planAll(
  fd: ArchiveSource,
  a: HeldArchive,
  opts: RestoreOptions,
  plan: Planner,
  log: ListingLog | undefined,
  unchanged: Unchanged,
): Promise<boolean> {
  if (log) {
    for (const l of log.replay()) plan.take(l);
    return true;
  }
  const second = await readPass(fd, "planning", opts, a.bytes, { onEntry: (e) => plan.take(e), sha256Only: unchanged.sha256Only }).catch(changed(a));
  return unchanged.by(second);
}

/** A later read that no longer reads as the first did: the archive changed meanwhile. */
function changed(a: HeldArchive): (e: unknown) => never {
  return (e) => {
    if (!(e instanceof ArchiveDamage)) throw e;
    throw new ShootError("VERIFY_FAILED", `${a.file}: the archive changed while it was being read (${e.message}); nothing was restored`);
  };
}

/** The write pass, the links and the directories' metadata; a stop (the file system full, the archive changed) as a code and message. */
async function extract(
  fd: ArchiveSource,
  a: HeldArchive,
  opts: RestoreOptions,
  x: Extractor,
  unchanged: Unchanged,
): Promise<{ name: CodeName; message: string } | undefined> {
  try {
    const writing = {
      onEntry: (e: TarListing) => x.entry(e),
      onData: (piece: Uint8Array) => x.data(piece),
      hashed: unchanged.hashed,
      sha256Only: unchanged.sha256Only,
      // on a thread of its own, as the check: its pieces' buffers are used again, where a stream
      // decompressor here makes a new one for each (the garbage of a million small files)
      worker: true,
    };
    const third = await readPass(fd, "restoring", opts, a.bytes, writing);
    await x.settle();
    if (!unchanged.by(third)) x.failed.push({ name: a.file, why: "the archive changed while it was being restored" });
  } catch (thrown) {
    // what the writers were sent is made first; a full file system one of them found says where
    const e = await x.settle().then(() => thrown, (full: unknown) => full);
    if (e instanceof ShootError && e.code === code("RESTORE_NO_SPACE")) return { name: "RESTORE_NO_SPACE", message: e.message };
    if (!(e instanceof ArchiveDamage) && !(e instanceof ShootError)) throw e;
    return { name: "RESTORE_FAILED", message: `restoring ${a.file} failed part way: ${errorMessage(e)}; what was written so far stays` };
  }
  return undefined;
}

/** Links, checked on the disk as restored, then directories' metadata; a full file system stops it. */
function lastOfAll(x: Extractor, survey: Survey, plan: Planner, root: string, opts: RestoreOptions): { name: CodeName; message: string } | undefined {
  const linkOnDisk = (k: string): string | undefined => {
    const abs = path.join(root, k);
    return fs.lstatSync(abs, { throwIfNoEntry: false })?.isSymbolicLink() ? fs.readlinkSync(abs) : undefined;
  };
  try {
    // a link that cannot be followed on the disk (a path too long to look at) counts as pointing out
    const inside = (parts: readonly string[], target: string) => {
      try {
        return linkStaysInside(parts, target, root === "/", linkOnDisk);
      } catch {
        return false;
      }
    };
    x.links(survey.symlinks, opts.allowOutsideLinks === true, inside);
    x.finishDirs(plan.dirs);
  } catch (e) {
    if (e instanceof ShootError && e.code === code("RESTORE_NO_SPACE")) return { name: "RESTORE_NO_SPACE", message: e.message };
    throw e;
  }
  return undefined;
}

/** The code that says how it went: the worst of what was not made, and every kind of it in the message. */
function outcome(result: RestoreResult, where: string, opts: RestoreOptions, finish: (name: CodeName | "OK", message: string) => RestoreResult): RestoreResult {
  const what = `restored ${entries(result.restored)} (${formatBytes(result.bytes)}) from ${where}`;
  const also: string[] = [];
  if (result.failed.length) also.push(`${entries(result.failed.length)} could not be written: ${listNotes(result.failed)}`);
  if (result.refused.length) {
    const hint = result.refused.some((r) => r.why.includes("points outside")) && !opts.allowOutsideLinks ? " (--allow-outside-links creates links that point out, after everything else)" : "";
    also.push(`refused ${entries(result.refused.length)} that would land, point or write outside it: ${listNotes(result.refused)}${hint}`);
  }
  if (result.clashes.length) also.push(`made ${entries(result.clashes.length)} as neither of the two kinds the archive gives their name: ${listNotes(result.clashes)}`);
  if (result.skipped.length) also.push(`left out ${entries(result.skipped.length)} shoot does not restore: ${listNotes(result.skipped)}`);
  const name: CodeName | "OK" =
    result.failed.length ? "RESTORE_FAILED"
    : result.refused.length ? "RESTORE_UNSAFE"
    : result.clashes.length ? "RESTORE_CONFLICT"
    : result.skipped.length ? "ARCHIVE_UNSUPPORTED"
    : "OK";
  return finish(name, also.length ? `${what}; ${also.join("; ")}` : what);
}
