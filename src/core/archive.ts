/**
 * The archive writer: tar → cut into content-defined pieces → compress each piece on its own
 * → hash → write, in one streaming pass with bounded memory.
 *
 * Each piece becomes an independent gzip member or zstd frame; concatenated they are a
 * standard .tar.gz / .tar.zst that gzip, zstd and tar read as one stream. Pieces are
 * compressed on the runtime's thread pool (several at once, so every core works) and written
 * in order as they complete. Because the cut points depend only on the content around them,
 * an unchanged region of the tree compresses to the same bytes day after day, which is what
 * lets rsync send only the changed parts of a new archive.
 */
import fs from "node:fs";
import os from "node:os";
import zlib from "node:zlib";
import type { Compression } from "./config.ts";
import { Chunker, isAllZero, type ChunkerParams } from "./chunker.ts";
import { encodeHeader, paddingAfter, RECORD, BLOCK, TarParser, type TarListing } from "./tar.ts";
import { errnoCode, errorMessage } from "./errors.ts";

export type EntryType = "file" | "dir" | "symlink" | "hardlink";

export interface ArchiveEntry {
  /** Absolute path on disk to read from (files, and hard links whose first name was left out). */
  source: string;
  /** Name inside the archive: absolute path without the leading "/"; directories without a trailing "/". */
  name: string;
  type: EntryType;
  /** st_mode & 0o7777 */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** File size from the scan (0 for non-files). The archive holds the size found when the file is opened. */
  size: number;
  /** Modification time in ms (integer part from stat). */
  mtimeMs: number;
  /** Full-precision mtime in ns when known: the pax mtime keeps its fraction. */
  mtimeNs?: bigint;
  /** Symlink: its target as read; hard link: the archive name of the first entry with that inode. */
  linkTarget?: string;
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
}

/**
 * Piece sizes. gzip forgets everything beyond 32 KiB anyway, so small pieces cost little
 * ratio; zstd looks further back and gets larger pieces. Plain tar needs no content-defined
 * cuts at all: uncompressed, unchanged bytes stay unchanged.
 */
const PIECES: Record<Compression, ChunkerParams> = {
  gzip: { minSize: 32 << 10, avgGap: 32 << 10, maxSize: 256 << 10, readSize: 256 << 10 },
  zstd: { minSize: 64 << 10, avgGap: 128 << 10, maxSize: 1 << 20, readSize: 256 << 10 },
  none: { minSize: 1 << 20, avgGap: 0, maxSize: 1 << 20, readSize: 1 << 20 },
};

/** Pieces being compressed at once, and their bytes: enough to keep every core busy. */
const MAX_IN_FLIGHT = 8;
const MAX_IN_FLIGHT_BYTES = 8 << 20;
/** Compressed bytes gathered before one write(2). */
const OUT_BUFFER = 1 << 20;
const PROGRESS_EVERY_MS = 250;

type Compressor = (piece: Buffer) => Promise<Uint8Array>;

/**
 * Compression on worker threads, one per core: gzip through libdeflate (about twice as fast
 * as zlib at the same level, and a standard gzip member all the same), zstd through its
 * one-shot API. Each piece's memory is transferred to the worker and back, never copied;
 * the worker code is inline, so a compiled single-file executable needs no extra file.
 */
class CompressorPool {
  private static readonly SOURCE = `
    self.onmessage = (e) => {
      const { id, buf, len, kind, level } = e.data;
      try {
        const input = new Uint8Array(buf, 0, len);
        const out = kind === "gzip"
          ? Bun.gzipSync(input, { level, library: "libdeflate" })
          : Bun.zstdCompressSync(input, { level });
        const whole = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength;
        const o = whole ? out.buffer : out.slice().buffer;
        postMessage({ id, buf, out: o }, [buf, o]);
      } catch (err) {
        postMessage({ id, buf, error: String((err && err.message) || err) }, [buf]);
      }
    };`;
  private static url: string | undefined;
  private readonly workers: Array<{ worker: Worker; busy: number }> = [];
  private readonly pending = new Map<number, { resolve: (out: Uint8Array) => void; reject: (e: unknown) => void; slot: { busy: number } }>();
  private nextId = 0;

  constructor(
    private readonly kind: "gzip" | "zstd",
    private readonly level: number,
    count: number,
    /** Receives each piece's memory back from the worker. */
    private readonly recycle: (slab: ArrayBuffer) => void,
  ) {
    CompressorPool.url ??= URL.createObjectURL(new Blob([CompressorPool.SOURCE], { type: "application/javascript" }));
    for (let i = 0; i < count; i++) {
      const slot = { worker: new Worker(CompressorPool.url, { smol: true }), busy: 0 };
      slot.worker.onmessage = (e: MessageEvent) => this.onDone(e.data as { id: number; buf: ArrayBuffer; out?: ArrayBuffer; error?: string });
      slot.worker.onerror = (e: ErrorEvent) => this.failAll(new Error(`compression worker failed: ${e.message}`));
      this.workers.push(slot);
    }
  }

