/**
 * Walk the sources, entry by entry in a fixed order (what the archive will hold), and compare
 * the walk with the file list recorded for the last archive: new, changed and deleted entries,
 * changed metadata. ctime is part of the comparison, so a file rewritten with the same size and
 * its mtime set back still counts as changed. Nothing here holds the whole tree: entries go to
 * a callback as they are found, and lists are read and written a line at a time, so memory does
 * not grow with the number of files.
 */
import fs from "node:fs";
import path from "node:path";
import type { ArchiveEntry, EntryType } from "../archive/writer.ts";
import type { Matcher } from "./exclude.ts";
import { listFirstLine, listLines } from "../state/list-file.ts";
import { devNumber, openStatx, type DirStatter, type StatFields } from "./statx.ts";

export interface ScanEntry extends ArchiveEntry {
  ctimeMs: number;
  ino: number;
  /** The archive name as a JSON string: the key of the file list, built once per entry. */
  nameJson: string;
  /** dev:ino of a file with more than one link, when the walk leaves hard links to its caller. */
  linkKey?: string;
  /** The device the entry is on: a directory on another device than its parent is a mount point. */
  dev: number;
}

export type ScanWarningCode = "FILE_VANISHED" | "FILE_UNREADABLE" | "SPECIAL_SKIPPED" | "MOUNT_SKIPPED";

export interface ScanWarning {
  code: ScanWarningCode;
  path: string;
  message: string;
}

export interface ScanSummary {
  entries: number;
  /** Bytes of file content (hard links counted once). */
  bytes: number;
  warnings: ScanWarning[];
}

export interface ScanOptions {
  matcher: Matcher;
  /** Absolute paths never walked into (the backup directory itself, for one). */
  skip: readonly string[];
  owners?: OwnerNames;
  /** Do not descend into directories where another file system is mounted (`one_file_system`). */
  oneFileSystem?: boolean;
}

export interface OwnerNames {
  user(uid: number): string | undefined;
  group(gid: number): string | undefined;
}

function readIdFile(file: string): Map<number, string> {
  const m = new Map<number, string>();
  try {
    for (const line of fs.readFileSync(file, "utf8").split("\n")) {
      const f = line.split(":");
      if (f.length >= 3 && /^\d+$/.test(f[2]!) && !m.has(Number(f[2]))) m.set(Number(f[2]), f[0]!);
    }
  } catch {
    // no passwd/group file (a minimal container): numeric ids only
  }
  return m;
}

/** Owner names from /etc/passwd and /etc/group, as tar records them (uname/gname). */
export function systemOwners(): OwnerNames {
  let users: Map<number, string> | undefined;
  let groups: Map<number, string> | undefined;
  return {
    user: (uid) => (users ??= readIdFile("/etc/passwd")).get(uid),
    group: (gid) => (groups ??= readIdFile("/etc/group")).get(gid),
  };
}

/**
 * File systems whose files are the kernel's view of itself, not data: never walked into, wherever
 * they are mounted (statfs f_type → name, from linux/magic.h). /proc alone would end a backup of
 * "/" on most kernels: /proc/kcore gives its size as the whole address space (128 TiB), which no
 * free-space check passes. autofs is here too: walking into it mounts every file system it serves.
 */
const PSEUDO_FILE_SYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
  [0x1cd1, "devpts"],
  [0x27e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0x73636673, "securityfs"],
  [0x64626720, "debugfs"],
  [0x74726163, "tracefs"],
  [0x6165676c, "pstore"],
  [0xcafe4a11, "bpf"],
  [0x62656570, "configfs"],
  [0x65735543, "fusectl"],
  [0x19800202, "mqueue"],
  [0x42494e4d, "binfmt_misc"],
  [0xde5e81e4, "efivarfs"],
  [0x958458f6, "hugetlbfs"],
  [0x6e736673, "nsfs"],
  [0x67596969, "rpc_pipefs"],
  [0xf97cff8c, "selinuxfs"],
  [0x43415d53, "smackfs"],
  [0x0187, "autofs"],
]);

const TMPFS_MAGIC = 0x01021994;

/**
 * The name of the pseudo file system `dir` (on device `dev`) is on, or undefined for any other
 * (and off Linux, where the numbers differ).
 */
