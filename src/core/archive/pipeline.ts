/**
 * The archive writer's threads: compression on worker threads, one per core (gzip through
 * libdeflate, zstd through the system's libzstd or Bun's own), then one output worker that
 * writes to the file descriptor in order and hashes what it writes. Compressed bytes never pass
 * through the main thread: it only reads, cuts and dispatches, and its heap (which may hold a
 * large file list) sees no garbage from them. How the threads talk and how the written archive
 * is proven: pieces.ts.
 */
import fs from "node:fs";
import os from "node:os";
import type { Compression } from "../common/config.ts";
import { startWorkerFile } from "../common/worker-file.ts";
import { isAllZero } from "./chunker.ts";
import { BLOCK } from "./tar.ts";
import { checkPieces, pieceHash, type CheckRequest, type CompressReply, type CompressRequest, type ErrnoFields, type Expectation, type PatchRequest, type PieceToWrite, type ReserveRequest, type SinkReply, type SinkRequest } from "./pieces.ts";

/** The written archive did not prove restorable; the message says what did not match. */
export class ArchiveUnprovenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ArchiveUnprovenError";
  }
}

/** What compresses, unless the workers find the system's libzstd (libzstd.ts). */
const ENGINES: Record<Compression, string> = { gzip: "libdeflate", zstd: "Bun's zstd", none: "none" };

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

/** Worker threads for compression: one per core the process may use. */
export function compressionThreads(): number {
  return Math.max(1, Math.min(16, os.availableParallelism()));
}

/** The output worker's write error as the same kind of error the main thread would have seen. */
function errnoError(f: ErrnoFields): Error {
  return Object.assign(new Error(f.message), { code: f.code, errno: f.errno, syscall: f.syscall });
}

/** Lengths and hashes of the compressed pieces in order: where each must be found in the file. */
class PieceTable {
  private lens = new Uint32Array(1024);
  private hashes = new BigUint64Array(1024);
  count = 0;
  /** Pieces whose length and hash are known (a worker's reply can come after the sink wrote the piece). */
  known = 0;

  set(seq: number, len: number, hash: bigint): void {
    if (seq >= this.lens.length) {
      const grow = <T extends Uint32Array | BigUint64Array>(a: T, make: (n: number) => T): T => {
        const b = make(Math.max(seq + 1, a.length * 2));
        b.set(a as never);
        return b;
      };
      this.lens = grow(this.lens, (n) => new Uint32Array(n));
      this.hashes = grow(this.hashes, (n) => new BigUint64Array(n));
    }
    this.lens[seq] = len;
    this.hashes[seq] = hash;
    this.count = Math.max(this.count, seq + 1);
    this.known++;
  }

  /**
   * The third check of the proof: read the file back and find every piece, by its length and
   * hash, where the order of the pieces puts it; nothing may follow the last one. The later
   * half is checked by the output worker (`share`) while this thread checks the first.
   */
  async checkFile(fd: number, share: (m: CheckRequest) => Promise<string | undefined>): Promise<void> {
    const half = this.count >> 1;
    let middle = 0;
    for (let seq = 0; seq < half; seq++) middle += this.lens[seq]!;
    let end = middle;
    for (let seq = half; seq < this.count; seq++) end += this.lens[seq]!;
    const lens = this.lens.slice(half, this.count);
    const hashes = this.hashes.slice(half, this.count);
    const later = share({ check: { first: half, at: middle, total: this.count, lens, hashes } });
    const first = checkPieces(fd, this.lens.subarray(0, half), this.hashes.subarray(0, half), 0, 0, this.count);
    const second = await later;
    if (first ?? second) throw new ArchiveUnprovenError((first ?? second)!);
    const size = fs.fstatSync(fd).size;
    if (size !== end) throw new ArchiveUnprovenError(`the file holds ${size} bytes, its ${this.count} pieces ${end}`);
  }

  /** The hashes of the pieces that hold bytes, in order (piece-index.ts). */
  pieceHashes(): BigUint64Array {
    const out = new BigUint64Array(this.count);
    let n = 0;
    for (let seq = 0; seq < this.count; seq++) if (this.lens[seq]! > 0) out[n++] = this.hashes[seq]!;
    return out.slice(0, n);
  }
}

export interface PipelineOptions {
  compression: Compression;
  level: number;
  threads: number;
  maxPiece: number;
  systemZstd?: boolean;
  flushBehind?: boolean;
  /** Make the proof (pieces.ts); off only to measure what it costs. */
  prove: boolean;
  /** Called after the last write, before the file is read back (see ArchiveOptions). */
  onWritten?: (fd: number) => void;
  /**
   * Plain tar with nothing patched in later: this thread takes the SHA-256 of each piece as it
   * hands it to the output worker, which then has only the MD5 to take. Both digests are the
   * longest single-threaded work there is, and on one thread they would be the run's length.
   */
  sha256Here?: boolean;
}

