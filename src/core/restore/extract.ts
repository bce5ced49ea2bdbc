/**
 * The write pass of a restore: the entries the plan chose, made on disk as they stream by,
 * through descriptors only (cursor.ts, at.ts). This thread walks the directories, holding each
 * open, and makes them; regular files are made on writer threads (writers.ts, file-maker.ts):
 * per file, one openat on the parent held open (O_CREAT|O_EXCL|O_NOFOLLOW), its content
 * written, then its owner, mode and time set on the open file. Symbolic links wait for the end
 * (links()), once every file is made, then are checked again on the disk as it is;
 * directories' modes and times come last of all (finishDirs()), deepest first, each on the
 * directory's own descriptor.
 *
 * A name the archive gives two kinds (a file and a directory, a directory and a link, …) is
 * made as neither, and nothing below it is made. A full file system stops the restore at once
 * (RESTORE_NO_SPACE): the file being written is removed, nothing after it is tried.
 */
import fs from "node:fs";
import { ShootError, errnoCode, errorMessage } from "../common/errors.ts";
import type { TarListing } from "../archive/tar.ts";
import type { At } from "./at.ts";
import { DirCursor } from "./cursor.ts";
import { createAnew, isFull, type EntryNote } from "./file-maker.ts";
import { FileWriters } from "./writers.ts";

export type { EntryNote } from "./file-maker.ts";

/** A selected symbolic link, made after everything else. */
export interface LinkToMake {
  ordinal: number;
  key: string;
  parts: string[];
  target: string;
  uid: number;
  gid: number;
  mtimeNs: bigint;
}

/** A restored directory, whose owner, mode and time are set at the end. */
export interface DirToFinish {
  key: string;
  depth: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
}

/** What the extraction needs from the plan. */
export interface PlanView {
  /** Whether the entry at this ordinal is to be made (and its name and type, to tell it is the one decided about). */
  chosen(ordinal: number, l?: TarListing): boolean;
  force: boolean;
  /** The names given two kinds: nothing at or below them is made. */
  clashes: ReadonlySet<string>;
  /** The mode a directory is made with, before the end sets the archive's (a directory the archive holds) or never (one it implies). */
  dirMode(key: string): number;
  /** The last symbolic link the archive gives each name (only that one is made). */
  lastLink: ReadonlyMap<string, number>;
}

/** Components of an archive name, or why it may not be restored. */
export function splitEntryName(raw: string): { parts: string[] } | { why: string } {
  if (raw.startsWith("/")) return { why: "absolute path" };
  // the usual name, split as it is: every restore splits each name three times
  if (plainName(raw)) return { parts: (raw.endsWith("/") ? raw.slice(0, -1) : raw).split("/") };
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return { why: "path with '..'" };
  return { parts };
}

/** A name none of whose components is empty (but after one slash at its end), "." or "..". */
function plainName(raw: string): boolean {
  if (raw === "" || raw === "." || raw.includes("//") || raw.includes("..")) return false;
  return !raw.startsWith("./") && !raw.includes("/./") && !raw.endsWith("/.");
}

/** The key ("a/b") of the first `n` components. */
export function keyOf(parts: readonly string[], n = parts.length): string {
  const m = Math.min(n, parts.length);
  if (m <= 0) return "";
  let key = parts[0]!;
  for (let i = 1; i < m; i++) key += `/${parts[i]}`;
  return key;
}

/** The file whose content comes now (its writer makes it). */
interface FileComing {
  key: string;
  left: number;
}

export class Extractor {
  readonly failed: EntryNote[] = [];
  /** Entries made as neither of their two kinds. */
  readonly clashed: EntryNote[] = [];
  /** Links made, then found on the disk to point outside, and removed. */
  readonly refused: EntryNote[] = [];
  restored = 0;
  bytes = 0;
  private ordinal = 0;
  private file: FileComing | undefined;
  private readonly writers = new FileWriters();
  /** Where the file system was found full first, by this thread or a writer. */
  private fullAt: { key: string; code: string } | undefined;
  private readonly asRoot = process.getuid?.() === 0;
  private readonly cursor: DirCursor;
  /** For hard links: their targets' directories, apart from the one being written into. */
  private readonly targets: DirCursor;
  /** Under a name given two kinds, by directory key (filled only when there are such names). */
  private readonly clashMemo = new Map<string, boolean>();

  constructor(private readonly at: At, private readonly rootFd: number, private readonly root: string, private readonly plan: PlanView) {
    // a directory a writer may still make files in is closed by that writer, after them
    const release = (key: string, fd: number) => (this.writers.done ? at.close(fd) : this.writers.closeDir(key, fd));
    this.cursor = new DirCursor(at, rootFd, (k) => plan.dirMode(k), release);
    this.targets = new DirCursor(at, rootFd, (k) => plan.dirMode(k));
  }

