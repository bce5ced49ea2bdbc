/**
 * Decompressing an archive: its file read in chunks, the frames of a zstd stream walked (what
 * the decompressor does not say), the decompressor, and the same on a thread of its own
 * (inflate.worker.ts), so that decompressing overlaps what the main thread does with the tar
 * stream and the hashing.
 */
import { Readable, type Transform } from "node:stream";
import zlib from "node:zlib";
import type { detectCompression } from "../archive/writer.ts";
import { startWorkerFile } from "../common/worker-file.ts";
import { piecesAt } from "../state/fsutil.ts";
import type { FrameTriples } from "./frames-aside.ts";

export type Compression = ReturnType<typeof detectCompression>;

/**
 * The file open on `fd`, from `start`, in chunks of `pieceBytes` (1 MiB); the descriptor stays
 * open (a stream given it would close it on error).
 */
export function readFd(
  fd: number, start = 0, onRead?: (position: number) => void, pieceBytes = 1 << 20, pool?: PiecePool,
): Generator<Buffer> {
  return piecesAt(fd, start, () => pool?.take() ?? Buffer.allocUnsafe(pieceBytes), onRead);
}

/**
 * Pieces read into again once their reader is done with them. A pass that reads pieces faster
 * than the collector frees them holds tens of MiB of garbage at its peak; a backup host proving
 * many copies at once holds that many times over. A piece is given back only by the last
 * stage to see it (the tar parser, whose callers keep nothing of a piece after their call).
 */
export class PiecePool {
  private readonly free: Buffer[] = [];
  private readonly whole = new Map<ArrayBufferLike, Buffer>();
  get made(): number {
    return this.whole.size;
  }
  constructor(readonly pieceBytes: number) {}

  take(): Buffer {
    const b = this.free.pop();
    if (b) return b;
    // a memory of its own (never a slice of a shared slab), so the piece is known by it
    const fresh = Buffer.allocUnsafeSlow(this.pieceBytes);
    this.whole.set(fresh.buffer, fresh);
    return fresh;
  }

  give(piece: Uint8Array): void {
    const b = this.whole.get(piece.buffer);
    if (b && !this.free.includes(b)) this.free.push(b);
  }
}

/**
 * Output in pieces of 256 KiB, not zlib's 16 KiB: each piece costs a hop between threads and a
 * pass through the stream stages, which took as long as the decompression itself.
 */
export const INFLATED_PIECE = 1 << 18;

export function decompressor(c: Compression): Transform | undefined {
  if (c === "gzip") return zlib.createGunzip({ chunkSize: INFLATED_PIECE });
  if (c === "zstd") return zlib.createZstdDecompress({ chunkSize: INFLATED_PIECE });
  return undefined;
}

/**
 * The frames of a zstd stream walked as the bytes go by (headers read, blocks stepped over),
 * for what the decompressor does not say: a stream cut within a frame (it ends without a word)
 * and bytes after the last frame that are no frame. Only block sizes are read: this costs
 * nothing next to decompressing.
 */
export class ZstdFrames {
  /** Byte of the file where the frame being read starts. */
  private frameAt = 0;
  private at = 0;
  /** What is wanted next, and how many bytes of it. */
  private state: "magic" | "descriptor" | "header" | "block" | "skipSize" = "magic";
  private need = 4;
  /** Room for the longest header after the descriptor: window byte, 4-byte dictionary id, 8-byte content size. */
  private readonly buf = new Uint8Array(16);
  private fill = 0;
  /** Bytes to step over (a block's content, a checksum, a skippable frame). */
  private skip = 0;
  private checksum = false;
  private lastBlock = false;
  /** Bytes of the frame header's content size field (0: the header does not say). */
  private sizeBytes = 0;
  private contentSize: number | undefined;

  constructor(private readonly told?: FrameListener) {}