export function pseudoFileSystem(dir: string, dev: number): string | undefined {
  if (process.platform !== "linux") return undefined;
  let type: number;
  try {
    type = fs.statfsSync(dir).type >>> 0;
  } catch {
    return undefined; // gone or unreadable: listing it reports that
  }
  // devtmpfs (/dev) gives statfs tmpfs's number; its device nodes are never archived, and each
  // would be a warning on every run. Only the mount table tells the two apart.
  if (type === TMPFS_MAGIC) return devtmpfsDevices().has(dev) ? "devtmpfs" : undefined;
  return PSEUDO_FILE_SYSTEMS.get(type);
}

let devtmpfs: Set<number> | undefined;

/** The devices devtmpfs is mounted from, read from this process's mount table once, when a tmpfs mount point is first met. */
function devtmpfsDevices(): Set<number> {
  if (devtmpfs) return devtmpfs;
  let table = "";
  try {
    table = fs.readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    // without /proc a devtmpfs is walked like the tmpfs it says it is
  }
  return (devtmpfs = devicesOfType(table, "devtmpfs"));
}

/**
 * The devices (as `st_dev` holds them) of the mounts of file system `type` in a mountinfo
 * table: "ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE ...".
 */
export function devicesOfType(mountinfo: string, type: string): Set<number> {
  const out = new Set<number>();
  for (const line of mountinfo.split("\n")) {
    const f = line.split(" ");
    const sep = f.indexOf("-", 6);
    const dev = /^(\d+):(\d+)$/.exec(f[2] ?? "");
    if (sep > 0 && f[sep + 1] === type && dev) out.add(devNumber(Number(dev[1]), Number(dev[2])));
  }
  return out;
}

// the file type bits of st_mode (POSIX: the same values on Linux and macOS); one field read
// is cheaper than up to three isX() calls, once per entry of every walk
const S_IFMT = 0o170000;
const TYPE_BITS: ReadonlyMap<number, EntryType> = new Map([
  [0o100000, "file"],
  [0o040000, "dir"],
  [0o120000, "symlink"],
]);

/** A name JSON would write as it is: printable ASCII without quote or backslash. */
const PLAIN_NAME = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function archiveNameOf(abs: string): string {
  return abs.replace(/^\/+/, "");
}

/**
 * Sources with those inside another source removed (they would be archived twice), in walk
 * order: the whole walk is then in one order, which lets two walks be compared in one pass.
 */
export function normaliseSources(sources: readonly string[]): string[] {
  const sorted = [...new Set(sources.map((s) => path.resolve(s)))].sort((a, b) => walkOrder(archiveNameOf(a), archiveNameOf(b)));
  return sorted.filter((s) => !sorted.some((o) => o !== s && (o === "/" || s.startsWith(`${o}/`))));
}

/**
 * The order in which the walk meets two archive names: a directory before what it holds, and
 * the names in one directory in the order of `Array.prototype.sort` (UTF-16 code units), the
 * way each directory's listing is sorted.
 */
export function walkOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  // where the names part, the end of a name sorts first, then the end of a component ("/")
  const rank = (s: string) => (i === s.length ? -2 : s.charCodeAt(i) === 47 ? -1 : s.charCodeAt(i));
  return rank(a) - rank(b);
}

/**
 * One step of a walk: the entry for a path (or nothing, when it is skipped) and the sorted
 * children of a directory. The caller decides whether to descend, so the same rules serve
 * the whole scan and the parallel unchanged check (scan-parallel.ts).
 */
export class TreeWalker {
  readonly warnings: ScanWarning[] = [];
  private readonly skip: Set<string>;

  /**
   * @param links hard-link bookkeeping (dev:ino → first name); without it every file is
   *   returned as a file, and those with more than one link carry `linkKey` for the caller
   * @param owners without it, uname and gname are left out (the file list does not hold them)
   * @param statter stats a directory's children by name inside it (statx.ts); without it,
   *   each child's path is given to lstat
   */
  constructor(
    private readonly matcher: Matcher,
    skip: readonly string[],
    private readonly owners?: OwnerNames,
    private readonly links?: Map<string, string>,
    private readonly statter?: DirStatter,
    private readonly oneFileSystem = false,
  ) {
    this.skip = new Set(skip.map((s) => path.resolve(s)));
  }

