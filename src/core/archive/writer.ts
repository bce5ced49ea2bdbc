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
import zlib from "node:zlib";
import type { Compression } from "../common/config.ts";
import { Chunker, isAllZero, type ChunkerParams } from "./chunker.ts";
import { encodeHeader, paddingAfter, RECORD, BLOCK, TarFormatError, TarParser, type TarListing, type TarOwnership, type TarType } from "./tar.ts";
import { errnoCode, errorMessage } from "../common/errors.ts";
import { startWorker } from "../common/inline-worker.ts";
import { LIBZSTD_SOURCE } from "./libzstd.ts";
import { OPEN_SYNC_RANGE_SOURCE, SYNC_FILE_RANGE_WRITE } from "../common/libc-source.ts";

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
}

/**
 * Piece sizes. gzip forgets everything beyond 32 KiB anyway, so small pieces cost little
 * ratio; zstd looks further back and gets larger pieces (~190 KiB), with a minimum so that
 * only a third of the bytes are hashed. Pieces of up to 1 MiB made zstd 1.5 % smaller but
 * took a whole server run over 120 MiB at times. Measured on a 1 GiB tree: +4 % (gzip) and
 * +3 % (zstd) size against one stream, and 0.2 % of the archive sent by rsync after 1 % of
 * the files changed. Plain tar needs no content-defined cuts: unchanged bytes stay unchanged.
 */
const PIECES: Record<Compression, ChunkerParams> = {
  gzip: { minSize: 32 << 10, avgGap: 32 << 10, maxSize: 256 << 10, readSize: 256 << 10 },
  zstd: { minSize: 128 << 10, avgGap: 64 << 10, maxSize: 512 << 10, readSize: 256 << 10 },
  none: { minSize: 1 << 20, avgGap: 0, maxSize: 1 << 20, readSize: 1 << 20 },
};

const PROGRESS_EVERY_MS = 250;

/** What compresses, unless the workers find the system's libzstd (libzstd.ts). */
const ENGINES: Record<Compression, string> = { gzip: "libdeflate", zstd: "Bun's zstd", none: "none" };

/*
 * The pieces' journey. Every message is a plain object; memory is transferred, never copied.
 *   main → compression worker   { seq, buf, len, keep }        a piece to compress
 *   compression worker → sink   { seq, buf, len, pooled? }     its compressed bytes (over a port)
 *   sink → compression worker   { free }                       a pooled buffer, written, to fill again
 *   compression worker → main   { seq, buf, len, copy?, error? } the piece's memory back
 *   main → sink                 { seq, buf, len, back }        bytes to write as they are
 *   sink → main                 { back } | { done, written, failed? } | final digests
 * The sink (output worker) writes pieces strictly in sequence order and hashes exactly what it
 * writes. Compressed bytes never pass through the main thread: it only reads, cuts and
 * dispatches, and its heap (which may hold a large file list) sees no garbage from them.
 */

const COMPRESS_SOURCE = `
  let sink, kind, level, zstd, room;
  const pool = [];
  ${LIBZSTD_SOURCE}
  self.onmessage = (e) => {
    const m = e.data;
    if (m.port) {
      sink = m.port;
      kind = m.kind;
      level = m.level;
      if (kind === "zstd" && m.systemZstd) zstd = openLibzstd();
      if (zstd) room = zstd.bound(m.maxPiece);
      sink.onmessage = (ev) => pool.push(ev.data.free);
      postMessage({ engine: zstd ? zstd.version : "" });
      return;
    }
    try {
      const input = new Uint8Array(m.buf, 0, m.len);
      if (zstd) {
        let o = pool.pop();
        if (o === undefined || o.byteLength < zstd.bound(m.len)) o = new ArrayBuffer(Math.max(room, zstd.bound(m.len)));
        const n = zstd.compress(input, o, level);
        const copy = m.keep ? o.slice(0, n) : undefined;
        sink.postMessage({ seq: m.seq, buf: o, len: n, pooled: true }, [o]);
        postMessage({ seq: m.seq, buf: m.buf, len: m.len, copy }, copy ? [m.buf, copy] : [m.buf]);
        return;
      }
      const out = kind === "gzip"
        ? Bun.gzipSync(input, { level, library: "libdeflate" })
        : Bun.zstdCompressSync(input, { level });
      const whole = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength;
      const o = whole ? out.buffer : out.slice().buffer;
      const copy = m.keep ? o.slice(0) : undefined;
      sink.postMessage({ seq: m.seq, buf: o, len: o.byteLength }, [o]);
      postMessage({ seq: m.seq, buf: m.buf, len: m.len, copy }, copy ? [m.buf, copy] : [m.buf]);
    } catch (err) {
      postMessage({ seq: m.seq, buf: m.buf, len: m.len, error: String((err && err.message) || err) }, [m.buf]);
    }
  };`;

