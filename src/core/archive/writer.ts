/**
 * The archive writer: tar → cut into content-defined pieces → compress each piece on its own
 * → hash → write, in one streaming pass with bounded memory.
 *
 * Each piece becomes an independent gzip member or zstd frame; concatenated they are a
 * standard .tar.gz / .tar.zst that gzip, zstd and tar read as one stream. Pieces are
 * compressed on worker threads (several at once, so every core works) and written in order
 * as they complete. Because the cut points depend only on the content around them,
 * an unchanged region of the tree compresses to the same bytes day after day, which is what
 * lets rsync send only the changed parts of a new archive.
 */
import fs from "node:fs";
import os from "node:os";
import type { Compression } from "../common/config.ts";
import { Chunker, isAllZero, type ChunkerParams } from "./chunker.ts";
import { HeaderEncoder, paddingAfter, RECORD, BLOCK, type TarOwnership, type TarType } from "./tar.ts";
import { errnoCode, errorMessage } from "../common/errors.ts";
import { ArchiveUnprovenError, compressionThreads, PiecePipeline } from "./pipeline.ts";
import { frameHeader, RESERVED, streamedHeader, type StreamedEntry } from "./streamed.ts";

export type { StreamedEntry } from "./streamed.ts";
import { crc32Zeros } from "./crc32.ts";

export type EntryType = TarType;

export interface ArchiveEntry extends TarOwnership {
  /** Absolute path on disk to read from (files, and hard links whose first name was left out). */
  source: string;
  /** Name inside the archive: absolute path without the leading "/"; directories without a trailing "/". */
  name: string;
  type: EntryType;
  /** File size from the scan (0 for non-files). The archive holds the size found when the file is opened. */
  size: number;
  /** Modification time in ms (integer part from stat). */
  mtimeMs: number;
  /** Full-precision mtime in ns when known: the pax mtime keeps its fraction. */
  mtimeNs?: bigint;
  /** Symlink: its target as read; hard link: the archive name of the first entry with that inode. */
  linkTarget?: string;
  /** Directory of an incremental archive: its GNU dumpdir (incremental.ts), written with its header. */
  dumpdir?: string;
}

export type ArchiveWarningCode = "FILE_VANISHED" | "FILE_UNREADABLE" | "FILE_CHANGED";

export interface ArchiveWarning {
  code: ArchiveWarningCode;
  /** The file on disk. */
  path: string;
  message: string;
}

export interface ArchiveOptions {
  compression: Compression;
  /** gzip 1-9, zstd 1-19 */
  level: number;
  onWarning?: (w: ArchiveWarning) => void;
  /** Called now and then; inputBytes counts the uncompressed tar stream. */
  onProgress?: (p: { inputBytes: number; outputBytes: number }) => void;
  /** Abort: stop promptly and reject with the signal's reason. */
  signal?: AbortSignal;
  /** zstd: the system's libzstd when it loads (the default, see libzstd.ts); false: Bun's own zstd. */
  systemZstd?: boolean;
  /** The caller will fsync fd: have the kernel write the archive to disk as it goes (FLUSH_BEHIND). */
  flushBehind?: boolean;
  /** Compression threads; default one per core the process may use. */
  threads?: number;
  /**
   * Prove the archive restorable before the promise resolves (pieces.ts): on by default, and
   * turned off only to measure what the proof costs. The fd must then be open for reading too.
   */
  prove?: boolean;
  /**
   * Called once the last byte is written and before the archive is proven: tests damage the
   * file here, as a failing disk or another writer would.
   */
  onWritten?: (fd: number) => void;
  /**
   * Entries whose content is a stream of unknown length (database dumps), written after the
   * entries (streamed.ts). The fd must be open for reading too: the checksums past the first of
   * them are taken by reading the file back.
   */
  streams?: readonly StreamedEntry[];
}

export interface ArchiveResult {
  /** Bytes written to the file descriptor. */
  size: number;
  /** Hex digests of exactly the bytes written. */
  md5: string;
  sha256: string;
  /** Entries written to the archive. */
  entries: number;
  /** Bytes of the uncompressed tar stream. */
  inputBytes: number;
  /** Archive names of entries left out, or whose content could not be read completely. */
  skipped: string[];
  /** What compressed the pieces, e.g. "libzstd 1.5.4" or "libdeflate". */
  engine: string;
  /** The archive was proven restorable: every piece, the whole tar stream, the file read back. */
  proven: boolean;
  /** The streamed entries written, with their sizes. */
  streamed: Array<{ name: string; size: number }>;
  /** The hash of every compressed piece in order, when proven (piece-index.ts). */
  pieces?: BigUint64Array;
}