  /**
   * Whether the walk goes into directory `abs`, on device `dev`, found in a directory on
   * `parentDev` (undefined for a source itself). Only a change of device costs anything: a
   * mount point is looked at with statfs, and left as an empty directory in the archive when
   * it holds a pseudo file system, or any other file system with `one_file_system`.
   */
  descends(abs: string, dev: number, parentDev: number | undefined): boolean {
    if (dev === parentDev) return true;
    const pseudo = pseudoFileSystem(abs, dev);
    if (pseudo !== undefined) {
      this.warn("MOUNT_SKIPPED", abs, `${abs}: ${pseudo} file system, not walked into (archived as an empty directory)`);
      return false;
    }
    if (this.oneFileSystem && parentDev !== undefined) {
      this.warn("MOUNT_SKIPPED", abs, `${abs}: another file system is mounted here, not walked into (one_file_system; archived as an empty directory)`);
      return false;
    }
    return true;
  }

  /** True when children are looked up with statx inside their directory, not by path. */
  get fast(): boolean {
    return this.statter !== undefined;
  }

  private warn(code: ScanWarningCode, p: string, message: string): void {
    this.warnings.push({ code, path: p, message });
  }

  private warnErr(abs: string, err: unknown): void {
    const c = (err as { code?: string }).code;
    if (c === "ENOENT") this.warn("FILE_VANISHED", abs, `${abs}: vanished during the scan`);
    else this.warn("FILE_UNREADABLE", abs, `${abs}: ${c ?? ""} ${(err as Error).message}`.trim());
  }

  /** The entry a source itself gives (lstat failures are the caller's: a missing source is an error). */
  source(abs: string): ScanEntry | undefined {
    return this.entry(abs, fs.lstatSync(abs), true, JSON.stringify(archiveNameOf(abs)));
  }

  /** What the entry is, or undefined when the walk leaves it out (with a warning where one is due). */
  private kind(abs: string, st: StatFields, isTop: boolean): EntryType | undefined {
    const type = TYPE_BITS.get(st.mode & S_IFMT);
    if (type === undefined) {
      this.warn("SPECIAL_SKIPPED", abs, `${abs}: ${describeSpecial(st)} skipped`);
      return undefined;
    }
    // a source itself is never matched against the exclusions, but may be the backup directory
    if (isTop ? type === "dir" && this.skip.has(abs) : this.excludedEntry(abs, type)) return undefined;
    return type;
  }

  /** Left out by an exclusion pattern, or the backup directory itself. */
  private excludedEntry(abs: string, type: EntryType): boolean {
    return this.matcher.excluded(abs, type === "dir") || (type === "dir" && this.skip.has(abs));
  }

  private readLink(abs: string): string | undefined {
    try {
      return fs.readlinkSync(abs);
    } catch (err) {
      this.warnErr(abs, err);
      return undefined;
    }
  }

  entry(abs: string, st: StatFields, isTop: boolean, nameJson: string): ScanEntry | undefined {
    const type = this.kind(abs, st, isTop);
    if (type === undefined) return undefined;
    const name = archiveNameOf(abs);
    const e: ScanEntry = {
      source: abs,
      name,
      type,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      uname: this.owners?.user(st.uid),
      gname: this.owners?.group(st.gid),
      size: type === "file" ? st.size : 0,
      // the fraction is kept: the archive writes it as the pax mtime
      mtimeMs: st.mtimeMs,
      ctimeMs: st.ctimeMs,
      ino: st.ino,
      nameJson,
      dev: st.dev,
    };
    if (type === "symlink") {
      e.linkTarget = this.readLink(abs);
      if (e.linkTarget === undefined) return undefined;
    } else if (type === "file" && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      if (!this.links) e.linkKey = key;
      else {
        const first = this.links.get(key);
        if (first !== undefined) {
          e.type = "hardlink";
          e.linkTarget = first;
          e.size = 0;
        } else this.links.set(key, name);
      }
    }
    return e;
  }

  /** Each entry directly inside `dir`, in name order, to `take` (`descends` decides about going further). */
  children(dir: string, dirJson: string, take: (e: ScanEntry) => void): void {
    this.eachChild(dir, dirJson, (abs, st, nameJson) => {
      const e = this.entry(abs, st, false, nameJson);
      if (e) take(e);
    });
  }