/**
 * Written pieces are garbage to the output worker (unless they go back to their compression
 * worker to be filled again, as libzstd's do), but its engine collects them late: the
 * heap sees small objects, not the memory they hold outside it. A collection after every
 * 16 MiB keeps that memory from piling up (measured on the 1 GiB bench tree with zstd: peak
 * RSS of a whole server run 118-125 MiB without, 111-114 MiB with, at the same speed).
 */
const GC_EVERY = 16 << 20;

/**
 * With flushBehind, the output worker asks the kernel to start writing each 8 MiB to disk as
 * soon as it is written (sync_file_range, Linux), so the fsync after the archive finds little
 * left to do and the host never holds the whole archive as dirty pages. Measured on a 581 MiB
 * archive: that fsync took 0.45-0.63 s after the last write without it.
 */
const FLUSH_BEHIND = 8 << 20;

/** Compressed bytes gathered before one write(2). */
const OUT_BUFFER = 512 << 10;

const SINK_SOURCE = `
  const fs = require("node:fs");
  const md5 = new Bun.CryptoHasher("md5");
  const sha256 = new Bun.CryptoHasher("sha256");
  const OUT = new Uint8Array(${OUT_BUFFER});
  const held = new Map();
  let fd = -1, fill = 0, next = 0, end = -1, written = 0, collected = 0, failed;
  let syncRange, onDisk = 0, flushed = 0;
  ${OPEN_SYNC_RANGE_SOURCE}
  function emit(v) {
    let at = 0;
    while (at < v.length) at += fs.writeSync(fd, v, at, v.length - at);
    onDisk += v.length;
    if (syncRange && onDisk - flushed >= ${FLUSH_BEHIND}) {
      // start writing back, do not wait; errors wait for the fsync
      syncRange(fd, flushed, onDisk - flushed, ${SYNC_FILE_RANGE_WRITE});
      flushed = onDisk;
    }
    md5.update(v);
    sha256.update(v);
  }
  // Bytes reach the file in the order they were put: what waits in OUT goes out before
  // anything else is written, including a piece large enough to be written as it is.
  function put(v) {
    const direct = v.length >= OUT.length / 2;
    if (fill > 0 && (direct || fill + v.length > OUT.length)) {
      emit(OUT.subarray(0, fill));
      fill = 0;
    }
    if (direct) emit(v);
    else {
      OUT.set(v, fill);
      fill += v.length;
    }
    written += v.length;
  }
  function fail(err) {
    failed = { message: err.message, code: err.code, errno: err.errno, syscall: err.syscall };
  }
  function advance() {
    let moved = false;
    while (held.has(next)) {
      const [m, port] = held.get(next);
      held.delete(next);
      if (!failed) {
        try { put(new Uint8Array(m.buf, 0, m.len)); } catch (err) { fail(err); }
      }
      if (m.back) postMessage({ back: m.buf }, [m.buf]);
      else if (m.pooled) port.postMessage({ free: m.buf }, [m.buf]);
      else if ((collected += m.len) >= ${GC_EVERY}) {
        collected = 0;
        Bun.gc(true);
      }
      next++;
      moved = true;
    }
    if (end >= 0 && next === end) {
      if (!failed && fill > 0) {
        try { emit(OUT.subarray(0, fill)); } catch (err) { fail(err); }
      }
      postMessage(failed ? { failed } : { md5: md5.digest("hex"), sha256: sha256.digest("hex"), written });
      end = -2;
    } else if (moved) {
      postMessage({ done: next, written, failed });
    }
  }
  function onPiece(m, port) {
    held.set(m.seq, [m, port]);
    advance();
  }
  self.onmessage = (e) => {
    const m = e.data;
    if (m.fd !== undefined) {
      fd = m.fd;
      if (m.flushBehind) syncRange = openSyncRange();
      for (const p of m.ports) p.onmessage = (ev) => onPiece(ev.data, p);
    } else if (m.end !== undefined) {
      end = m.end;
      advance();
    } else onPiece(m);
  };`;

/** Worker threads for compression: one per core the process may use. */
function compressionThreads(): number {
  return Math.max(1, Math.min(16, os.availableParallelism()));
}

interface ErrnoFields {
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
}

/** The output worker's write error as the same kind of error the main thread would have seen. */
function errnoError(f: ErrnoFields): Error {
  return Object.assign(new Error(f.message), { code: f.code, errno: f.errno, syscall: f.syscall });
}

