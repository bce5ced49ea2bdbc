/**
 * The decompression of a pass on a thread of its own (inflate.ts): reads the file open on the
 * descriptor it is given (threads share them), walks zstd frames, decompresses (zstd frames of
 * the size shoot writes whole, by libzstd), and sends the tar stream in pieces, waiting while
 * the main thread holds enough of them. A compiled binary holds this file as an entry point of
 * its own (scripts/build.ts).
 */
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { openLibzstd, type Libzstd } from "../archive/libzstd.ts";
import { errorMessage } from "../common/errors.ts";
import { decompressor, INFLATED_PIECE, readFd, ZstdFrames } from "./inflate.ts";
import type { InflateReply, InflateRequest, ZstdFrame } from "./inflate.ts";

declare const self: Worker;

/** Pieces sent and not yet taken: enough to keep the main thread busy, few enough to hold little. */
const WINDOW = 8;

let inFlight = 0;
/** Buffers the main thread is done with, filled again. */
const pool: ArrayBuffer[] = [];
let resume: (() => void) | undefined;

function reply(m: InflateReply, transfer: ArrayBuffer[] = []): void {
  self.postMessage(m, transfer);
}

/** A frame is decompressed whole by libzstd when it says it holds at most this; a larger one goes to the stream. */
const WHOLE_FRAME = 4 << 20;

function whole(f: ZstdFrame): f is ZstdFrame & { contentSize: number } {
  return f.contentSize !== undefined && f.contentSize <= WHOLE_FRAME;
}

async function run(fd: number, compression: "gzip" | "zstd"): Promise<void> {
  let size = 0;
  let where: "read" | "frame" | "decode" | undefined;
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      const reuse = pool.length > 0 && pool.at(-1)!.byteLength >= chunk.length;
      const buf = reuse ? pool.pop()! : new ArrayBuffer(Math.max(chunk.length, INFLATED_PIECE));
      const data = new Uint8Array(buf, 0, chunk.length);
      data.set(chunk);
      reply({ data, size }, [buf]);
      if (++inFlight < WINDOW) return done();
      resume = done;
    },
  });
  const byFrame = compression === "zstd" ? FrameByFrame.open(out) : undefined;
  const frames = compression === "zstd" ? new ZstdFrames(byFrame && ((f) => byFrame.framed(f))) : undefined;
  async function* reading(): AsyncGenerator<Buffer> {
    try {
      for (const chunk of readFd(fd)) {
        size += chunk.length;
        const bad = frames?.push(chunk);
        if (bad) {
          where ??= "frame";
          throw new Error(bad);
        }
        if (!byFrame || byFrame.streaming) {
          yield chunk;
          continue;
        }
        // whole frames here; what is left once a frame is too large for that goes to the stream
        const rest = await byFrame.take(chunk).catch((e: unknown) => {
          where ??= "decode";
          throw e;
        });
        if (rest) yield rest;
      }
      // what is left of a frame that ends early: the stream decompressor says how much of it reads
      const left = byFrame && !byFrame.streaming ? byFrame.toStream() : undefined;
      if (left?.length) yield left;
    } catch (e) {
      where ??= "read";
      throw e;
    }
  }
  const inflate = decompressor(compression)!;
  inflate.on("error", () => (where ??= "decode"));
  try {
    await pipeline(Readable.from(reading()), inflate, out);
  } catch (e) {
    reply({ error: e instanceof Error ? e.message : String(e), where: where ?? "decode", size });
    return;
  }
  reply({ end: true, size, cut: frames?.end() });
}

/**
 * zstd frames decompressed whole by libzstd, one call each, which takes a fraction of the
 * time the stream decompressor does. The walk of the frames (ZstdFrames) says where each ends
 * and what it holds; from the first frame that does not say, or says more than WHOLE_FRAME,
 * everything goes to the stream decompressor instead (a single-frame archive from zstd's
 * command line). Holds the bytes of one frame at most.
 */
class FrameByFrame {
  streaming = false;
  private readonly known: ZstdFrame[] = [];
  /** Bytes taken, not yet decompressed: `buf` up to `held`, from byte `heldAt` of the file (where a frame starts). */
  private buf = Buffer.allocUnsafeSlow(2 << 20);
  private held = 0;
  private heldAt = 0;
  private out = new ArrayBuffer(INFLATED_PIECE);

  private constructor(private readonly z: Libzstd, private readonly sink: Writable) {}

  static open(sink: Writable): FrameByFrame | undefined {
    const z = openLibzstd();
    return z && new FrameByFrame(z, sink);
  }

  framed(f: ZstdFrame): void {
    this.known.push(f);
  }

  /**
   * The next bytes of the file, every one from its start: its whole frames decompressed and
   * written on; once streaming, what the stream decompressor must take from here.
   */
  async take(chunk: Buffer): Promise<Buffer | undefined> {
    this.hold(chunk);
    let done = this.heldAt;
    let f = this.known[0];
    for (; f && whole(f) && f.end <= this.heldAt + this.held; f = this.known[0]) {
      this.known.shift();
      await this.decompress(f);
      done = f.end;
    }
    // what was decompressed let go at once: `buf` starts where the next frame does
    this.buf.copyWithin(0, done - this.heldAt, this.held);
    this.held -= done - this.heldAt;
    this.heldAt = done;
    // a frame that does not say it is small, or far larger than any whole one without its end
    return (f && !whole(f)) || this.held > 2 * WHOLE_FRAME ? this.toStream() : undefined;
  }

  private hold(chunk: Buffer): void {
    if (this.held + chunk.length > this.buf.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.held + chunk.length));
      this.buf.copy(bigger, 0, 0, this.held);
      this.buf = bigger;
    }
    this.buf.set(chunk, this.held);
    this.held += chunk.length;
  }

  /** What is held, for the stream decompressor; nothing is held here again. */
  toStream(): Buffer {
    this.streaming = true;
    return this.buf.subarray(0, this.held);
  }

  /** The frame `f`, held whole, decompressed and written on. */
  private async decompress(f: ZstdFrame & { contentSize: number }): Promise<void> {
    // one byte of room more than the frame says: a frame that holds more fails, not cut short
    if (this.out.byteLength < f.contentSize + 1) this.out = new ArrayBuffer(f.contentSize + 1);
    let n: number;
    try {
      n = this.z.decompress(this.buf.subarray(f.start - this.heldAt, f.end - this.heldAt), this.out);
    } catch (e) {
      throw new Error(`the zstd frame at byte ${f.start} does not decode: ${errorMessage(e)}`);
    }
    if (n !== f.contentSize) {
      throw new Error(`the zstd frame at byte ${f.start} holds ${n} bytes, its header says ${f.contentSize}`);
    }
    // in pieces of the size the pool's buffers have
    for (let at = 0; at < n; at += INFLATED_PIECE) {
      const piece = Buffer.from(this.out, at, Math.min(INFLATED_PIECE, n - at));
      await new Promise<void>((resolve, reject) => this.sink.write(piece, (e) => (e ? reject(e) : resolve())));
    }
  }
}

self.onmessage = (ev: MessageEvent<InflateRequest>) => {
  const m = ev.data;
  if ("fd" in m) {
    void run(m.fd, m.compression);
    return;
  }
  if ("free" in m) {
    pool.push(m.free);
    return;
  }
  inFlight -= m.taken;
  const r = resume;
  if (r && inFlight < WINDOW) {
    resume = undefined;
    r();
  }
};
