/**
 * The write pass of a restore: the entries the plan chose, made on disk as they stream by,
 * through descriptors only (cursor.ts, at.ts). Per file: one openat on the parent held open
 * (O_CREAT|O_EXCL|O_NOFOLLOW), its content written, then its owner, mode and time set on the
 * open file. Symbolic links wait for the end (links()), then are checked again on the disk as
 * it is; directories' modes and times come last of all (finishDirs()), deepest first, each on
 * the directory's own descriptor.
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

export interface EntryNote {
  name: string;
  why: string;
}

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
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return { why: "path with '..'" };
  return { parts };
}

/** The key ("a/b") of the first `n` components. */
export function keyOf(parts: readonly string[], n = parts.length): string {
  return parts.slice(0, n).join("/");
}

interface OpenFile {
  fd: number;
  parentFd: number;
  name: string;
  left: number;
  key: string;
  l: TarListing;
  /** Sparse: the piece being written and how much of it is done. */
  piece: number;
  done: number;
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
  private file: OpenFile | undefined;
  private readonly asRoot = process.getuid?.() === 0;
  private readonly cursor: DirCursor;
  /** For hard links: their targets' directories, apart from the one being written into. */
  private readonly targets: DirCursor;
  /** Under a name given two kinds, by directory key (filled only when there are such names). */
  private readonly clashMemo = new Map<string, boolean>();

  constructor(private readonly at: At, private readonly rootFd: number, private readonly root: string, private readonly plan: PlanView) {
    this.cursor = new DirCursor(at, rootFd, (k) => plan.dirMode(k));
    this.targets = new DirCursor(at, rootFd, (k) => plan.dirMode(k));
  }

  close(): void {
    if (this.file) this.abandon(this.file);
    this.cursor.close();
    this.targets.close();
  }

  entry(l: TarListing): void {
    if (this.file) {
      // content comes whole before the next entry; should it not, the file is not left half made
      const f = this.file;
      this.abandon(f);
      this.fail(f.key, new Error("its content ended early"));
    }
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
    try {
      if (f.l.sparse) this.writeSparse(f, piece);
      else for (let at = 0; at < piece.length;) at += fs.writeSync(f.fd, piece, at, piece.length - at);
      f.left -= piece.length;
      if (f.left === 0) this.closeFile();
    } catch (e) {
      this.abandon(f);
      this.stopWhenFull(e, f.key);
      this.fail(f.key, e);
    }
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
    const parentFd = this.cursor.dir(parts, parts.length - 1, true);
    const name = parts.at(-1)!;
    const fd = this.create(parentFd, name, () => this.at.createFile(parentFd, name, 0o600));
    const stored = l.sparse ? l.sparse.reduce((n, p) => n + p.length, 0) : l.size;
    this.file = { fd, parentFd, name, left: stored, key, l, piece: 0, done: 0 };
    if (stored === 0) this.closeFile();
  }

  /** The next bytes of a sparse file's pieces, each at its offset. */
  private writeSparse(f: OpenFile, piece: Uint8Array): void {
    const pieces = f.l.sparse!;
    let at = 0;
    while (at < piece.length) {
      while (f.piece < pieces.length && f.done === pieces[f.piece]!.length) {
        f.piece++;
        f.done = 0;
      }
      const p = pieces[f.piece]!;
      const n = Math.min(p.length - f.done, piece.length - at);
      const w = fs.writeSync(f.fd, piece, at, n, p.offset + f.done);
      f.done += w;
      at += w;
    }
  }

  private makeHardLink(parts: string[], l: TarListing): void {
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

  /**
   * `make` a new file or link: tried first as it is (nearly always nothing is there), and once
   * more after removing what was (the plan found nothing there, or force allows replacing it;
   * an earlier entry of the same name is replaced, as tar does). A directory is never removed.
   */
  private create<T>(dirFd: number, name: string, make: () => T): T {
    try {
      return make();
    } catch (e) {
      if (errnoCode(e) !== "EEXIST") throw e;
    }
    if (this.at.kind(dirFd, name) === "dir") throw new Error("a directory of that name is in the way");
    this.at.unlink(dirFd, name);
    return make();
  }

  private closeFile(): void {
    const f = this.file!;
    this.file = undefined;
    try {
      if (f.l.sparse) fs.ftruncateSync(f.fd, f.l.size);
      // the owner first: changing it clears set-user-ID and set-group-ID bits the mode sets
      if (this.asRoot) fs.fchownSync(f.fd, f.l.uid, f.l.gid);
      fs.fchmodSync(f.fd, f.l.mode);
      this.at.futimes(f.fd, f.l.mtimeNs);
      this.restored++;
      this.bytes += f.l.size;
    } catch (e) {
      this.stopWhenFull(e, f.key);
      this.fail(f.key, e, "setting owner, mode and time");
    } finally {
      this.at.close(f.fd);
    }
  }

  /** Close and remove a file whose content did not all arrive: a part of a file is never left as if it were one. */
  private abandon(f: OpenFile): void {
    this.file = undefined;
    this.at.close(f.fd);
    try {
      this.at.unlink(f.parentFd, f.name);
    } catch {
      // gone already
    }
  }

  /** A full file system ends the restore here (as a ShootError, which ends the read). */
  private stopWhenFull(e: unknown, key: string): void {
    const c = errnoCode(e);
    if (c !== "ENOSPC" && c !== "EDQUOT") return;
    throw new ShootError("RESTORE_NO_SPACE", `the file system of ${this.root} is full (${c}) at /${key}, after ${this.restored} entries: the restore stopped there; ${key} was removed`);
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