/**
 * Pieces in flight (compressing, or compressed and waiting for their turn to be written): two
 * per thread keeps every thread busy, a few more absorb a slow piece ahead of quick ones.
 * The byte bound caps memory whatever the piece sizes.
 */
const IN_FLIGHT_PER_THREAD = 2;
const IN_FLIGHT_SLACK = 4;
const MAX_IN_FLIGHT_BYTES = 4 << 20;
/** Compressed all-zero pieces kept by length (sparse files cost no compression). */
const ZERO_CACHE = 4;

/**
 * Compression on worker threads, one per core: gzip through libdeflate (about twice as fast
 * as zlib at the same level, and a standard gzip member all the same), zstd through the
 * system's libzstd with a context and output buffers kept from piece to piece (libzstd.ts),
 * or Bun's one-shot zstd where that library is missing; then one output worker that writes to the file descriptor and computes MD5
 * and SHA-256 in order (~2 ns a byte, and a write may block while the kernel throttles dirty
 * pages: neither should hold up reading and cutting).
 */
class PiecePipeline {
  private readonly sink: Worker;
  private readonly compressors: Array<{ worker: Worker; busy: number }> = [];
  private seq = 0;
  private done = 0;
  /** Piece memory handed to a worker and not yet back: returns can lag behind the writes. */
  private slabsOut = 0;
  private readonly lengths = new Map<number, number>();
  private inFlightBytes = 0;
  private failure: unknown;
  private wake: (() => void) | undefined;
  private result: { md5: string; sha256: string; written: number } | undefined;
  private readonly zeroCache = new Map<number, ArrayBuffer>();
  private readonly zeroAsked = new Set<number>();
  private readonly maxInFlight: number;
  /** Bytes written by the output worker so far. */
  written = 0;
  /** What compresses: "libzstd 1.5.4" when the workers found the system's libzstd. */
  engine: string;

  private readonly compression: Compression;

  constructor(
    fd: number,
    opts: Pick<ArchiveOptions, "compression" | "level" | "systemZstd" | "flushBehind"> & { threads: number },
    /** Receives each piece's memory back once nothing refers to it. */
    private readonly recycle: (slab: ArrayBuffer) => void,
  ) {
    const { compression, level, threads } = opts;
    this.compression = compression;
    this.maxInFlight = threads * IN_FLIGHT_PER_THREAD + IN_FLIGHT_SLACK;
    this.engine = ENGINES[compression];
    this.sink = startWorker(SINK_SOURCE);
    this.sink.onmessage = (e: MessageEvent) => this.fromSink(e.data as SinkMessage);
    this.sink.onerror = (e: ErrorEvent) => this.fail(new Error(`output worker failed: ${e.message}`));
    const ports: MessagePort[] = [];
    if (compression !== "none") {
      for (let i = 0; i < threads; i++) {
        const slot = { worker: startWorker(COMPRESS_SOURCE), busy: 0 };
        const channel = new MessageChannel();
        slot.worker.postMessage({ port: channel.port1, kind: compression, level, maxPiece: PIECES[compression].maxSize, systemZstd: opts.systemZstd ?? true }, [channel.port1]);
        ports.push(channel.port2);
        slot.worker.onmessage = (e: MessageEvent) => {
          if ("engine" in e.data) {
            this.engine = (e.data as { engine: string }).engine || this.engine;
            return;
          }
          slot.busy--;
          this.fromCompressor(e.data as CompressorMessage);
        };
        slot.worker.onerror = (e: ErrorEvent) => this.fail(new Error(`compression worker failed: ${e.message}`));
        this.compressors.push(slot);
      }
    }
    this.sink.postMessage({ fd, ports, flushBehind: opts.flushBehind === true && process.platform === "linux" }, ports);
  }

  submit(piece: Buffer): void {
    if (this.failure !== undefined) throw this.failure;
    const seq = this.seq++;
    const len = piece.length;
    const buf = piece.buffer as ArrayBuffer;
    this.lengths.set(seq, len);
    this.inFlightBytes += len;
    if (this.compression === "none") {
      this.slabsOut++;
      this.sink.postMessage({ seq, buf, len, back: true }, [buf]);
      return;
    }
    let keep = false;
    if (len >= 8 * BLOCK && isAllZero(piece)) {
      const cached = this.zeroCache.get(len);
      if (cached) {
        const copy = cached.slice(0);
        this.sink.postMessage({ seq, buf: copy, len: copy.byteLength }, [copy]);
        this.recycle(buf);
        return;
      }
      keep = !this.zeroAsked.has(len) && this.zeroAsked.size < ZERO_CACHE;
      if (keep) this.zeroAsked.add(len);
    }
    // the least busy worker: pieces differ in size, so strict turns would leave one idle
    let slot = this.compressors[0]!;
    for (const c of this.compressors) if (c.busy < slot.busy) slot = c;
    slot.busy++;
    this.slabsOut++;
    slot.worker.postMessage({ seq, buf, len, keep }, [buf]);
  }