  /** After settle(); else (an error on the way) the writers are stopped where they are. */
  close(): void {
    if (!this.writers.done) void this.writers.stop();
    this.cursor.close();
    this.targets.close();
  }

  /**
   * Every file sent to the writers made: what they made and what failed counted in. A full
   * file system, found here or by a writer, ends it as RESTORE_NO_SPACE.
   */
  async settle(): Promise<void> {
    if (!this.writers.done) {
      this.abandonComing();
      for (const r of await this.writers.finish()) {
        this.restored += r.restored;
        this.bytes += r.bytes;
        this.failed.push(...r.failed);
        if (r.full) this.fullAt ??= r.full;
      }
    }
    if (this.fullAt) throw this.noSpace();
  }

  entry(l: TarListing): void {
    // a writer found the file system full: nothing after is tried (settle() says where)
    if (this.writers.full) throw new ShootError("RESTORE_NO_SPACE", `the file system of ${this.root} is full`);
    const f = this.file;
    // content comes whole before the next entry; should it not, the file is not left half made
    if (this.abandonComing()) this.fail(f!.key, new Error("its content ended early"));
    const ordinal = this.ordinal++;
    if (!this.plan.chosen(ordinal, l) || l.type === "symlink") return;
    const s = splitEntryName(l.name);
    if ("why" in s) return; // never chosen; checked again all the same
    const key = s.parts.join("/");
    if (this.underClash(s.parts)) return this.noteClash(key);
    try {
      if (l.type === "dir") this.makeDir(s.parts);
      else if (l.type === "file") this.openFile(s.parts, key, l);
      else if (l.type === "hardlink") this.makeHardLink(s.parts, l);
    } catch (e) {
      this.stopWhenFull(e, key);
      this.fail(key, e);
    }
  }

  data(piece: Uint8Array): void {
    const f = this.file;
    if (!f) return;
    this.writers.data(piece);
    f.left -= piece.length;
    if (f.left <= 0) this.file = undefined;
  }

  /** The file whose content was coming removed (it ended early); false when there was none. */
  private abandonComing(): boolean {
    if (!this.file) return false;
    this.writers.abandon();
    this.file = undefined;
    return true;
  }

  private makeDir(parts: string[]): void {
    const parent = this.cursor.dir(parts, parts.length - 1, true);
    const name = parts.at(-1)!;
    try {
      this.at.mkdir(parent, name, 0o700);
    } catch (e) {
      if (errnoCode(e) !== "EEXIST") throw e;
      const here = this.at.kind(parent, name);
      // a file or link where the directory belongs: the plan let it be replaced only with force
      if (here !== "dir") {
        if (!this.plan.force) throw new Error(`a ${here} of that name is in the way`);
        this.at.unlink(parent, name);
        this.at.mkdir(parent, name, 0o700);
      }
    }
    this.restored++;
  }

  private openFile(parts: string[], key: string, l: TarListing): void {
    const dirFd = this.cursor.dir(parts, parts.length - 1, true);
    const stored = l.sparse ? l.sparse.reduce((n, p) => n + p.length, 0) : l.size;
    const { mode, uid, gid, mtimeNs, size, sparse } = l;
    this.writers.open(keyOf(parts, parts.length - 1), { dirFd, key, mode, uid, gid, mtimeNs, size, stored, sparse });
    if (stored > 0) this.file = { key, left: stored };
  }

  private makeHardLink(parts: string[], l: TarListing): void {
    // its target is made by a writer, and may be the name of a file a writer makes after
    this.writers.drain();
    const t = splitEntryName(l.linkTarget ?? "");
    if ("why" in t || t.parts.length === 0) throw new Error(`its target ${JSON.stringify(l.linkTarget)} cannot be linked to`);
    const tParent = this.targets.dir(t.parts, t.parts.length - 1, false);
    const tName = t.parts.at(-1)!;
    const kind = this.at.kind(tParent, tName);
    // a hard link to a link would be a link no check has seen; to anything but a file, nothing GNU tar makes either
    if (kind !== "file") throw new Error(`its target /${t.parts.join("/")} is ${kind === "none" ? "not there" : `a ${kind} here, not a file`}`);
    const parentFd = this.cursor.dir(parts, parts.length - 1, true);
    const name = parts.at(-1)!;
    this.create(parentFd, name, () => this.at.link(tParent, tName, parentFd, name));
    this.restored++;
  }