  readonly compress: Compressor = (piece) =>
    new Promise((resolve, reject) => {
      // the least busy worker: pieces differ in size, so strict turns would leave one idle
      let slot = this.workers[0]!;
      for (const w of this.workers) if (w.busy < slot.busy) slot = w;
      const id = this.nextId++;
      slot.busy++;
      this.pending.set(id, { resolve, reject, slot });
      const buf = piece.buffer as ArrayBuffer;
      slot.worker.postMessage({ id, buf, len: piece.length, kind: this.kind, level: this.level }, [buf]);
    });

  private onDone(m: { id: number; buf: ArrayBuffer; out?: ArrayBuffer; error?: string }): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    p.slot.busy--;
    this.recycle(m.buf);
    if (m.out) p.resolve(new Uint8Array(m.out));
    else p.reject(new Error(`${this.kind} compression failed: ${m.error}`));
  }

  private failAll(e: unknown): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  close(): void {
    for (const w of this.workers) w.worker.terminate();
  }
}

/** Worker threads for compression: one per core the process may use. */
function compressionThreads(): number {
  return Math.max(1, Math.min(16, os.availableParallelism()));
}

/**
 * Writes the output to the file descriptor and computes its MD5 and SHA-256, in order, on a
 * worker thread: the hashes cost ~2 ns a byte and a write can block for a long while when
 * the kernel throttles dirty pages; neither should hold up reading and cutting on the main
 * thread. Buffers are transferred (not copied) to the worker and come back for reuse. The
 * worker is inline source, so a compiled single-file executable needs no extra file.
 */
class OutputSink {
  private static readonly SOURCE = `
    const fs = require("node:fs");
    const md5 = new Bun.CryptoHasher("md5");
    const sha256 = new Bun.CryptoHasher("sha256");
    let fd = -1;
    let failed;
    self.onmessage = (e) => {
      const m = e.data;
      if (m.fd !== undefined) {
        fd = m.fd;
      } else if (m.buf) {
        if (!failed) {
          const v = new Uint8Array(m.buf, 0, m.len);
          try {
            let at = 0;
            while (at < v.length) at += fs.writeSync(fd, v, at, v.length - at);
            md5.update(v);
            sha256.update(v);
          } catch (err) {
            failed = { message: err.message, code: err.code, errno: err.errno, syscall: err.syscall };
          }
        }
        postMessage({ buf: m.buf, failed }, [m.buf]);
      } else {
        postMessage(failed ? { failed } : { md5: md5.digest("hex"), sha256: sha256.digest("hex") });
      }
    };`;
  /** One URL for the process: the worker loads it asynchronously, so it is never revoked. */
  private static url: string | undefined;
  private readonly worker: Worker;
  private free: ArrayBuffer[] = [];
  private outstanding = 0;
  private failure: unknown;
  private wake: (() => void) | undefined;
  private result: { md5: string; sha256: string } | undefined;

  constructor(fd: number) {
    OutputSink.url ??= URL.createObjectURL(new Blob([OutputSink.SOURCE], { type: "application/javascript" }));
    this.worker = new Worker(OutputSink.url, { smol: true });
    this.worker.postMessage({ fd });
    this.worker.onmessage = (e: MessageEvent) => {
      const m = e.data as { buf?: ArrayBuffer; md5?: string; sha256?: string; failed?: ErrnoFields };
      if (m.failed && this.failure === undefined) this.failure = errnoError(m.failed);
      if (m.buf) {
        this.outstanding--;
        this.free.push(m.buf);
      } else if (m.md5 && m.sha256) {
        this.result = { md5: m.md5, sha256: m.sha256 };
      }
      this.wake?.();
    };
    this.worker.onerror = (e: ErrorEvent) => {
      this.failure ??= new Error(`output worker failed: ${e.message}`);
      this.wake?.();
    };
  }

  /** Write and hash the first `len` bytes of `buf`; the buffer is handed over and must not be used again. */
  write(buf: ArrayBuffer, len: number): void {
    if (this.failure !== undefined) throw this.failure;
    this.outstanding++;
    this.worker.postMessage({ buf, len }, [buf]);
  }

  /** A buffer back from the worker, if one is free. */
  take(): ArrayBuffer | undefined {
    return this.free.pop();
  }

