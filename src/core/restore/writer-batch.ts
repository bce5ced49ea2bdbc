/**
 * The steps a restore's writer thread is sent (writers.ts → file-maker.ts), written one after
 * the other into a batch's buffer and read back in the same order: a file to make, the next
 * bytes of its content, the removal of the file begun (its content ended early), the closing
 * of a directory's descriptor. One buffer per batch, moved between the threads and filled
 * again: no object per file on either side.
 *
 * A file record: tag, directory descriptor, mode, owner, group, time (ns), size, bytes of
 * content that follow, sparse pieces (count, then offset and length of each), and its key
 * (its path below the target, UTF-8), whose last component is the name it is made as.
 */
import type { SparsePiece } from "../archive/tar.ts";

const OPEN = 1;
const DATA = 2;
const ABANDON = 3;
const CLOSE_DIR = 4;

/** A file to make: its directory (a descriptor the main thread opened), key and metadata. */
export interface FileToMake {
  dirFd: number;
  key: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  /** Bytes of the file, holes included. */
  size: number;
  /** Bytes of content that follow (less than `size` for a sparse file). */
  stored: number;
  sparse?: SparsePiece[];
}

/** What reads a batch: each step, in order. */
export interface BatchSteps {
  open(f: FileToMake): void;
  data(bytes: Uint8Array): void;
  abandon(): void;
  closeDir(fd: number): void;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Bytes of a file record before its key, for `pieces` sparse pieces. */
function openHead(pieces: number): number {
  return 1 + 4 * 4 + 8 * 3 + 4 + pieces * 16 + 4;
}

/** One batch being filled: `used` bytes of `buf`. */
export class BatchWriter {
  used = 0;
  private view: DataView;
  constructor(public buf: Uint8Array<ArrayBufferLike>) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get room(): number {
    return this.buf.length - this.used;
  }

  /** Start again in `buf` (the last one was sent). */
  reset(buf: Uint8Array<ArrayBufferLike>): void {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.used = 0;
  }

  /** Bytes a file record takes at most. */
  static openBytes(f: FileToMake): number {
    return openHead(f.sparse?.length ?? 0) + f.key.length * 3;
  }

  open(f: FileToMake): void {
    const v = this.view;
    let at = this.used;
    v.setUint8(at, OPEN);
    v.setInt32(at + 1, f.dirFd, true);
    v.setUint32(at + 5, f.mode, true);
    v.setUint32(at + 9, f.uid, true);
    v.setUint32(at + 13, f.gid, true);
    v.setBigInt64(at + 17, f.mtimeNs, true);
    v.setFloat64(at + 25, f.size, true);
    v.setFloat64(at + 33, f.stored, true);
    const pieces = f.sparse ?? [];
    v.setUint32(at + 41, pieces.length, true);
    at += 45;
    for (const p of pieces) {
      v.setFloat64(at, p.offset, true);
      v.setFloat64(at + 8, p.length, true);
      at += 16;
    }
    const { written } = enc.encodeInto(f.key, this.buf.subarray(at + 4));
    v.setUint32(at, written, true);
    this.used = at + 4 + written;
  }

  /** As much of `bytes` as fits (at least 1 byte of room beyond the 5 of the record's head); the count taken. */
  data(bytes: Uint8Array): number {
    const n = Math.min(bytes.length, this.room - 5);
    this.view.setUint8(this.used, DATA);
    this.view.setUint32(this.used + 1, n, true);
    this.buf.set(bytes.subarray(0, n), this.used + 5);
    this.used += 5 + n;
    return n;
  }

  abandon(): void {
    this.view.setUint8(this.used++, ABANDON);
  }

  closeDir(fd: number): void {
    this.view.setUint8(this.used, CLOSE_DIR);
    this.view.setInt32(this.used + 1, fd, true);
    this.used += 5;
  }
}

/** The steps of a batch, in order, to `to`. */
export function readBatch(buf: Uint8Array, to: BatchSteps): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let at = 0;
  while (at < buf.length) {
    const tag = v.getUint8(at);
    if (tag === DATA) {
      const n = v.getUint32(at + 1, true);
      to.data(buf.subarray(at + 5, at + 5 + n));
      at += 5 + n;
    } else if (tag === OPEN) {
      at = readOpen(v, buf, at, to);
    } else if (tag === ABANDON) {
      to.abandon();
      at += 1;
    } else if (tag === CLOSE_DIR) {
      to.closeDir(v.getInt32(at + 1, true));
      at += 5;
    } else {
      throw new Error(`a writer's batch holds an unknown step ${tag} at byte ${at}`);
    }
  }
}

function readOpen(v: DataView, buf: Uint8Array, start: number, to: BatchSteps): number {
  const count = v.getUint32(start + 41, true);
  let at = start + 45;
  const sparse: SparsePiece[] | undefined = count > 0 ? [] : undefined;
  for (let i = 0; i < count; i++, at += 16) {
    sparse!.push({ offset: v.getFloat64(at, true), length: v.getFloat64(at + 8, true) });
  }
  const keyLen = v.getUint32(at, true);
  const key = dec.decode(buf.subarray(at + 4, at + 4 + keyLen));
  to.open({
    dirFd: v.getInt32(start + 1, true),
    key,
    mode: v.getUint32(start + 5, true),
    uid: v.getUint32(start + 9, true),
    gid: v.getUint32(start + 13, true),
    mtimeNs: v.getBigInt64(start + 17, true),
    size: v.getFloat64(start + 25, true),
    stored: v.getFloat64(start + 33, true),
    sparse,
  });
  return at + 4 + keyLen;
}