  /**
   * The file-list line of every entry below `dir`, depth first, made straight from lstat
   * without an entry object: the unchanged check's hot path, where building 100k objects
   * cost as much as the lstat calls themselves. Files with more than one link go to
   * `linked`, since their line depends on the walk before them. `dev` is the device of `dir`.
   */
  lines(dir: string, dirJson: string, out: LineSink, dev: number): void {
    // the loop of eachChild written out: a callback per entry cost 6 % of the check
    const listing = this.listing(dir, dirJson);
    if (!listing) return;
    const { names, prefix, jsonPrefix } = listing;
    const statOf = this.statter?.children(dir, names);
    for (let i = 0; i < names.length; i++) {
      const n = names[i]!;
      const abs = prefix + n;
      const st = statOf?.(i) ?? this.lstat(abs);
      if (!st) continue;
      const nameJson = childJson(jsonPrefix, n, abs);
      const type = this.kind(abs, st, false);
      if (type === undefined) continue;
      const mode = st.mode;
      let link: string | undefined;
      if (type === "symlink" && (link = this.readLink(abs)) === undefined) continue;
      if (type === "file") {
        const size = st.size;
        if (st.nlink > 1) {
          out.linked(`${st.dev}:${st.ino}`, archiveNameOf(abs), size, listLine(nameJson, type, mode & 0o7777, st.uid, st.gid, size, st.mtimeMs, st.ctimeMs, st.ino, undefined), listLine(nameJson, "hardlink", mode & 0o7777, st.uid, st.gid, 0, st.mtimeMs, st.ctimeMs, st.ino, ""));
        } else out.line(listLine(nameJson, type, mode & 0o7777, st.uid, st.gid, size, st.mtimeMs, st.ctimeMs, st.ino, undefined), size);
      } else {
        out.line(listLine(nameJson, type, mode & 0o7777, st.uid, st.gid, 0, st.mtimeMs, st.ctimeMs, st.ino, link), 0);
        if (type === "dir" && this.descends(abs, st.dev, dev)) this.lines(abs, nameJson, out, st.dev);
      }
    }
  }

  private eachChild(dir: string, dirJson: string, visit: (abs: string, st: StatFields, nameJson: string) => void): void {
    const listing = this.listing(dir, dirJson);
    if (!listing) return;
    const { names, prefix, jsonPrefix } = listing;
    const statOf = this.statter?.children(dir, names);
    for (let i = 0; i < names.length; i++) {
      const abs = prefix + names[i]!;
      const st = statOf?.(i) ?? this.lstat(abs);
      if (st) visit(abs, st, childJson(jsonPrefix, names[i]!, abs));
    }
  }

  /** The names in `dir`, sorted, with what each child's path and JSON name start with. */
  private listing(dir: string, dirJson: string): { names: string[]; prefix: string; jsonPrefix: string } | undefined {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch (err) {
      this.warnErr(dir, err);
      return undefined;
    }
    // the directory's part of each child's JSON name is escaped once, not once per child
    return dir === "/" ? { names, prefix: "/", jsonPrefix: '"' } : { names, prefix: `${dir}/`, jsonPrefix: `${dirJson.slice(0, -1)}/` };
  }

  private lstat(abs: string): fs.Stats | undefined {
    try {
      return fs.lstatSync(abs);
    } catch (err) {
      this.warnErr(abs, err);
      return undefined;
    }
  }
}

function childJson(jsonPrefix: string, name: string, abs: string): string {
  return PLAIN_NAME.test(name) ? `${jsonPrefix}${name}"` : JSON.stringify(archiveNameOf(abs));
}

/** Where TreeWalker.lines puts what it finds. */
export interface LineSink {
  /** One entry's whole line; `bytes` is its content size (0 but for files). */
  line(line: string, bytes: number): void;
  /** A file with more than one link: its line as the first name, and as a later one (`laterWithEmptyTarget` ends in `""]`). */
  linked(key: string, name: string, bytes: number, first: string, laterWithEmptyTarget: string): void;
}

/** Walk the sources in walk order, giving each entry to `visit` as it is found; hard links are settled on the way. */
export function scanSources(sources: readonly string[], opts: ScanOptions, visit: (e: ScanEntry) => void): ScanSummary {
  const walker = new TreeWalker(opts.matcher, opts.skip, opts.owners ?? systemOwners(), new Map(), openStatx(), opts.oneFileSystem);
  let entries = 0;
  let bytes = 0;
  const take = (e: ScanEntry, parentDev: number | undefined): void => {
    if (e.name !== "") {
      entries++;
      visit(e);
    }
    if (e.type === "file") bytes += e.size;
    else if (e.type === "dir" && walker.descends(e.source, e.dev, parentDev)) walker.children(e.source, e.nameJson, (c) => take(c, e.dev));
  };
  for (const src of normaliseSources(sources)) {
    const e = walker.source(src);
    if (e) take(e, undefined);
  }
  return { entries, bytes, warnings: walker.warnings };
}

