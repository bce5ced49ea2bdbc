/**
 * The entries of a restore's checking pass, kept so that the plan can take them in turn
 * without reading and decompressing the archive again. Each is a compact record (what the plan
 * and `only` read, not the content); records are held in memory up to HELD bytes, then go to a
 * file of a private temporary directory (mode 0600 in a 0700 directory, unlinked as soon as it
 * is open, so nothing is left behind whatever ends the process), read back in order. A million
 * entries thus cost a file of about 100 MiB, not the memory.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { TarListing } from "../archive/tar.ts";
import { readAt } from "../state/fsutil.ts";

/** Records are written in chunks of this size (one record may make a larger one). */
const CHUNK = 1 << 20;
/** Past this many bytes of records (some 10,000 entries), they go to the file. */
const HELD = 1 << 20;

const TYPES: readonly TarListing["type"][] = ["file", "dir", "symlink", "hardlink", "other"];
const HAS_LINK = 1;
const HAS_KIND = 2;
const HAS_UNRESTORABLE = 4;

/** Fixed part of a record: type, flags, mode, uid, gid, size (f64 each: tar numbers may exceed 32 bits). */
const FIXED = 2 + 4 * 8;

export class ListingLog {
  count = 0;
  private chunks: Buffer[] = [];
  private held = 0;
  private buf = Buffer.allocUnsafe(CHUNK);
  private used = 0;
  private fd = -1;
  private written = 0;

  add(l: TarListing): void {
    const strings = [l.name, String(l.mtimeNs), l.linkTarget, l.kind, l.unrestorable];
    const need = FIXED + strings.reduce((n, s) => n + (s === undefined ? 0 : 4 + Buffer.byteLength(s)), 0);
    if (this.used + need > this.buf.length) this.seal(need);
    const b = this.buf;
    let at = this.used;
    b[at++] = TYPES.indexOf(l.type);
    b[at++] = (l.linkTarget !== undefined ? HAS_LINK : 0) | (l.kind !== undefined ? HAS_KIND : 0) |
      (l.unrestorable !== undefined ? HAS_UNRESTORABLE : 0);
    for (const n of [l.mode, l.uid, l.gid, l.size]) at = b.writeDoubleLE(n, at);
    for (const s of strings) {
      if (s === undefined) continue;
      const len = b.write(s, at + 4, "utf8");
      b.writeUInt32LE(len, at);
      at += 4 + len;
    }
    this.used = at;
    this.count++;
  }

  /** Every entry added, in order, as listings with the fields the plan reads. */
  *replay(): Generator<TarListing> {
    this.seal(0);
    for (const chunk of this.fd >= 0 ? this.fromFile() : this.chunks) yield* records(chunk);
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    this.chunks = [];
  }

  /**
   * The chunk being filled set aside, with room for `need` bytes after it: kept in memory, or
   * written to the file and its buffer filled again (a new one each time would be garbage the
   * collector frees late, a megabyte a time).
   */
  private seal(need: number): void {
    if (this.used > 0) {
      const full = this.buf.subarray(0, this.used);
      if (this.fd < 0 && this.held + full.length > HELD) this.spill();
      if (this.fd >= 0) this.write(full);
      else {
        this.chunks.push(full);
        this.held += full.length;
        this.buf = Buffer.allocUnsafe(CHUNK);
      }
    }
    if (need > this.buf.length) this.buf = Buffer.allocUnsafe(need);
    this.used = 0;
  }

  /** The file, made where no one else can open it, and the chunks held so far into it. */
  private spill(): void {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-restore-"));
    const file = path.join(dir, "entries");
    try {
      this.fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    for (const c of this.chunks) this.write(c);
    this.chunks = [];
    this.held = 0;
  }

  /** A chunk to the file, after its length. */
  private write(chunk: Buffer): void {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32LE(chunk.length);
    for (const part of [len, chunk]) {
      for (let at = 0; at < part.length;) {
        const n = fs.writeSync(this.fd, part, at, part.length - at, this.written);
        at += n;
        this.written += n;
      }
    }
  }

  /** The chunks of the file in turn, read into one buffer: each is taken whole before the next is read. */
  private *fromFile(): Generator<Buffer> {
    const len = Buffer.allocUnsafe(4);
    let buf = Buffer.allocUnsafe(CHUNK);
    for (let at = 0; at < this.written;) {
      readAll(this.fd, len, at);
      const n = len.readUInt32LE();
      if (n > buf.length) buf = Buffer.allocUnsafe(n);
      const chunk = buf.subarray(0, n);
      readAll(this.fd, chunk, at + 4);
      at += 4 + n;
      yield chunk;
    }
  }
}

function readAll(fd: number, into: Buffer, position: number): void {
  if (readAt(fd, into, position) < into.length) throw new Error("the restore's list of entries ended early");
}

/** The listings of one chunk. */
function* records(b: Buffer): Generator<TarListing> {
  let at = 0;
  const text = (): string => {
    const len = b.readUInt32LE(at);
    const s = b.toString("utf8", at + 4, at + 4 + len);
    at += 4 + len;
    return s;
  };
  while (at < b.length) {
    const type = TYPES[b[at]!]!;
    const flags = b[at + 1]!;
    const num = (i: number) => b.readDoubleLE(at + 2 + 8 * i);
    const [mode, uid, gid, size] = [num(0), num(1), num(2), num(3)];
    at += FIXED;
    const l: TarListing = { name: text(), type, size, mode, uid, gid, uname: "", gname: "", mtimeNs: BigInt(text()) };
    if (flags & HAS_LINK) l.linkTarget = text();
    if (flags & HAS_KIND) l.kind = text();
    if (flags & HAS_UNRESTORABLE) l.unrestorable = text();
    yield l;
  }
}