  private create<T>(dirFd: number, name: string, make: () => T): T {
    return createAnew(this.at, dirFd, name, make);
  }

  /** A full file system ends the restore here (as a ShootError, which ends the read). */
  private stopWhenFull(e: unknown, key: string): void {
    const code = isFull(e);
    if (code === undefined) return;
    this.fullAt ??= { key, code };
    throw this.noSpace();
  }

  private noSpace(): ShootError {
    const { key, code } = this.fullAt!;
    return new ShootError("RESTORE_NO_SPACE", `the file system of ${this.root} is full (${code}) at /${key}, after ${this.restored} entries: the restore stopped there; ${key} was removed`);
  }

  /** Symbolic links, now that everything else is in place; each checked against the disk as it is, before and after all are made. */
  links(symlinks: readonly LinkToMake[], allowOutside: boolean, staysInside: (parts: readonly string[], target: string) => boolean): void {
    const made: LinkToMake[] = [];
    for (const k of symlinks) {
      if (!this.plan.chosen(k.ordinal) || this.plan.lastLink.get(k.key) !== k.ordinal) continue;
      if (this.underClash(k.parts)) {
        this.noteClash(k.key);
        continue;
      }
      try {
        const parent = this.cursor.dir(k.parts, k.parts.length - 1, true);
        const name = k.parts.at(-1)!;
        if (!allowOutside && !staysInside(k.parts, k.target)) {
          this.refused.push({ name: k.key, why: `symbolic link to ${JSON.stringify(k.target)}, which points outside ${this.root} on the disk as restored` });
          continue;
        }
        this.create(parent, name, () => this.at.symlink(k.target, parent, name));
        if (this.asRoot) this.at.lchown(parent, name, k.uid, k.gid);
        this.at.lutimes(parent, name, k.mtimeNs);
        this.restored++;
        made.push(k);
      } catch (e) {
        this.stopWhenFull(e, k.key);
        this.fail(k.key, e);
      }
    }
    if (!allowOutside) this.recheck(made, staysInside);
  }

  /**
   * Every link made, resolved again on the disk with all of them in place: one that another
   * made later turns outside is removed, until none does.
   */
  private recheck(made: LinkToMake[], staysInside: (parts: readonly string[], target: string) => boolean): void {
    for (let removed = true; removed;) {
      removed = false;
      for (let i = 0; i < made.length; i++) {
        const k = made[i]!;
        if (staysInside(k.parts, k.target)) continue;
        const parent = this.cursor.dir(k.parts, k.parts.length - 1, false);
        this.at.unlink(parent, k.parts.at(-1)!);
        made.splice(i--, 1);
        this.restored--;
        this.refused.push({ name: k.key, why: `symbolic link to ${JSON.stringify(k.target)}, which with the archive's other links in place points outside ${this.root}: removed` });
        removed = true;
      }
    }
  }

  /** Directories' owners, modes and times, deepest first, each on its own descriptor: after this nothing is written into them. */
  finishDirs(dirs: readonly DirToFinish[]): void {
    const order = [...dirs].sort((x, y) => y.depth - x.depth || (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    for (const d of order) {
      const parts = d.key.split("/");
      if (this.underClash(parts)) continue;
      try {
        const fd = this.cursor.dir(parts, parts.length, false);
        if (this.asRoot) fs.fchownSync(fd, d.uid, d.gid);
        fs.fchmodSync(fd, d.mode);
        this.at.futimes(fd, d.mtimeNs);
      } catch (e) {
        this.fail(d.key, e, "setting owner, mode and time");
      }
    }
    this.cursor.close();
  }

  /** Is `parts` a name given two kinds, or below one? */
  private underClash(parts: readonly string[]): boolean {
    if (this.plan.clashes.size === 0) return false;
    return this.plan.clashes.has(keyOf(parts)) || this.dirUnderClash(parts, parts.length - 1);
  }

  /** Is the directory of the first `n` components a name given two kinds, or below one (remembered by directory)? */
  private dirUnderClash(parts: readonly string[], n: number): boolean {
    if (n === 0) return false;
    const k = keyOf(parts, n);
    const hit = this.clashMemo.get(k);
    if (hit !== undefined) return hit;
    const under = this.plan.clashes.has(k) || this.dirUnderClash(parts, n - 1);
    this.clashMemo.set(k, under);
    return under;
  }

  private noteClash(key: string): void {
    this.clashed.push({ name: key, why: "the archive gives this name (or a directory above it) two kinds: made as neither" });
  }

  private fail(name: string, e: unknown, doing?: string): void {
    this.failed.push({ name, why: doing ? `${doing}: ${errorMessage(e)}` : errorMessage(e) });
  }
}