const SPECIAL_KINDS: ReadonlyMap<number, string> = new Map([
  [0o010000, "FIFO"],
  [0o140000, "socket"],
  [0o020000, "character device"],
  [0o060000, "block device"],
]);

function describeSpecial(st: StatFields): string {
  return SPECIAL_KINDS.get(st.mode & S_IFMT) ?? "special file";
}

// ---- the file list recorded beside each archive -------------------------------------------

export const LIST_FORMAT = "shoot-list";
export const LIST_VERSION = 1;

export interface ListHeader {
  format: string;
  v: number;
  archive: string;
  entries: number;
  bytes: number;
  /** The archive this list describes: size and checksums, so an unchanged run can name it. */
  size?: number;
  md5?: string;
  sha256?: string;
  /** When the run made the archive (ISO 8601): what retention places it by. */
  made?: string;
  /** Database dumps streamed in after the files (not among the lines): entry name, size, SHA-256 of the dump. */
  dumps?: Array<{ name: string; size: number; sha256: string }>;
  /**
   * Written when incremental archives are on (docs/incremental.md): the archive's level (0 for
   * a full one), the archive it was made against (level > 0), and the sources it was made of
   * (archive names, a directory's with a trailing "/"): an incremental is only ever made of the
   * same sources as its base.
   */
  level?: number;
  base?: string;
  sources?: string[];
}

/**
 * One line per entry, a JSON array: [name, type, mode, uid, gid, size, mtimeUs, ctimeUs, ino,
 * linkTarget], times in whole microseconds. Built by hand rather than by JSON.stringify of an
 * array, and compared as a whole string: the unchanged check on a large tree is dominated by
 * this per-entry work (integers print several times faster than fractional numbers).
 */
export function entryLine(e: ScanEntry): string {
  return listLine(e.nameJson, e.type, e.mode, e.uid, e.gid, e.size, e.mtimeMs, e.ctimeMs, e.ino, e.linkTarget);
}

function listLine(nameJson: string, type: EntryType, mode: number, uid: number, gid: number, size: number, mtimeMs: number, ctimeMs: number, ino: number, link: string | undefined): string {
  return `[${nameJson},"${type}",${mode},${uid},${gid},${size},${Math.round(mtimeMs * 1000)},${Math.round(ctimeMs * 1000)},${ino},${link === undefined ? "null" : JSON.stringify(link)}]`;
}

/** Index just past the JSON string that starts at `from` (an opening quote). */
function jsonStringEnd(s: string, from: number): number {
  for (let i = from + 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 92) i++; // backslash: skip the escaped character
    else if (c === 34) return i + 1;
  }
  return -1;
}

/** The key of a list line: the entry's name as JSON, as it starts the line; undefined for a line that is not an entry. */
export function lineKey(line: string): string | undefined {
  const end = line.charCodeAt(0) === 91 && line.charCodeAt(1) === 34 ? jsonStringEnd(line, 1) : -1;
  return end < 0 ? undefined : line.slice(1, end);
}

/** The entry's name from its key (the name as JSON). */
export function nameOfKey(key: string): string {
  return key.includes("\\") ? (JSON.parse(key) as string) : key.slice(1, -1);
}

/**
 * The archive entry a list line describes, for writing the archive from the list the scan
 * wrote: the entries of a large tree are read back one at a time instead of held. The mtime
 * comes back in whole microseconds, as the list records it.
 */
export function entryFromLine(line: string, owners?: OwnerNames): ArchiveEntry {
  const [name, type, mode, uid, gid, size, mtimeUs, , , link] = JSON.parse(line) as [string, EntryType, number, number, number, number, number, number, number, string | null];
  return {
    source: `/${name}`,
    name,
    type,
    mode,
    uid,
    gid,
    uname: owners?.user(uid),
    gname: owners?.group(gid),
    size,
    mtimeMs: mtimeUs / 1000,
    mtimeNs: BigInt(mtimeUs) * 1000n,
    linkTarget: link ?? undefined,
  };
}

/**
 * A recorded list opened to be read a line at a time: its header, and its entry lines after it.
 * Throws when it cannot be read or does not start with a header (then nothing is left open).
 */
export function openList(file: string): { header: ListHeader; lines: Generator<string> } {
  const lines = listLines(file);
  try {
    const first = lines.next();
    const header = first.done ? undefined : parseListHeader(first.value);
    if (!header) throw new Error("it does not start with a file list header");
    return { header, lines };
  } catch (e) {
    lines.return(undefined);
    throw e;
  }
}