  /** The next bytes of the file; a string when they are not a zstd stream. */
  push(chunk: Uint8Array): string | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        this.at += n;
        continue;
      }
      const n = Math.min(this.need - this.fill, chunk.length - i);
      this.buf.set(chunk.subarray(i, i + n), this.fill);
      this.fill += n;
      i += n;
      this.at += n;
      if (this.fill < this.need) break;
      this.fill = 0;
      const bad = this.step();
      if (bad) return bad;
    }
    return undefined;
  }

  /** At the end of the file: a string when it ends within a frame. */
  end(): string | undefined {
    if (this.state === "magic" && this.fill === 0 && this.skip === 0) return undefined;
    return `the zstd frame that starts at byte ${this.frameAt} ends early, at byte ${this.at} of the file (its end)`;
  }

  private step(): string | undefined {
    const b = this.buf;
    switch (this.state) {
      case "magic": {
        this.frameAt = this.at - 4;
        const magic = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
        if (magic === 0xfd2fb528) return this.want("descriptor", 1);
        if ((magic & 0xfffffff0) === 0x184d2a50) return this.want("skipSize", 4);
        const what = "bytes after the last frame, or a damaged one";
        return `byte ${this.frameAt} of the file is not the start of a zstd frame (${what})`;
      }
      case "descriptor": {
        const d = b[0]!;
        if (d & 0x08) return `the zstd frame at byte ${this.frameAt} has a reserved bit set`;
        const single = (d & 0x20) !== 0;
        const fcs = [single ? 1 : 0, 2, 4, 8][d >> 6]!;
        this.sizeBytes = fcs;
        this.contentSize = undefined;
        this.checksum = (d & 0x04) !== 0;
        const rest = (single ? 0 : 1) + [0, 1, 2, 4][d & 0x03]! + fcs;
        this.lastBlock = false;
        return rest > 0 ? this.want("header", rest) : this.want("block", 3);
      }
      case "header": {
        // the content size comes last in the header, when there is one
        const field = b.subarray(this.need - this.sizeBytes, this.need);
        this.contentSize = field.length > 0 ? contentSizeOf(field) : undefined;
        this.told?.headed?.(this.frameAt, this.contentSize);
        return this.want("block", 3);
      }
      case "block": {
        const h = b[0]! | (b[1]! << 8) | (b[2]! << 16);
        const type = (h >> 1) & 0x03;
        if (type === 3) return `the zstd block at byte ${this.at - 3} of the file has the reserved type`;
        this.lastBlock = (h & 1) === 1;
        this.skip = type === 1 ? 1 : h >>> 3;
        if (!this.lastBlock) return this.want("block", 3);
        this.skip += this.checksum ? 4 : 0;
        this.told?.framed({ start: this.frameAt, end: this.at + this.skip, contentSize: this.contentSize });
        return this.want("magic", 4);
      }
      case "skipSize":
        this.skip = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
        this.told?.framed({ start: this.frameAt, end: this.at + this.skip, contentSize: 0 });
        return this.want("magic", 4);
      default:
        return undefined;
    }
  }

  private want(state: ZstdFrames["state"], n: number): undefined {
    this.state = state;
    this.need = n;
    return undefined;
  }
}

/** Where a zstd frame lies in the file, and the content it says it holds (when it says). */
export interface ZstdFrame {
  start: number;
  end: number;
  contentSize: number | undefined;
}

/** Who is told of the frames as the walk finds them, before all of a frame is in. */
export interface FrameListener {
  /** A frame's header is read: where the frame starts and what it says it holds. */
  headed?(start: number, contentSize: number | undefined): void;
  /** A frame's end is known (its last block's header read, or a skippable frame's size). */
  framed(f: ZstdFrame): void;
}

/** A frame header's content size field (little-endian; a 2-byte field counts from 256). */
function contentSizeOf(field: Uint8Array): number {
  let n = 0;
  for (let i = field.length - 1; i >= 0; i--) n = n * 256 + field[i]!;
  return field.length === 2 ? n + 256 : n;
}

/**
 * What the main thread sends the decompression worker: the archive to read, how many pieces it
 * took, the buffers of pieces it is done with (to fill again).
 */