/**
 * Piece sizes. gzip forgets everything beyond 32 KiB anyway, so small pieces cost little
 * ratio, and a change costs the rest of the piece it falls in on the next day's pull; zstd
 * looks further back and gets larger pieces (~190 KiB), with a minimum so that only a third
 * of the bytes are hashed. Pieces of up to 1 MiB made zstd 1.5 % smaller but took a whole
 * server run over 120 MiB at times. Measured on a 1 GiB tree: +4 % (gzip) and +3 % (zstd) size
 * against one stream, and 0.2 % of the archive sent by rsync after 1 % of the files changed.
 * gzip pieces of 8-64 KiB sent fewer bytes on a day-2 pull but made an archive of many small
 * files 15 % larger and slower to write (docs/benchmarks.md). Plain tar needs no
 * content-defined cuts: unchanged bytes stay unchanged.
 */
const PIECES: Record<Compression, ChunkerParams> = {
  gzip: { minSize: 32 << 10, avgGap: 32 << 10, maxSize: 256 << 10, readSize: 256 << 10 },
  zstd: { minSize: 128 << 10, avgGap: 64 << 10, maxSize: 512 << 10, readSize: 256 << 10 },
  none: { minSize: 1 << 20, avgGap: 0, maxSize: 1 << 20, readSize: 1 << 20 },
};

const PROGRESS_EVERY_MS = 250;

function nsOf(e: { mtimeMs: number; mtimeNs?: bigint }): bigint {
  if (e.mtimeNs !== undefined) return e.mtimeNs;
  const ms = Math.floor(e.mtimeMs);
  return BigInt(ms) * 1_000_000n + BigInt(Math.round((e.mtimeMs - ms) * 1e6));
}

/**
 * Whether a file's mtime is no longer the scanned one: to the microsecond when the entry
 * knows its mtime that closely (a list records whole microseconds), else to the millisecond.
 */
function mtimeMoved(nowMs: number, e: { mtimeMs: number; mtimeNs?: bigint }): boolean {
  return e.mtimeNs !== undefined ? Math.abs(nowMs - Number(e.mtimeNs) / 1e6) >= 0.001 : Math.floor(nowMs) !== Math.floor(e.mtimeMs);
}