export interface PipelineResult {
  md5: string;
  sha256: string;
  size: number;
  /** Entries and bytes of the tar stream the proof parsed (0 when not proving). */
  entries: number;
  tarBytes: number;
  /** The hash of every piece in order, when proving (piece-index.ts). */
  pieces?: BigUint64Array;
}

export class PiecePipeline {
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
  private result: Extract<SinkReply, { md5: string }> | undefined;
  private readonly zeroCache = new Map<number, { bytes: ArrayBuffer; hash: bigint }>();
  private readonly zeroAsked = new Set<number>();
  private readonly maxInFlight: number;
  private readonly table = new PieceTable();
  private expectations: Expectation[] = [];
  private readonly sha256: Bun.CryptoHasher | undefined;
  private checked: ((verdict: string | undefined) => void) | undefined;
  /** Bytes written by the output worker so far. */
  written = 0;
  /** What compresses: "libzstd 1.5.4" when the workers found the system's libzstd. */
  engine: string;

  constructor(
    private readonly fd: number,
    private readonly opts: PipelineOptions,
    /** Receives each piece's memory back once nothing refers to it. */
    private readonly recycle: (slab: ArrayBuffer) => void,
  ) {
    this.maxInFlight = opts.threads * IN_FLIGHT_PER_THREAD + IN_FLIGHT_SLACK;
    this.engine = ENGINES[opts.compression];
    this.sink = startWorkerFile("./core/archive/sink.worker.ts", new URL("./sink.worker.ts", import.meta.url));
    this.sink.onmessage = (e: MessageEvent<SinkReply>) => this.fromSink(e.data);
    this.sink.onerror = (e: ErrorEvent) => this.fail(new Error(`output worker failed: ${e.message}`));
    const ports = opts.compression === "none" ? [] : this.startCompressors(opts);
    this.sha256 = opts.compression === "none" && opts.sha256Here ? new Bun.CryptoHasher("sha256") : undefined;
    const setup: SinkRequest = { fd, ports, flushBehind: opts.flushBehind === true && process.platform === "linux", prove: opts.prove, sha256: !this.sha256 };
    this.sink.postMessage(setup, ports);
  }

  private startCompressors(opts: PipelineOptions): MessagePort[] {
    const ports: MessagePort[] = [];
    for (let i = 0; i < opts.threads; i++) {
      const slot = { worker: startWorkerFile("./core/archive/compress.worker.ts", new URL("./compress.worker.ts", import.meta.url)), busy: 0 };
      const channel = new MessageChannel();
      const kind = opts.compression as "gzip" | "zstd";
      slot.worker.postMessage({ port: channel.port1, kind, level: opts.level, maxPiece: opts.maxPiece, systemZstd: opts.systemZstd ?? true }, [channel.port1]);
      ports.push(channel.port2);
      slot.worker.onmessage = (e: MessageEvent<CompressReply>) => {
        if ("engine" in e.data) {
          this.engine = e.data.engine || this.engine;
          return;
        }
        slot.busy--;
        this.fromCompressor(e.data);
      };
      slot.worker.onerror = (e: ErrorEvent) => this.fail(new Error(`compression worker failed: ${e.message}`));
      this.compressors.push(slot);
    }
    return ports;
  }

  /** An entry as it went into the stream, for the sink to compare with what it parses. */
  expect(e: Expectation): void {
    if (this.opts.prove) this.expectations.push(e);
  }

  private sendExpectations(): void {
    if (this.expectations.length === 0) return;
    const m: SinkRequest = { expect: this.expectations };
    this.sink.postMessage(m);
    this.expectations = [];
  }

  submit(piece: Buffer): void {
    if (this.failure !== undefined) throw this.failure;
    this.sendExpectations();
    const seq = this.seq++;
    const len = piece.length;
    const buf = piece.buffer as ArrayBuffer;
    this.lengths.set(seq, len);
    this.inFlightBytes += len;
    this.slabsOut++;
    if (this.opts.compression === "none") {
      this.sha256?.update(piece);
      if (this.opts.prove) this.table.set(seq, len, pieceHash(piece));
      return this.toSink({ seq, out: buf, outLen: len, inLen: len });
    }
    let keep = false;
    if (len >= 8 * BLOCK && isAllZero(piece)) {
      const cached = this.zeroCache.get(len);
      if (cached) {
        // the piece's memory is free at once: the sink knows its input is zeros
        const copy = cached.bytes.slice(0);
        if (this.opts.prove) this.table.set(seq, copy.byteLength, cached.hash);
        this.slabsOut--;
        this.recycle(buf);
        return this.toSink({ seq, out: copy, outLen: copy.byteLength, inLen: len, zeros: true });
      }
      keep = !this.zeroAsked.has(len) && this.zeroAsked.size < ZERO_CACHE;
      if (keep) this.zeroAsked.add(len);
    }
    // the least busy worker: pieces differ in size, so strict turns would leave one idle
    let slot = this.compressors[0]!;
    for (const c of this.compressors) if (c.busy < slot.busy) slot = c;
    slot.busy++;
    const m: CompressRequest = { seq, buf, len, keep };
    slot.worker.postMessage(m, [buf]);
  }