  /** Wait while too much is in flight; throws the first failure (a write error keeps its errno). */
  async room(): Promise<void> {
    while (
      this.failure === undefined &&
      (this.seq - this.done > this.maxInFlight || this.inFlightBytes > MAX_IN_FLIGHT_BYTES || this.slabsOut > this.maxInFlight)
    ) {
      await new Promise<void>((r) => (this.wake = r));
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /** Wait for every piece to be written; the digests of everything written. */
  async finish(): Promise<{ md5: string; sha256: string; size: number }> {
    this.sink.postMessage({ end: this.seq });
    while (!this.result && this.failure === undefined) await new Promise<void>((r) => (this.wake = r));
    if (this.failure !== undefined) throw this.failure;
    const { md5, sha256, written } = this.result!;
    return { md5, sha256, size: written };
  }

  close(): void {
    for (const c of this.compressors) c.worker.terminate();
    this.sink.terminate();
  }

  private fromCompressor(m: CompressorMessage): void {
    this.slabsOut--;
    this.recycle(m.buf);
    if (m.copy && this.zeroCache.size < ZERO_CACHE) this.zeroCache.set(m.len, m.copy);
    if (m.error !== undefined) this.fail(new Error(`${this.compression} compression failed: ${m.error}`));
    this.wake?.();
  }

  private fromSink(m: SinkMessage): void {
    if ("back" in m) {
      this.slabsOut--;
      this.recycle(m.back);
    } else if ("done" in m) {
      for (; this.done < m.done; this.done++) {
        this.inFlightBytes -= this.lengths.get(this.done) ?? 0;
        this.lengths.delete(this.done);
      }
      this.written = m.written;
      if (m.failed) this.fail(errnoError(m.failed));
    } else if ("failed" in m) {
      this.fail(errnoError(m.failed));
    } else {
      this.result = m;
    }
    this.wake?.();
  }

  private fail(e: unknown): void {
    this.failure ??= e;
    this.wake?.();
  }
}

type CompressorMessage = { seq: number; buf: ArrayBuffer; len: number; copy?: ArrayBuffer; error?: string };
type SinkMessage =
  | { back: ArrayBuffer }
  | { done: number; written: number; failed?: ErrnoFields }
  | { failed: ErrnoFields }
  | { md5: string; sha256: string; written: number };

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
  const c = opts.compression;
  const out: PiecePipeline = new PiecePipeline(fd, { ...opts, threads: opts.threads ?? compressionThreads() }, (slab) => chunker.recycle(slab));
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
      if (remaining > 0) await out.room();
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
          fdIn = openSource(e.source, e.uid);
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
        if ((e.type === "file" && size !== e.size) || mtimeMoved(st.mtimeMs, e)) {
          // archive the file as it is now, with the metadata that goes with this content
          const what = e.type === "file" && size !== e.size ? `size ${e.size} → ${size} bytes` : "modification time";
          warn("FILE_CHANGED", e.source, `${e.source}: changed since the scan (${what}); archived as found`);
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
          dumpdir: e.dumpdir,
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
      await out.room();
      progress();
    }

    // end of archive: two zero blocks, then zeros to a whole record like GNU tar
    const end = 2 * BLOCK;
    const total = inputBytes + end;
    emit(new Uint8Array(end + ((RECORD - (total % RECORD)) % RECORD)));
    chunker.finish();
    const { md5, sha256, size } = await out.finish();
    opts.onProgress?.({ inputBytes, outputBytes: size });
    return { size, md5, sha256, entries: count, inputBytes, skipped, engine: out.engine };
  } finally {
    out.close();
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

/**
 * The entries of an archive (gzip, zstd or plain tar, detected from its content), a batch per
 * piece read, so that a caller can list millions without holding them. Rejects at the end when
 * the tar stream stops before its end-of-archive marker.
 */
export async function* archiveEntries(file: string): AsyncGenerator<ListedEntry[]> {
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
  let count = 0;
  try {
    for await (const chunk of stream) {
      const batch: ListedEntry[] = [];
      parser.push(chunk as Uint8Array, (t: TarListing) =>
        batch.push({
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
        }));
      count += batch.length;
      if (batch.length > 0) yield batch;
      if (parser.ended) break;
    }
  } finally {
    input.destroy();
  }
  if (!parser.ended) throw new TarFormatError(`the archive ends before its end-of-archive marker (truncated after ${count} entries?)`);
}
