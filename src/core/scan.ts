/**
 * Walk the sources into a sorted list of entries (what the archive will hold), and compare it
 * with the file list recorded for the last archive: new, changed and deleted entries, changed
 * metadata. ctime is part of the comparison, so a file rewritten with the same size and its
 * mtime set back still counts as changed.
 */
import fs from "node:fs";
import path from "node:path";
import type { ArchiveEntry, EntryType } from "./archive.ts";
import type { Matcher } from "./exclude.ts";

export interface ScanEntry extends ArchiveEntry {
  ctimeMs: number;
  ino: number;
  /** The archive name as a JSON string: the key of the file list, built once per entry. */
  nameJson: string;
  /** dev:ino of a file with more than one link, when the walk leaves hard links to its caller. */
  linkKey?: string;
}

export type ScanWarningCode = "FILE_VANISHED" | "FILE_UNREADABLE" | "SPECIAL_SKIPPED";

export interface ScanWarning {
  code: ScanWarningCode;
  path: string;
  message: string;
}

export interface ScanResult {
  entries: ScanEntry[];
  /** Bytes of file content (hard links counted once). */
  bytes: number;
  warnings: ScanWarning[];
}

export interface ScanOptions {
  matcher: Matcher;
  /** Absolute paths never walked into (the backup directory itself, for one). */
  skip: readonly string[];
  owners?: OwnerNames;
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

/** Sources with those inside another source removed (they would be archived twice). */
export function normaliseSources(sources: readonly string[]): string[] {
  const sorted = [...new Set(sources.map((s) => path.resolve(s)))].sort();
  return sorted.filter((s) => !sorted.some((o) => o !== s && (o === "/" || s.startsWith(`${o}/`))));
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
   */
  constructor(
    private readonly matcher: Matcher,
    skip: readonly string[],
    private readonly owners?: OwnerNames,
    private readonly links?: Map<string, string>,
  ) {
    this.skip = new Set(skip.map((s) => path.resolve(s)));
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
  private kind(abs: string, st: fs.Stats, isTop: boolean): EntryType | undefined {
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

  entry(abs: string, st: fs.Stats, isTop: boolean, nameJson: string): ScanEntry | undefined {
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

  /** Each entry directly inside `dir`, in name order, to `take`. */
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
   * `linked`, since their line depends on the walk before them.
   */
  lines(dir: string, dirJson: string, out: LineSink): void {
    // the loop of eachChild written out: a callback per entry cost 6 % of the check
    const listing = this.listing(dir, dirJson);
    if (!listing) return;
    const { prefix, jsonPrefix } = listing;
    for (const n of listing.names) {
      const abs = prefix + n;
      const st = this.lstat(abs);
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
        if (type === "dir") this.lines(abs, nameJson, out);
      }
    }
  }

  private eachChild(dir: string, dirJson: string, visit: (abs: string, st: fs.Stats, nameJson: string) => void): void {
    const listing = this.listing(dir, dirJson);
    if (!listing) return;
    for (const n of listing.names) {
      const abs = listing.prefix + n;
      const st = this.lstat(abs);
      if (st) visit(abs, st, childJson(listing.jsonPrefix, n, abs));
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

export function scanSources(sources: readonly string[], opts: ScanOptions): ScanResult {
  const entries: ScanEntry[] = [];
  const walker = new TreeWalker(opts.matcher, opts.skip, opts.owners ?? systemOwners(), new Map());
  let bytes = 0;
  const take = (e: ScanEntry): void => {
    if (e.name !== "") entries.push(e);
    if (e.type === "file") bytes += e.size;
    else if (e.type === "dir") walker.children(e.source, e.nameJson, take);
  };
  for (const src of normaliseSources(sources)) {
    const e = walker.source(src);
    if (e) take(e);
  }
  return { entries, bytes, warnings: walker.warnings };
}

function describeSpecial(st: fs.Stats): string {
  if (st.isFIFO()) return "FIFO";
  if (st.isSocket()) return "socket";
  if (st.isCharacterDevice()) return "character device";
  if (st.isBlockDevice()) return "block device";
  return "special file";
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

/** The file list, a line at a time: written as it is made, a large tree's list is never in memory whole. */
export function* listLines(archive: string, scan: ScanResult, sums: { size: number; md5: string; sha256: string }): Generator<string> {
  const header: ListHeader = { format: LIST_FORMAT, v: LIST_VERSION, archive, entries: scan.entries.length, bytes: scan.bytes, ...sums };
  yield `${JSON.stringify(header)}\n`;
  for (const e of scan.entries) yield `${entryLine(e)}\n`;
}

export function renderList(archive: string, scan: ScanResult, sums: { size: number; md5: string; sha256: string }): string {
  return [...listLines(archive, scan, sums)].join("");
}

export interface RecordedList {
  header: ListHeader;
  /** The entry's name as JSON → the entry's line, compared as a whole. */
  lines: Map<string, string>;
}

export function parseList(text: string): RecordedList {
  const lines = text.split("\n");
  const header = JSON.parse(lines[0]!) as ListHeader;
  if (header.format !== LIST_FORMAT || header.v !== LIST_VERSION) throw new Error(`not a ${LIST_FORMAT} v${LIST_VERSION} file list`);
  const map = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]!;
    if (l === "") continue;
    const end = l.charCodeAt(0) === 91 && l.charCodeAt(1) === 34 ? jsonStringEnd(l, 1) : -1;
    if (end < 0) throw new Error(`file list line ${i + 1} is not an entry`);
    map.set(l.slice(1, end), l);
  }
  if (map.size !== header.entries) throw new Error(`file list holds ${map.size} entries, its header says ${header.entries} (truncated?)`);
  return { header, lines: map };
}

/** The header of a recorded list and where its first entry line starts (in characters of a string, bytes of bytes); undefined for anything else. */
export function listStart(text: string | Uint8Array): { header: ListHeader; pos: number } | undefined {
  const end = typeof text === "string" ? text.indexOf("\n") : text.indexOf(10);
  if (end < 0) return undefined;
  try {
    const first = typeof text === "string" ? text.slice(0, end) : new TextDecoder().decode(text.subarray(0, end));
    const header = JSON.parse(first) as ListHeader;
    return header.format === LIST_FORMAT && header.v === LIST_VERSION ? { header, pos: end + 1 } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when the scan produces exactly the lines of the recorded list, in order: the common
 * "nothing changed" case, decided in one pass without building a map of the list.
 */
export function sameAsList(scan: ScanResult, text: string): boolean {
  const start = listStart(text);
  if (!start || start.header.entries !== scan.entries.length) return false;
  let pos = start.pos;
  for (const e of scan.entries) {
    const line = entryLine(e);
    if (!text.startsWith(line, pos) || text.charCodeAt(pos + line.length) !== 10) return false;
    pos += line.length + 1;
  }
  return pos === text.length;
}

export interface Changes {
  added: number;
  changed: number;
  removed: number;
  /** A few names of each kind, for the report. */
  examples: string[];
}

export function compareWithList(scan: ScanResult, list: RecordedList): Changes {
  const ch: Changes = { added: 0, changed: 0, removed: 0, examples: [] };
  const note = (what: string, name: string) => {
    if (ch.examples.length < 10) ch.examples.push(`${what} /${name}`);
  };
  let matched = 0;
  for (const e of scan.entries) {
    const key = e.nameJson;
    const prev = list.lines.get(key);
    if (prev === undefined) {
      ch.added++;
      note("new", e.name);
    } else {
      matched++;
      if (prev !== entryLine(e)) {
        ch.changed++;
        note("changed", e.name);
      }
    }
  }
  ch.removed = list.lines.size - matched;
  if (ch.removed > 0 && ch.examples.length < 10) {
    const now = new Set(scan.entries.map((e) => e.nameJson));
    for (const key of list.lines.keys()) if (!now.has(key)) note("deleted", JSON.parse(key) as string);
  }
  return ch;
}

export function hasChanges(c: Changes): boolean {
  return c.added + c.changed + c.removed > 0;
}