  /** Reserve `len` bytes in the file, in sequence, for a header written later (streamed.ts); its sequence number. */
  reserve(len: number): number {
    if (this.failure !== undefined) throw this.failure;
    this.sendExpectations();
    const seq = this.seq++;
    this.lengths.set(seq, 0);
    const m: ReserveRequest = { seq, reserve: len };
    this.sink.postMessage(m);
    return seq;
  }

  /** Fill a reserved place with `framed` (exactly its length) once every piece before this call is written. */
  patch(reserved: number, framed: Uint8Array, header: Uint8Array): void {
    if (this.failure !== undefined) throw this.failure;
    this.sendExpectations();
    const seq = this.seq++;
    this.lengths.set(seq, 0);
    if (this.opts.prove) {
      this.table.set(reserved, framed.length, pieceHash(framed));
      this.table.set(seq, 0, pieceHash(new Uint8Array(0)));
    }
    const bytes = framed.slice().buffer as ArrayBuffer;
    const block = header.slice().buffer as ArrayBuffer;
    const m: PatchRequest = { seq, patch: reserved, bytes, header: block };
    this.sink.postMessage(m, [bytes, block]);
  }

  private toSink(m: PieceToWrite, transfer: ArrayBuffer[] = [m.out]): void {
    this.sink.postMessage(m, transfer);
  }

  /** Too much is in flight, or something failed: call room() before more. */
  full(): boolean {
    return this.failure !== undefined || this.seq - this.done > this.maxInFlight || this.inFlightBytes > MAX_IN_FLIGHT_BYTES || this.slabsOut > this.maxInFlight;
  }

  /** Wait while too much is in flight; throws the first failure (a write error keeps its errno). */
  async room(): Promise<void> {
    while (this.failure === undefined && this.full()) await new Promise<void>((r) => (this.wake = r));
    if (this.failure !== undefined) throw this.failure;
  }

  /** Wait for every piece to be written and proven; the digests of everything written. */
  async finish(): Promise<PipelineResult> {
    this.sendExpectations();
    const m: SinkRequest = { end: this.seq };
    this.sink.postMessage(m);
    while (!this.result && this.failure === undefined) await new Promise<void>((r) => (this.wake = r));
    if (this.failure !== undefined) throw this.failure;
    const { md5, written, entries, tarBytes } = this.result!;
    const sha256 = this.sha256 ? this.sha256.digest("hex") : this.result!.sha256;
    this.opts.onWritten?.(this.fd);
    if (this.opts.prove) {
      while (this.table.known < this.seq && this.failure === undefined) await new Promise<void>((r) => (this.wake = r));
      if (this.failure !== undefined) throw this.failure;
      if (this.table.count !== this.seq) throw new ArchiveUnprovenError(`${this.table.count} pieces were reported, ${this.seq} were made`);
      await this.table.checkFile(this.fd, (m) => this.askSink(m));
      return { md5, sha256, size: written, entries, tarBytes, pieces: this.table.pieceHashes() };
    }
    return { md5, sha256, size: written, entries, tarBytes };
  }

  /** The output worker's share of reading the file back. */
  private askSink(m: CheckRequest): Promise<string | undefined> {
    return new Promise((resolve) => {
      this.checked = resolve;
      this.sink.postMessage(m, [m.check.lens.buffer as ArrayBuffer, m.check.hashes.buffer as ArrayBuffer]);
    });
  }

  close(): void {
    for (const c of this.compressors) c.worker.terminate();
    this.sink.terminate();
  }

  private fromCompressor(m: Exclude<CompressReply, { engine: string }>): void {
    if ("error" in m) {
      this.slabsOut--;
      this.recycle(m.input);
      this.fail(new ArchiveUnprovenError(`piece ${m.seq} (${this.compressionName()}): ${m.error}`));
      return;
    }
    if (this.opts.prove) this.table.set(m.seq, m.outLen, m.outHash);
    if (m.copy && this.zeroCache.size < ZERO_CACHE) this.zeroCache.set(m.inLen, { bytes: m.copy, hash: m.outHash });
    this.wake?.();
  }

  private compressionName(): string {
    return this.opts.compression;
  }

  private fromSink(m: SinkReply): void {
    if ("checked" in m) {
      this.checked?.(m.checked);
      this.checked = undefined;
    } else if ("back" in m) {
      this.slabsOut--;
      this.recycle(m.back);
    } else if ("done" in m) {
      for (; this.done < m.done; this.done++) {
        this.inFlightBytes -= this.lengths.get(this.done) ?? 0;
        this.lengths.delete(this.done);
      }
      this.written = m.written;
      if (m.failed) this.fail(errnoError(m.failed));
      else if (m.unproven) this.fail(new ArchiveUnprovenError(m.unproven));
    } else if ("failed" in m) {
      this.fail(errnoError(m.failed));
    } else if ("unproven" in m) {
      this.fail(new ArchiveUnprovenError(m.unproven));
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