  /** Wait until at most `max` buffers are still being written; throws the write error if there was one. */
  async settle(max: number): Promise<void> {
    while (this.outstanding > max && this.failure === undefined) await new Promise<void>((r) => (this.wake = r));
    if (this.failure !== undefined) throw this.failure;
  }

  /** Wait for every write; the digests of everything written. */
  async finish(): Promise<{ md5: string; sha256: string }> {
    this.worker.postMessage({});
    while (!this.result && this.failure === undefined) await new Promise<void>((r) => (this.wake = r));
    if (this.failure !== undefined) throw this.failure;
    return this.result!;
  }

  close(): void {
    this.worker.terminate();
  }
}

interface ErrnoFields {
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
}

/** The worker's write error as the same kind of error the main thread would have seen. */
function errnoError(f: ErrnoFields): Error {
  return Object.assign(new Error(f.message), { code: f.code, errno: f.errno, syscall: f.syscall });
}

/** Output buffers the output worker may hold at once (OUT_BUFFER each). */
const MAX_WRITING = 4;

/** Orders compressed pieces, hashes them and writes them to the file descriptor. */
class OrderedOutput {
  private queue: Array<{ done: boolean; out?: Uint8Array; error?: unknown; settled: Promise<void>; piece: Buffer }> = [];
  private inFlightBytes = 0;
  private buf = Buffer.from(new ArrayBuffer(OUT_BUFFER));
  private fill = 0;
  private readonly sink: OutputSink;
  /** Bytes handed to the output worker. */
  written = 0;
  /** Compressed output of an all-zero piece, by length: sparse files cost no compression. */
  private zeroCache = new Map<number, Promise<Uint8Array>>();

  constructor(
    fd: number,
    private readonly compress: Compressor,
    /** Output may be the piece itself (no compression): then there is nothing to cache. */
    private readonly cacheZeros: boolean,
    /** Called with each piece once its output has been written. */
    private readonly done: (piece: Buffer) => void,
  ) {
    this.sink = new OutputSink(fd);
  }

  submit(piece: Buffer): void {
    let p: Promise<Uint8Array>;
    if (this.cacheZeros && piece.length >= BLOCK * 8 && isAllZero(piece)) {
      let cached = this.zeroCache.get(piece.length);
      if (!cached) {
        if (this.zeroCache.size >= 4) this.zeroCache.clear();
        cached = this.compress(piece);
        this.zeroCache.set(piece.length, cached);
      }
      p = cached;
    } else {
      p = this.compress(piece);
    }
    const item: (typeof this.queue)[number] = { done: false, settled: Promise.resolve(), piece };
    item.settled = p.then(
      (out) => {
        item.done = true;
        item.out = out;
      },
      (error) => {
        item.done = true;
        item.error = error ?? new Error("compression failed");
      },
    );
    this.inFlightBytes += piece.length;
    this.queue.push(item);
  }

  /** Write out every piece that is ready, in order; wait while too many are in flight. */
  async drain(all: boolean): Promise<void> {
    for (;;) {
      this.writeReady();
      await this.sink.settle(MAX_WRITING);
      const busy = this.queue.length > MAX_IN_FLIGHT || this.inFlightBytes > MAX_IN_FLIGHT_BYTES;
      if (this.queue.length === 0 || (!all && !busy)) return;
      await this.queue[0]!.settled;
    }
  }

  private writeReady(): void {
    while (this.queue.length > 0 && this.queue[0]!.done) {
      const item = this.queue.shift()!;
      this.inFlightBytes -= item.piece.length;
      if (item.error !== undefined) throw item.error;
      this.put(item.out!);
      this.done(item.piece);
    }
  }

  private put(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, this.buf.length - this.fill);
      this.buf.set(bytes.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === this.buf.length) this.flush();
    }
  }

  flush(): void {
    if (this.fill === 0) return;
    this.sink.write(this.buf.buffer as ArrayBuffer, this.fill);
    this.written += this.fill;
    this.buf = Buffer.from(this.sink.take() ?? new ArrayBuffer(OUT_BUFFER));
    this.fill = 0;
  }

  /** Let pieces still being compressed finish quietly after a failure; stop the worker. */
  abandon(): void {
    for (const item of this.queue) item.settled.catch(() => {});
    this.queue = [];
    this.sink.close();
  }

  /** Flush, wait for every write, and return the digests. */
  async finish(): Promise<{ md5: string; sha256: string }> {
    this.flush();
    try {
      return await this.sink.finish();
    } finally {
      this.sink.close();
    }
  }
}

