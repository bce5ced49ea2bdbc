/**
 * What an incremental archive holds, decided from two file lists in walk order: the walk's
 * and the base archive's (scan.ts). One pass over both, a merge as in the unchanged check:
 *
 * - every directory is archived, with its dumpdir (archive/incremental.ts): the names in it,
 *   each flagged `D` (a directory), `Y` (archived here) or `N` (as in the base);
 * - any other entry is archived when its line differs from the base's, or the base has none.
 *   A line holds mode, owner, size, mtime, ctime, inode and link target, so a mode-only or
 *   owner-only change (which moves ctime) counts, as does a file replaced by another. Names
 *   that share an inode share those fields, so when one of them changes (a new link changes
 *   the link count, and so ctime) all are archived together.
 *
 * A directory's dumpdir is known only once the walk has passed everything below it, but its
 * record goes before its content in the archive. So the dumpdirs go to a side file as each
 * directory ends, and the archive pass reads each back by the directory's number. What is
 * held while the pass runs: the dumpdirs of the directories around the current entry, one
 * byte per entry and two numbers per directory.
 */
import fs from "node:fs";
import { dumpdirRecord, finishDumpdir } from "../archive/incremental.ts";
import { readLines } from "../state/fsutil.ts";
import { lineKey, nameOfKey, walkOrder } from "./scan.ts";

/** Dumpdirs by directory number (walk order), kept in a side file until the archive is written. */
export class DumpdirStore {
  private readonly fd: number;
  private readonly offsets: number[] = [];
  private readonly lengths: number[] = [];
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private size = 0;
  /** The dumpdir of "/" when it is a source: the walk has no entry for it. */
  root: string | undefined;

  constructor(readonly file: string) {
    fs.rmSync(file, { force: true }); // a killed run's
    this.fd = fs.openSync(file, "wx+", 0o600);
  }

  put(dir: number, dumpdir: string | undefined): void {
    if (dumpdir === undefined) return;
    const b = Buffer.from(dumpdir, "utf8");
    this.offsets[dir] = this.size;
    this.lengths[dir] = b.length;
    this.size += b.length;
    this.pending.push(b);
    this.pendingBytes += b.length;
    if (this.pendingBytes >= 1 << 20) this.flush();
  }

  flush(): void {
    if (this.pending.length === 0) return;
    const b = Buffer.concat(this.pending);
    for (let at = 0; at < b.length;) at += fs.writeSync(this.fd, b, at, b.length - at);
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** The dumpdir of directory number `dir`; undefined for one written without (see markChanges). */
  get(dir: number): string | undefined {
    const offset = this.offsets[dir];
    if (offset === undefined) return undefined;
    const b = Buffer.allocUnsafe(this.lengths[dir]!);
    for (let at = 0; at < b.length;) {
      const n = fs.readSync(this.fd, b, at, b.length - at, offset + at);
      if (n === 0) throw new Error(`${this.file} ends before the dumpdir of directory ${dir}`);
      at += n;
    }
    return b.toString("utf8");
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } finally {
      fs.rmSync(this.file, { force: true });
    }
  }
}

export interface ChangeSet {
  /** Per line of the walk's list: 1 when the archive holds the entry. */
  marks: Uint8Array;
  /** Entries the archive holds, directories included. */
  archived: number;
  /** Of those, the ones that are not directories. */
  changed: number;
  /** Bytes of file content among them (counted only against a base). */
  bytes: number;
  dirs: number;
  dumpdirs: DumpdirStore;
}

export interface MarkOptions {
  /** The walk's list (entry lines, no header) and how many entries it holds. */
  walkList: string;
  entries: number;
  /** The base archive's list lines after its header, in walk order; none for a full archive (everything archived). */
  base?: Iterator<string>;
  dumpdirs: DumpdirStore;
  /**
   * Directories written without a dumpdir: those the walk could not list or did not walk into
   * (a mount point). Given one, GNU tar would delete what earlier archives restored in them.
   */
  withoutDumpdir: ReadonlySet<string>;
  /** "/" is a source: its names get a dumpdir of their own (`dumpdirs.root`). */
  rootIsSource: boolean;
}

interface Frame {
  name: string;
  dir: number;
  records: string[];
}

function parentOf(name: string): string {
  const i = name.lastIndexOf("/");
  return i < 0 ? "" : name.slice(0, i);
}

/** The type field of a list line whose key (the name as JSON) is `key`. */
function typeOf(line: string, key: string): string {
  const from = key.length + 3; // `[` key `,"`
  return line.slice(from, line.indexOf('"', from));
}

/** Mark what the archive holds and store every directory's dumpdir (see the top of this file). */
export function markChanges(o: MarkOptions): ChangeSet {
  const out: ChangeSet = { marks: new Uint8Array(o.entries), archived: 0, changed: 0, bytes: 0, dirs: 0, dumpdirs: o.dumpdirs };
  const stack: Frame[] = o.rootIsSource ? [{ name: "", dir: -1, records: [] }] : [];
  const close = (f: Frame) => {
    const dumpdir = o.withoutDumpdir.has(f.name) ? undefined : finishDumpdir(f.records.join(""));
    if (f.dir < 0) o.dumpdirs.root = dumpdir;
    else o.dumpdirs.put(f.dir, dumpdir);
  };
  let baseLine: string | undefined;
  let baseKey: string | undefined;
  const advance = () => {
    const r = o.base?.next();
    baseLine = r && !r.done ? r.value : undefined;
    while (baseLine === "") baseLine = o.base?.next().value as string | undefined;
    baseKey = baseLine === undefined ? undefined : lineKey(baseLine);
    if (baseLine !== undefined && baseKey === undefined) throw new Error(`the base archive's file list holds a line that is not an entry: ${baseLine.slice(0, 80)}`);
  };
  advance();
  let i = 0;
  for (const line of readLines(o.walkList)) {
    if (line === "") continue;
    if (i >= o.entries) throw new Error(`the walk's list holds more than the ${o.entries} entries the walk counted`);
    const key = lineKey(line);
    if (key === undefined) throw new Error(`the walk's list holds a line that is not an entry: ${line.slice(0, 80)}`);
    const name = nameOfKey(key);
    const isDir = typeOf(line, key) === "dir";
    let changed = true;
    if (o.base) {
      while (baseKey !== undefined && baseKey !== key && walkOrder(nameOfKey(baseKey), name) < 0) advance();
      if (baseKey === key) {
        changed = baseLine !== line;
        advance();
      }
    }
    const archived = isDir || changed;
    out.marks[i++] = archived ? 1 : 0;
    if (archived) out.archived++;
    if (isDir) out.dirs++;
    else if (changed) {
      out.changed++;
      if (o.base) out.bytes += (JSON.parse(line) as number[])[5]!;
    }
    const parent = parentOf(name);
    while (stack.length > 0 && stack.at(-1)!.name !== parent) close(stack.pop()!);
    const leaf = parent === "" ? name : name.slice(parent.length + 1);
    stack.at(-1)?.records.push(dumpdirRecord(isDir ? "D" : changed ? "Y" : "N", leaf));
    if (isDir) stack.push({ name, dir: out.dirs - 1, records: [] });
  }
  while (stack.length > 0) close(stack.pop()!);
  if (i !== o.entries) throw new Error(`the walk's list holds ${i} entries, the walk counted ${o.entries}`);
  o.dumpdirs.flush();
  return out;
}
