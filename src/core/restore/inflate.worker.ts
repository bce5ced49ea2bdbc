/**
 * The decompression of a pass on a thread of its own (inflate.ts): reads the file open on the
 * descriptor it is given (threads share them), walks zstd frames, decompresses (the zstd frames
 * and gzip members shoot writes whole, by libzstd and libdeflate: whole-pieces.ts), and sends
 * the tar stream in pieces, waiting while the main thread holds enough of them. A compiled
 * binary holds this file as an entry point of its own (scripts/build.ts).
 */
import { Readable, Writable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import { decompressor, INFLATED_PIECE, readFd, ZstdFrames } from "./inflate.ts";
import type { InflateReply, InflateRequest } from "./inflate.ts";
import { FrameByFrame, MemberByMember, type SetAside, type WholePieces } from "./whole-pieces.ts";

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

/**
 * The file's pieces decompressed whole while they can be: "all" when every one was, else the
 * bytes the stream decompressor must start from (an empty file goes to it too, which names it).
 */
async function wholePieces(
  byPiece: WholePieces, nextChunk: () => Buffer | undefined, failed: (e: unknown) => never,
): Promise<Buffer | "all"> {
  for (let c = nextChunk(); c; c = nextChunk()) {
    const rest = await byPiece.take(c).catch(failed);
    if (rest) return rest;
  }
  const left = await byPiece.finish().catch(failed);
  if (left) return left;
  return byPiece.decoded > 0 ? "all" : Buffer.alloc(0);
}

/**
 * Where the tar stream goes: to the main thread in pieces (or the bytes stepped over), `size`
 * bytes of the file read by then.
 */
function sender(size: () => number): Writable {
  return new Writable({
    objectMode: true,
    highWaterMark: 1,
    write(chunk: Buffer | SetAside, _enc, done) {
      if (!Buffer.isBuffer(chunk)) reply({ ...chunk, size: size() });
      else send(chunk, size());
      if (++inFlight < WINDOW) return done();
      resume = done;
    },
  });
}

/** A piece of the tar stream, in a buffer the main thread gave back when there is one. */
function send(chunk: Buffer, size: number): void {
  const reuse = pool.length > 0 && pool.at(-1)!.byteLength >= chunk.length;
  const buf = reuse ? pool.pop()! : new ArrayBuffer(Math.max(chunk.length, INFLATED_PIECE));
  const data = new Uint8Array(buf, 0, chunk.length);
  data.set(chunk);
  reply({ data, size }, [buf]);
}

async function run(fd: number, compression: "gzip" | "zstd", aside: boolean): Promise<void> {
  let size = 0;
  let where: "read" | "frame" | "decode" | undefined;
  const out = sender(() => size);
  const byFrame = compression === "zstd" ? FrameByFrame.open(out, aside) : undefined;
  const frames = compression === "zstd" ? new ZstdFrames(byFrame) : undefined;
  const byPiece = compression === "zstd" ? byFrame : MemberByMember.open(out);
  const file = readFd(fd);
  /** The file's next piece, counted and its zstd frames walked; undefined at its end. */
  const nextChunk = (): Buffer | undefined => {
    let r: IteratorResult<Buffer>;
    try {
      r = file.next();
    } catch (e) {
      where ??= "read";
      throw e;
    }
    if (r.done) return undefined;
    size += r.value.length;
    const bad = frames?.push(r.value);
    if (bad) {
      where ??= "frame";
      throw new Error(bad);
    }
    return r.value;
  };
  async function* streamed(first: Buffer | undefined): AsyncGenerator<Buffer> {
    if (first?.length) yield first;
    for (let c = nextChunk(); c; c = nextChunk()) yield c;
  }
  try {
    // whole pieces first; the stream decompressor only for what cannot be read so
    const decodeFailed = (e: unknown): never => {
      where ??= "decode";
      throw e;
    };
    const rest = byPiece ? await wholePieces(byPiece, nextChunk, decodeFailed) : undefined;
    if (rest === "all") {
      out.end();
      await finished(out);
    } else {
      const inflate = decompressor(compression)!;
      inflate.on("error", () => (where ??= "decode"));
      await pipeline(Readable.from(streamed(rest)), inflate, out);
    }
  } catch (e) {
    reply({ error: e instanceof Error ? e.message : String(e), where: where ?? "decode", size });
    return;
  }
  reply({ end: true, size, cut: frames?.end() });
}

self.onmessage = (ev: MessageEvent<InflateRequest>) => {
  const m = ev.data;
  if ("fd" in m) {
    void run(m.fd, m.compression, m.aside === true);
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