export type InflateRequest =
  | { fd: number; compression: "gzip" | "zstd"; aside?: boolean }
  | { taken: number }
  | { free: ArrayBuffer };

type Stage = "read" | "frame" | "decode";

/**
 * What the worker sends back: a piece of the tar stream, bytes of it stepped over (their frames
 * to be checked aside), its end, or why it stopped (`size`: of the file, read).
 */
export type InflateReply =
  | { data: Uint8Array; size: number }
  | { stepped: number; frames: FrameTriples; size: number }
  | { end: true; size: number; cut: string | undefined }
  | { error: string; where: Stage; size: number };

export interface InflateEvents {
  /** Bytes of the file read so far. */
  size: (n: number) => void;
  /** The stage that failed, before the stream is destroyed. */
  failed: (where: Stage, e: Error) => void;
  /** The file ends within a zstd frame (the decompressor says nothing then). */
  cut: (why: string) => void;
  /**
   * Given, frames that hold only file content are not decompressed by the worker but handed
   * here, to be checked aside (frames-aside.ts); the stream then carries, in their place,
   * the bytes of tar stream they hold as a `Stepped`.
   */
  aside?: (frames: FrameTriples) => void;
}

/** Bytes of the tar stream in the worker's stream that are not there: frames set aside hold them. */
export interface Stepped {
  stepped: number;
}

/** Pieces the main thread holds before the worker waits: 4 MiB. */
const HELD_PIECES = 16;

/**
 * The tar stream of the archive open on `fd`, decompressed by a worker while the caller takes
 * it, as Buffers (and `Stepped` when `on.aside` is given); `free` hands a piece's buffer back
 * once the caller is done with it; `stop` ends the thread, resolved once it has. Buffers go
 * back and forth: moved between threads, a new one for each piece is garbage that neither
 * thread's collector counts until late (some 25 MiB more at a million entries).
 */
export function inflatedByWorker(
  fd: number,
  compression: "gzip" | "zstd",
  on: InflateEvents,
): { tar: Readable; free: (piece: Buffer) => void; stop: () => Promise<void> } {
  const worker = startWorkerFile("./core/restore/inflate.worker.ts", new URL("./inflate.worker.ts", import.meta.url));
  const closed = new Promise<void>((resolve) => worker.addEventListener("close", () => resolve()));
  const lent = new Set<ArrayBufferLike>();
  let owed = 0;
  const take = (n: number) => worker.postMessage({ taken: n } satisfies InflateRequest);
  const stream = new Readable({
    objectMode: true,
    highWaterMark: HELD_PIECES,
    read() {
      if (owed > 0) take(owed);
      owed = 0;
    },
    destroy(err, done) {
      void worker.terminate();
      done(err);
    },
  });
  worker.onmessage = (ev: MessageEvent<InflateReply>) => {
    const m = ev.data;
    on.size(m.size);
    if ("data" in m || "stepped" in m) {
      if ("stepped" in m) on.aside?.(m.frames);
      else lent.add(m.data.buffer);
      const piece = "stepped" in m
        ? ({ stepped: m.stepped } satisfies Stepped)
        : Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      if (stream.push(piece)) take(1);
      else owed++;
    } else if ("end" in m) {
      if (m.cut) on.cut(m.cut);
      stream.push(null);
    } else {
      const e = new Error(m.error);
      on.failed(m.where, e);
      stream.destroy(e);
    }
  };
  worker.onerror = (ev) => stream.destroy(new Error(`the decompression thread failed: ${ev.message}`));
  worker.postMessage({ fd, compression, aside: on.aside !== undefined } satisfies InflateRequest);
  const free = (piece: Buffer) => {
    // a buffer it did not lend (stream stages may join pieces) is left to the collector
    if (!lent.delete(piece.buffer)) return;
    const buffer = piece.buffer as ArrayBuffer;
    worker.postMessage({ free: buffer } satisfies InflateRequest, [buffer]);
  };
  // the descriptor it reads is closed once the pass is over: the thread must have stopped by then
  const stop = () => {
    stream.destroy();
    return closed;
  };
  return { tar: stream, free, stop };
}