/** A stable 32-bit hash of a name (FNV-1a over UTF-16 units), for header cut decisions. */
function nameToken(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const PADDING = new Uint8Array(BLOCK);
const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;
/** Linux only; 0 elsewhere. */
const O_NOATIME = fs.constants.O_NOATIME ?? 0;
const PROCESS_UID = process.getuid?.() ?? -1;

/**
 * Open a file to archive it without changing its access time (O_NOATIME, what GNU tar's
 * `--atime-preserve=system` does). Reading a file updates its atime about once a day
 * (relatime), and some programs read meaning into it: a mail client takes an mbox read after
 * its last delivery as "no new mail", a clean-up job takes an old atime as "unused". A backup
 * should not change either. The kernel allows the flag to the file's owner and to a process
 * with CAP_FOWNER (root, normally); where it is refused all the same (EPERM, e.g. root in a
 * user namespace), the file is opened the ordinary way.
 */
function openSource(source: string, ownerUid: number): number {
  if (O_NOATIME !== 0 && (PROCESS_UID === 0 || PROCESS_UID === ownerUid)) {
    try {
      return fs.openSync(source, OPEN_FLAGS | O_NOATIME);
    } catch (err) {
      if (errnoCode(err) !== "EPERM") throw err;
    }
  }
  return fs.openSync(source, OPEN_FLAGS);
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The archive was aborted", "AbortError");
}

/**
 * Write the whole archive to the already-open file descriptor `fd` (the caller opened the
 * temporary file, and will fsync, close and rename it). MD5 and SHA-256 of exactly the bytes
 * written are computed in the same pass. Errors writing to fd reject with the original errno
 * error; a file that cannot be read is a warning, never a failure.
 */
export async function writeArchive(
  entries: Iterable<ArchiveEntry> | AsyncIterable<ArchiveEntry>,
  fd: number,
  opts: ArchiveOptions,
): Promise<ArchiveResult> {
  const w = new StreamWriter(fd, opts);
  try {
    return await w.run(entries);
  } finally {
    w.close();
  }
}

/** A file opened to be archived, with what its descriptor says now. */
interface Opened {
  fd: number;
  size: number;
  mtimeNs: bigint;
  mtimeMs: number;
}

/** How the copy of one file's content went, and the CRC-32 of what went into the archive (for the proof). */
interface Copy {
  size: number;
  remaining: number;
  reads: number;
  crc: number;
  readError: unknown;
  /** A read proved the file ended where its header says (or it was zero-filled to it). */
  endChecked: boolean;
}

/**
 * The main thread's part of the archive writer: each entry's header and content into the
 * chunker, in order. On a tree of small files this loop is the writer's critical path, so it
 * waits (awaits) only when the pipeline is full or the entries come from an async source: a
 * promise per entry cost more than the header.
 */
class StreamWriter {
  private readonly out: PiecePipeline;
  private readonly chunker: Chunker;
  /** Files of at least this size have their header in a piece of its own (the largest piece). */
  private readonly headerAlone: number;
  private readonly headers = new HeaderEncoder();
  private readonly prove: boolean;
  private readonly skipped: string[] = [];
  /** Hard-link targets that were left out → the name that took their place (or none yet). */
  private readonly replaced = new Map<string, string | null>();
  private inputBytes = 0;
  private count = 0;
  private lastProgress = performance.now();

  constructor(
    fd: number,
    private readonly opts: ArchiveOptions,
  ) {
    const c = opts.compression;
    this.prove = opts.prove !== false;
    const threads = opts.threads ?? compressionThreads();
    const pipelineOptions = {
      compression: c, level: opts.level, threads, maxPiece: PIECES[c].maxSize, systemZstd: opts.systemZstd, flushBehind: opts.flushBehind, prove: this.prove, onWritten: opts.onWritten,
      sha256Here: c === "none" && !opts.streams?.length,
    };
    this.out = new PiecePipeline(fd, pipelineOptions, (slab) => this.chunker.recycle(slab));
    this.chunker = new Chunker(PIECES[c], (piece) => this.out.submit(piece));
    this.headerAlone = PIECES[c].maxSize;
  }

  close(): void {
    this.out.close();
  }

  async run(entries: Iterable<ArchiveEntry> | AsyncIterable<ArchiveEntry>): Promise<ArchiveResult> {
    const signal = this.opts.signal;
    const sync = Symbol.iterator in entries ? entries[Symbol.iterator]() : undefined;
    const async = sync ? undefined : (entries as AsyncIterable<ArchiveEntry>)[Symbol.asyncIterator]();
    for (;;) {
      const next = sync ? sync.next() : await async!.next();
      if (next.done) break;
      if (signal?.aborted) throw abortError(signal);
      const pending = this.entry(next.value);
      if (pending) await pending;
      if (this.out.full()) await this.out.room();
      this.progress();
    }
    const streamed: ArchiveResult["streamed"] = [];
    for (const s of this.opts.streams ?? []) {
      streamed.push({ name: s.name, size: await this.streamedEntry(s) });
      this.count++;
    }
    return this.end(streamed);
  }

  /**
   * One streamed entry (streamed.ts): a cut, a reserved place for the header, the content as it
   * comes (read no faster than the archive is written), the padding, another cut, then the
   * header into its place. Returns the content's size. A stream that ended unwhole (`ended`
   * throws) fails the archive.
   */
  private async streamedEntry(s: StreamedEntry): Promise<number> {
    const signal = this.opts.signal;
    const compression = this.opts.compression;
    this.chunker.finish();
    const reservedSeq = this.out.reserve(RESERVED[compression]);
    this.inputBytes += BLOCK;
    let size = 0;
    let crc = 0;
    for await (const chunk of s.content) {
      if (signal?.aborted) throw abortError(signal);
      if (this.prove) crc = Bun.hash.crc32(chunk, crc);
      this.emit(chunk);
      size += chunk.length;
      await this.out.room();
      this.progress();
    }
    await s.ended();
    const pad = paddingAfter(size);
    if (pad) {
      this.emit(PADDING.subarray(0, pad));
      if (this.prove) crc = crc32Zeros(crc, pad);
    }
    this.chunker.finish();
    const header = streamedHeader(s, size);
    // the proof counts content and padding on the side: its CRC-32 covers both
    this.out.expect({ name: s.name, type: "file", size, crc });
    this.out.patch(reservedSeq, frameHeader(compression, header), header);
    await this.out.room();
    return size;
  }

  /** End of archive: two zero blocks, then zeros to a whole record like GNU tar; then wait for the proof. */
  private async end(streamed: ArchiveResult["streamed"]): Promise<ArchiveResult> {
    const total = this.inputBytes + 2 * BLOCK;
    this.emit(new Uint8Array(2 * BLOCK + ((RECORD - (total % RECORD)) % RECORD)));
    this.chunker.finish();
    const done = await this.out.finish();
    const { md5, sha256, size } = done;
    const { count, inputBytes } = this;
    if (this.prove && (done.entries !== count || done.tarBytes !== inputBytes)) {
      throw new ArchiveUnprovenError(`the tar stream read back holds ${done.entries} entries in ${done.tarBytes} bytes; ${count} entries in ${inputBytes} bytes were written`);
    }
    this.opts.onProgress?.({ inputBytes, outputBytes: size });
    return { size, md5, sha256, entries: count, inputBytes, skipped: this.skipped, engine: this.out.engine, proven: this.prove, streamed, pieces: done.pieces };
  }

  private warn(code: ArchiveWarningCode, path: string, message: string): void {
    this.opts.onWarning?.({ code, path, message });
  }

  private progress(): void {
    if (!this.opts.onProgress) return;
    const now = performance.now();
    if (now - this.lastProgress < PROGRESS_EVERY_MS) return;
    this.lastProgress = now;
    this.opts.onProgress({ inputBytes: this.inputBytes, outputBytes: this.out.written });
  }

  private emit(bytes: Uint8Array): void {
    this.chunker.append(bytes);
    this.inputBytes += bytes.length;
  }

  /** One entry into the stream; a promise only when a large file had to wait for room. */
  private entry(e: ArchiveEntry): Promise<void> | undefined {
    let type = e.type;
    let linkTarget = e.linkTarget;
    if (type === "hardlink" && linkTarget !== undefined && this.replaced.has(linkTarget)) {
      // the first name of this inode was left out: this one carries the content instead
      const instead = this.replaced.get(linkTarget);
      if (instead) linkTarget = instead;
      else type = "file";
    }
    let opened: Opened | undefined;
    if (type === "file") {
      opened = this.open(e);
      if (!opened) return undefined;
      if (e.type === "hardlink" && e.linkTarget !== undefined) this.replaced.set(e.linkTarget, e.name);
    }
    let closing = true;
    try {
      const size = opened?.size ?? 0;
      const length = this.headers.encode({ name: e.name, type, mode: e.mode, uid: e.uid, gid: e.gid, uname: e.uname, gname: e.gname, size, mtimeNs: opened?.mtimeNs ?? nsOf(e), linkTarget, dumpdir: e.dumpdir });
      // the header of a file larger than a piece is a piece of its own: it changes with the file
      const alone = size >= this.headerAlone;
      if (alone) this.chunker.cutHere();
      else this.chunker.boundary(nameToken(e.name));
      this.chunker.appendFrom(this.headers.bytes, length);
      if (alone) this.chunker.cutHere();
      this.inputBytes += length;
      this.count++;
      const link = type === "symlink" || type === "hardlink" ? linkTarget : undefined;
      if (!opened) {
        this.out.expect({ name: e.name, type, size, crc: 0, linkTarget: link });
        return undefined;
      }
      const copied = this.copy(e, opened.fd, size);
      if (!(copied instanceof Promise)) {
        this.afterCopy(e, type, opened, copied);
        return undefined;
      }
      closing = false;
      return copied.then((c) => this.afterCopy(e, type, opened, c)).finally(() => fs.closeSync(opened.fd));
    } finally {
      if (closing && opened) fs.closeSync(opened.fd);
    }
  }

  /** Open a file entry and compare it with the scan; undefined (warned, left out) when it cannot be archived. */
  private open(e: ArchiveEntry): Opened | undefined {
    let fd: number;
    try {
      fd = openSource(e.source, e.uid);
    } catch (err) {
      const c = errnoCode(err);
      if (c === "ENOENT" || c === "ENOTDIR") this.warn("FILE_VANISHED", e.source, `${e.source}: vanished before it could be read; left out`);
      else if (c === "ELOOP") this.warn("FILE_CHANGED", e.source, `${e.source}: is no longer a regular file; left out`);
      else this.warn("FILE_UNREADABLE", e.source, `${e.source}: cannot be opened (${errorMessage(err)}); left out`);
      this.leftOut(e);
      return undefined;
    }
    const st = fs.fstatSync(fd);
    if (!st.isFile()) {
      fs.closeSync(fd);
      this.warn("FILE_CHANGED", e.source, `${e.source}: is no longer a regular file; left out`);
      this.leftOut(e);
      return undefined;
    }
    let mtimeNs = nsOf(e);
    // (a hard link standing in for its left-out first name has no scanned size to compare)
    if ((e.type === "file" && st.size !== e.size) || mtimeMoved(st.mtimeMs, e)) {
      // archive the file as it is now, with the metadata that goes with this content
      const what = e.type === "file" && st.size !== e.size ? `size ${e.size} → ${st.size} bytes` : "modification time";
      this.warn("FILE_CHANGED", e.source, `${e.source}: changed since the scan (${what}); archived as found`);
      mtimeNs = nsOf({ mtimeMs: st.mtimeMs });
    }
    return { fd, size: st.size, mtimeNs, mtimeMs: st.mtimeMs };
  }

  private leftOut(e: ArchiveEntry): void {
    this.skipped.push(e.name);
    if (e.type === "file") this.replaced.set(e.name, null);
  }

  /** The content is in: padding, the end check, and what the proof expects. */
  private afterCopy(e: ArchiveEntry, type: EntryType, opened: Opened, c: Copy): void {
    if (c.readError !== undefined) this.skipped.push(e.name);
    const pad = paddingAfter(c.size);
    if (pad) this.emit(PADDING.subarray(0, pad));
    if (!c.endChecked) {
      const after = fs.fstatSync(opened.fd);
      if (after.size > c.size) this.warn("FILE_CHANGED", e.source, `${e.source}: grew while being read; archived its first ${c.size} bytes`);
      else if (after.mtimeMs !== opened.mtimeMs) this.warn("FILE_CHANGED", e.source, `${e.source}: changed while being read`);
    }
    this.out.expect({ name: e.name, type, size: c.size, crc: c.crc, linkTarget: undefined });
  }

  /**
   * Stream one open file's content. Synchronous while the pipeline has room, which is always
   * the case for a small file; a promise for the rest of a file once it has to wait.
   */
  private copy(e: ArchiveEntry, fd: number, size: number): Copy | Promise<Copy> {
    const c: Copy = { size, remaining: size, reads: 0, crc: 0, readError: undefined, endChecked: false };
    while (c.remaining > 0 && this.readOnce(e, fd, c)) {
      if (c.remaining === 0) break;
      if (this.out.full()) return this.copyRest(e, fd, c);
      this.progress();
    }
    return this.copied(e, c);
  }

  private async copyRest(e: ArchiveEntry, fd: number, c: Copy): Promise<Copy> {
    await this.out.room();
    while (c.remaining > 0 && this.readOnce(e, fd, c)) {
      if (c.remaining > 0 && this.out.full()) await this.out.room();
      this.progress();
    }
    return this.copied(e, c);
  }

  /** One read into the chunker; false when the file ended or could not be read. */
  private readOnce(e: ArchiveEntry, fd: number, c: Copy): boolean {
    const signal = this.opts.signal;
    if (signal?.aborted) throw abortError(signal);
    // ask for one byte more than is left: a short read then proves the file ended where its
    // header says, and a full one that it grew, without another system call
    const dst = this.chunker.space(c.remaining + 1);
    let n: number;
    try {
      n = fs.readSync(fd, dst, 0, dst.length, null);
    } catch (err) {
      c.readError = err;
      return false;
    }
    c.reads++;
    if (n === 0) return false;
    if (n > c.remaining) {
      this.warn("FILE_CHANGED", e.source, `${e.source}: grew while being read; archived its first ${c.size} bytes`);
      n = c.remaining;
      c.endChecked = true;
    } else if (n === c.remaining && dst.length > c.remaining) {
      c.endChecked = c.reads === 1; // a file read in several calls may have changed between them
    }
    if (this.prove) c.crc = isAllZero(dst, 0, n) ? crc32Zeros(c.crc, n) : Bun.hash.crc32(dst.subarray(0, n), c.crc);
    this.chunker.commit(n);
    c.remaining -= n;
    this.inputBytes += n;
    return true;
  }

  /** After the reads: what could not be read is zero-filled to the size in the header. */
  private copied(e: ArchiveEntry, c: Copy): Copy {
    if (c.readError !== undefined) {
      this.warn("FILE_UNREADABLE", e.source, `${e.source}: read failed after ${c.size - c.remaining} of ${c.size} bytes (${errorMessage(c.readError)}); the rest is zero-filled in the archive`);
    } else if (c.remaining > 0) {
      this.warn("FILE_CHANGED", e.source, `${e.source}: shrank by ${c.remaining} bytes while being read; zero-filled to ${c.size} bytes in the archive`);
    }
    if (c.remaining > 0) {
      if (this.prove) c.crc = crc32Zeros(c.crc, c.remaining);
      this.chunker.appendZeros(c.remaining);
      this.inputBytes += c.remaining;
      c.remaining = 0;
      c.endChecked = true;
    }
    return c;
  }
}

/** The compression of an archive, from its first bytes (its name may lie). */
export function detectCompression(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  return "none";
}

