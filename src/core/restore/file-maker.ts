/**
 * Making the regular files of a restore, on a writer thread (writers.worker.ts): each file
 * created where nothing is (O_EXCL, never through a link) in a directory the main thread holds
 * open, its content written, then its owner, mode and time set on the open file, and closed.
 * The main thread sends what to do in order (writers.ts); a file is made whole or removed.
 *
 * A full file system stops every writer (a flag all share): the file being written is
 * removed and no file after it is begun.
 */
import fs from "node:fs";
import { errnoCode, errorMessage } from "../common/errors.ts";
import type { At } from "./at.ts";
import type { BatchSteps, FileToMake } from "./writer-batch.ts";

export interface EntryNote {
  name: string;
  why: string;
}

/** What a writer made, and where it stopped: the file system full at `key` (errno code). */
export interface WriterReport {
  restored: number;
  bytes: number;
  failed: EntryNote[];
  full?: { key: string; code: string };
}

/**
 * `make` a new file or link: tried first as it is (nearly always nothing is there), and once
 * more after removing what was (the plan found nothing there, or force allows replacing it;
 * an earlier entry of the same name is replaced, as tar does). A directory is never removed.
 */
export function createAnew<T>(at: At, dirFd: number, name: string, make: () => T): T {
  try {
    return make();
  } catch (e) {
    if (errnoCode(e) !== "EEXIST") throw e;
  }
  if (at.kind(dirFd, name) === "dir") throw new Error("a directory of that name is in the way");
  at.unlink(dirFd, name);
  return make();
}

export function isFull(e: unknown): string | undefined {
  const c = errnoCode(e);
  return c === "ENOSPC" || c === "EDQUOT" ? c : undefined;
}

interface OpenFile {
  fd: number;
  f: FileToMake;
  dirFd: number;
  name: string;
  left: number;
  /** Sparse: the piece being written and how much of it is done. */
  piece: number;
  done: number;
}

export class FileMaker implements BatchSteps {
  private readonly report: WriterReport = { restored: 0, bytes: 0, failed: [] };
  private file: OpenFile | undefined;
  /** Set for a file whose making failed: its content is passed over. */
  private skipping = false;

  /**
   * @param stopped shared by every writer: [0] is set once any of them found the file system full
   */
  constructor(private readonly at: At, private readonly asRoot: boolean, private readonly stopped: Int32Array) {}

  /** What was made; a file still open (its content never came) is removed first. */
  finish(): WriterReport {
    if (this.file) this.removeOpen(this.file);
    return this.report;
  }

  closeDir(fd: number): void {
    this.at.close(fd);
  }

  abandon(): void {
    if (this.file) this.removeOpen(this.file);
  }

  open(f: FileToMake): void {
    if (this.file) this.removeOpen(this.file);
    this.skipping = true;
    if (Atomics.load(this.stopped, 0) !== 0) return;
    const { dirFd } = f;
    const name = f.key.slice(f.key.lastIndexOf("/") + 1);
    let fd: number;
    try {
      fd = createAnew(this.at, dirFd, name, () => this.at.createFile(dirFd, name, 0o600));
    } catch (e) {
      this.failed(f.key, e);
      return;
    }
    this.skipping = false;
    this.file = { fd, f, dirFd, name, left: f.stored, piece: 0, done: 0 };
    if (f.stored === 0) this.close(this.file);
  }

  data(piece: Uint8Array): void {
    const o = this.file;
    if (!o || this.skipping) return;
    try {
      if (o.f.sparse) this.writeSparse(o, piece);
      else for (let at = 0; at < piece.length;) at += fs.writeSync(o.fd, piece, at, piece.length - at);
      o.left -= piece.length;
      if (o.left <= 0) this.close(o);
    } catch (e) {
      this.removeOpen(o);
      this.failed(o.f.key, e);
    }
  }

  /** The next bytes of a sparse file's pieces, each at its offset. */
  private writeSparse(o: OpenFile, piece: Uint8Array): void {
    const pieces = o.f.sparse!;
    let at = 0;
    while (at < piece.length) {
      while (o.piece < pieces.length && o.done === pieces[o.piece]!.length) {
        o.piece++;
        o.done = 0;
      }
      const p = pieces[o.piece]!;
      const n = Math.min(p.length - o.done, piece.length - at);
      const w = fs.writeSync(o.fd, piece, at, n, p.offset + o.done);
      o.done += w;
      at += w;
    }
  }

  private close(o: OpenFile): void {
    this.file = undefined;
    const f = o.f;
    try {
      if (f.sparse) fs.ftruncateSync(o.fd, f.size);
      // the owner first: changing it clears set-user-ID and set-group-ID bits the mode sets
      if (this.asRoot) fs.fchownSync(o.fd, f.uid, f.gid);
      fs.fchmodSync(o.fd, f.mode);
      this.at.futimes(o.fd, f.mtimeNs);
      this.report.restored++;
      this.report.bytes += f.size;
    } catch (e) {
      this.failed(f.key, e, "setting owner, mode and time");
    } finally {
      this.at.close(o.fd);
    }
  }

  /** Close and remove a file whose content did not all arrive: a part of a file is never left as if it were one. */
  private removeOpen(o: OpenFile): void {
    this.file = undefined;
    this.skipping = true;
    this.at.close(o.fd);
    try {
      this.at.unlink(o.dirFd, o.name);
    } catch {
      // gone already
    }
  }

  /** A failure noted; a full file system instead stops every writer here. */
  private failed(key: string, e: unknown, doing?: string): void {
    const code = isFull(e);
    if (code === undefined) {
      this.report.failed.push({ name: key, why: doing ? `${doing}: ${errorMessage(e)}` : errorMessage(e) });
      return;
    }
    this.report.full ??= { key, code };
    Atomics.store(this.stopped, 0, 1);
  }
}