function nsOf(e: { mtimeMs: number; mtimeNs?: bigint }): bigint {
  if (e.mtimeNs !== undefined) return e.mtimeNs;
  const ms = Math.floor(e.mtimeMs);
  return BigInt(ms) * 1_000_000n + BigInt(Math.round((e.mtimeMs - ms) * 1e6));
}

/** A stable 32-bit hash of a name (FNV-1a over UTF-16 units), for header cut decisions. */
function nameToken(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const PADDING = new Uint8Array(BLOCK);
const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

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
  const c = opts.compression;
  const pool = c === "none" ? undefined : new CompressorPool(c, opts.level, compressionThreads(), (slab) => chunker.recycle(slab));
  const compress: Compressor = pool ? pool.compress : (piece) => Promise.resolve(piece);
  // with no compression the output is the piece itself: it is free again once written
  const out = new OrderedOutput(fd, compress, c !== "none", (piece) => chunker.recycle(piece.buffer as ArrayBuffer));
  const chunker: Chunker = new Chunker(PIECES[c], (piece) => out.submit(piece));
  const skipped: string[] = [];
  /** Hard-link targets that were left out → the name that took their place (or none yet). */
  const replaced = new Map<string, string | null>();
  const warn = (code: ArchiveWarningCode, path: string, message: string) => opts.onWarning?.({ code, path, message });
  const signal = opts.signal;
  let inputBytes = 0;
  let count = 0;
  let lastProgress = performance.now();

  const progress = () => {
    if (!opts.onProgress) return;
    const now = performance.now();
    if (now - lastProgress < PROGRESS_EVERY_MS) return;
    lastProgress = now;
    opts.onProgress({ inputBytes, outputBytes: out.written });
  };

  const emit = (bytes: Uint8Array) => {
    chunker.append(bytes);
    inputBytes += bytes.length;
  };

  /** Stream one open file's content; returns false when it had to be zero-filled after a read error. */
  const copyFile = async (e: ArchiveEntry, fdIn: number, size: number): Promise<{ complete: boolean; endChecked: boolean }> => {
    let remaining = size;
    let readError: unknown;
    let reads = 0;
    let endChecked = false;
    while (remaining > 0) {
      if (signal?.aborted) throw abortError(signal);
      // ask for one byte more than is left: a short read then proves the file ended where its
      // header says, and a full one that it grew, without another system call
      const dst = chunker.space(remaining + 1);
      let n: number;
      try {
        n = fs.readSync(fdIn, dst, 0, dst.length, null);
      } catch (err) {
        readError = err;
        break;
      }
      reads++;
      if (n === 0) break;
      if (n > remaining) {
        warn("FILE_CHANGED", e.source, `${e.source}: grew while being read; archived its first ${size} bytes`);
        n = remaining;
        endChecked = true;
      } else if (n === remaining && dst.length > remaining) {
        endChecked = reads === 1; // a file read in several calls may have changed between them
      }
      chunker.commit(n);
      remaining -= n;
      inputBytes += n;
      if (remaining > 0) await out.drain(false);
      progress();
    }
    if (readError !== undefined) {
      warn("FILE_UNREADABLE", e.source, `${e.source}: read failed after ${size - remaining} of ${size} bytes (${errorMessage(readError)}); the rest is zero-filled in the archive`);
    } else if (remaining > 0) {
      warn("FILE_CHANGED", e.source, `${e.source}: shrank by ${remaining} bytes while being read; zero-filled to ${size} bytes in the archive`);
    }
    if (remaining > 0) {
      chunker.appendZeros(remaining);
      inputBytes += remaining;
      endChecked = true;
    }
    return { complete: readError === undefined, endChecked };
  };

  try {
    for await (const e of entries) {
      if (signal?.aborted) throw abortError(signal);
      let type = e.type;
      let linkTarget = e.linkTarget;
      if (type === "hardlink" && linkTarget !== undefined && replaced.has(linkTarget)) {
        // the first name of this inode was left out: this one carries the content instead
        const instead = replaced.get(linkTarget);
        if (instead) linkTarget = instead;
        else type = "file";
      }

      let fdIn: number | undefined;
      let size = 0;
      let mtimeNs = nsOf(e);
      let openedMtimeMs = 0;
      if (type === "file") {
        try {
          fdIn = fs.openSync(e.source, OPEN_FLAGS);
        } catch (err) {
          const c = errnoCode(err);
          if (c === "ENOENT" || c === "ENOTDIR") warn("FILE_VANISHED", e.source, `${e.source}: vanished before it could be read; left out`);
          else if (c === "ELOOP") warn("FILE_CHANGED", e.source, `${e.source}: is no longer a regular file; left out`);
          else warn("FILE_UNREADABLE", e.source, `${e.source}: cannot be opened (${errorMessage(err)}); left out`);
          skipped.push(e.name);
          if (e.type === "file") replaced.set(e.name, null);
          continue;
        }
        const st = fs.fstatSync(fdIn);
        if (!st.isFile()) {
          fs.closeSync(fdIn);
          warn("FILE_CHANGED", e.source, `${e.source}: is no longer a regular file; left out`);
          skipped.push(e.name);
          if (e.type === "file") replaced.set(e.name, null);
          continue;
        }
        size = st.size;
        openedMtimeMs = st.mtimeMs;
        // (a hard link standing in for its left-out first name has no scanned size to compare)
        if ((e.type === "file" && size !== e.size) || Math.floor(st.mtimeMs) !== Math.floor(e.mtimeMs)) {
          // archive the file as it is now, with the metadata that goes with this content
          warn("FILE_CHANGED", e.source, `${e.source}: changed since the scan (size ${e.size} → ${size}); archived as found`);
          mtimeNs = nsOf({ mtimeMs: st.mtimeMs });
        }
        if (e.type === "hardlink" && e.linkTarget !== undefined) replaced.set(e.linkTarget, e.name);
      }

      try {
        const header = encodeHeader({
          name: e.name,
          type,
          mode: e.mode,
          uid: e.uid,
          gid: e.gid,
          uname: e.uname,
          gname: e.gname,
          size,
          mtimeNs,
          linkTarget,
        });
        chunker.boundary(nameToken(e.name));
        emit(header);
        count++;
        if (fdIn !== undefined) {
          const { complete, endChecked } = await copyFile(e, fdIn, size);
          if (!complete) skipped.push(e.name);
          const pad = paddingAfter(size);
          if (pad) emit(PADDING.subarray(0, pad));
          if (!endChecked) {
            const after = fs.fstatSync(fdIn);
            if (after.size > size) warn("FILE_CHANGED", e.source, `${e.source}: grew while being read; archived its first ${size} bytes`);
            else if (after.mtimeMs !== openedMtimeMs) warn("FILE_CHANGED", e.source, `${e.source}: changed while being read`);
          }
        }
      } finally {
        if (fdIn !== undefined) fs.closeSync(fdIn);
      }
      await out.drain(false);
      progress();
    }

    // end of archive: two zero blocks, then zeros to a whole record like GNU tar
    const end = 2 * BLOCK;
    const total = inputBytes + end;
    emit(new Uint8Array(end + ((RECORD - (total % RECORD)) % RECORD)));
    chunker.finish();
    await out.drain(true);
    pool?.close();
    const { md5, sha256 } = await out.finish();
    opts.onProgress?.({ inputBytes, outputBytes: out.written });
    return { size: out.written, md5, sha256, entries: count, inputBytes, skipped };
  } catch (err) {
    out.abandon();
    throw err;
  } finally {
    pool?.close();
  }
}