/** The header of a recorded list from its first line; undefined for anything else. */
export function parseListHeader(line: string): ListHeader | undefined {
  try {
    const header = JSON.parse(line) as ListHeader;
    return header?.format === LIST_FORMAT && header.v === LIST_VERSION ? header : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The header of the list `file` (compressed or plain), reading no more than its first line.
 * Throws, naming the file and what is wrong, when it cannot be opened (with `noFollow`, also
 * when a link stands in its place), its first member is damaged, or it starts with no header.
 */
export function listHeaderOf(file: string, noFollow = false): ListHeader {
  const line = listFirstLine(file, noFollow);
  const header = line === undefined ? undefined : parseListHeader(line);
  if (!header) throw new Error(`${file} does not start with a file list header of this version`);
  return header;
}

/** The header at the start of a list's bytes and where its first entry line starts; undefined for anything else. */
export function listStart(bytes: Uint8Array): { header: ListHeader; pos: number } | undefined {
  const end = bytes.indexOf(10);
  const header = end < 0 ? undefined : parseListHeader(new TextDecoder().decode(bytes.subarray(0, end)));
  return header && { header, pos: end + 1 };
}

export interface Changes {
  added: number;
  changed: number;
  removed: number;
  /**
   * Places where the archive differs from the last one: runs of entries, next to each other in
   * archive order, that are new, deleted or changed in what their tar header or content holds.
   * An entry whose ctime or inode alone changed (a chmod put back, a file copied back with its
   * times) is archived alike and starts no place; a directory renamed is a few places, not one
   * per file.
   */
  places: number;
  /** A few names of each kind, for the report. */
  examples: string[];
}

/**
 * Compares a walk with the recorded list in one pass, both in walk order, the way a merge
 * does: neither is held whole. A recorded line the walk has passed without meeting its name
 * was deleted; a walked name the list has passed was added.
 */
export class ListComparer {
  readonly changes: Changes = { added: 0, changed: 0, removed: 0, places: 0, examples: [] };
  private line: string | undefined;
  private key: string | undefined;
  /** The last entry met differs in the archive: a difference next to it is the same place. */
  private inPlace = false;

  /** @param recorded the list's entry lines, after its header */
  constructor(private readonly recorded: Iterator<string>) {
    this.advance();
  }

  /** The walk's next entry: its name, its key (the name as JSON) and its whole line. */
  next(name: string, key: string, line: string): void {
    while (this.key !== undefined && this.key !== key && walkOrder(nameOfKey(this.key), name) < 0) this.deleted(this.key);
    if (this.key === key) {
      if (this.line !== line) {
        this.changes.changed++;
        this.note("changed", name);
      }
      this.differs(this.line !== line && archivedForm(this.line!, key) !== archivedForm(line, key));
      this.advance();
    } else {
      this.changes.added++;
      this.note("new", name);
      this.differs(true);
    }
  }

  private differs(yes: boolean): void {
    if (yes && !this.inPlace) this.changes.places++;
    this.inPlace = yes;
  }

  /** What differs, once the walk has ended. */
  finish(): Changes {
    while (this.key !== undefined) this.deleted(this.key);
    return this.changes;
  }

  /** The recorded entry under `key` is not in the walk: count it and move on. */
  private deleted(key: string): void {
    this.note("deleted", nameOfKey(key));
    this.changes.removed++;
    this.differs(true);
    this.advance();
  }

  private note(what: string, name: string): void {
    if (this.changes.examples.length < 10) this.changes.examples.push(`${what} /${name}`);
  }

  private advance(): void {
    const r = this.recorded.next();
    this.line = r.done ? undefined : r.value;
    if (this.line === undefined) this.key = undefined;
    else if ((this.key = lineKey(this.line)) === undefined) throw new Error(`the recorded file list holds a line that is not an entry: ${this.line.slice(0, 80)}`);
  }
}

/**
 * A list line without its ctime and inode (the 7th and 8th fields after the name), which the
 * archive does not hold: two lines alike in this form archive alike.
 */
function archivedForm(line: string, key: string): string {
  let at = key.length + 1;
  const cut: number[] = [];
  for (let field = 1; field <= 9 && at >= 0; field++) {
    if (field === 7 || field === 9) cut.push(at);
    at = line.indexOf(",", at + 1);
  }
  return cut.length === 2 ? line.slice(0, cut[0]) + line.slice(cut[1]) : line;
}

export function hasChanges(c: Changes): boolean {
  return c.added + c.changed + c.removed > 0;
}