/** The compression of an archive, from its first bytes (its name may lie). */
export function detectCompression(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  return "none";
}

export interface ListedEntry {
  name: string;
  type: string;
  size: number;
  mode: number;
  /** Modification time in ms since the epoch (with the fraction the archive holds). */
  mtime: number;
  mtimeNs: bigint;
  linkTarget?: string;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
}

/** Entries of an archive (gzip, zstd or plain tar, detected from its content). */
export async function listArchive(file: string): Promise<ListedEntry[]> {
  const head = new Uint8Array(4);
  const fdh = fs.openSync(file, "r");
  try {
    fs.readSync(fdh, head, 0, 4, 0);
  } finally {
    fs.closeSync(fdh);
  }
  const compression = detectCompression(head);
  const input = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  const stream: NodeJS.ReadableStream =
    compression === "gzip" ? input.pipe(zlib.createGunzip())
    : compression === "zstd" ? input.pipe(zlib.createZstdDecompress())
    : input;
  const parser = new TarParser();
  const found: ListedEntry[] = [];
  const onEntry = (t: TarListing) =>
    found.push({
      name: t.name,
      type: t.type,
      size: t.size,
      mode: t.mode,
      mtime: Number(t.mtimeNs / 1_000_000n) + Number(t.mtimeNs % 1_000_000n) / 1e6,
      mtimeNs: t.mtimeNs,
      linkTarget: t.linkTarget,
      uid: t.uid,
      gid: t.gid,
      uname: t.uname,
      gname: t.gname,
    });
  for await (const chunk of stream) {
    parser.push(chunk as Uint8Array, onEntry);
    if (parser.ended) break;
  }
  input.destroy();
  return found;
}
