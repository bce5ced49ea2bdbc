/**
 * The decompression of a pass on a thread of its own (inflate.ts): reads the file open on the
 * descriptor it is given (threads share them), walks zstd frames, decompresses (the zstd frames
 * and gzip members shoot writes whole, by libzstd and libdeflate: whole-pieces.ts), and sends
 * the tar stream in pieces, waiting while the main thread holds enough of them. A compiled
 * binary holds this file as an entry point of its own (scripts/build.ts).
 */
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { decompressor, INFLATED_PIECE, readFd, ZstdFrames } from "./inflate.ts";
import type { InflateReply, InflateRequest } from "./inflate.ts";
import { EMPTY_MEMBER, FrameByFrame, MemberByMember } from "./whole-pieces.ts";

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
  const byPiece = compression === "zstd" ? byFrame : MemberByMember.open(out);
  const decodeFailed = (e: unknown): never => {
    where ??= "decode";
    throw e;
  };
  async function* reading(): AsyncGenerator<Buffer> {
    try {
      for (const chunk of readFd(fd)) {
        size += chunk.length;
        const bad = frames?.push(chunk);
        if (bad) {
          where ??= "frame";
          throw new Error(bad);
        }
        if (!byPiece || byPiece.streaming) {
          yield chunk;
          continue;
        }
        // whole pieces here; what is left once one cannot be read whole goes to the stream
        const rest = await byPiece.take(chunk).catch(decodeFailed);
        if (rest) yield rest;
      }
      const left = await byPiece?.finish().catch(decodeFailed);
      if (left?.length) yield left;
      // the stream decompressor fails on no bytes at all (as it should on an empty file); a gzip
      // member that holds nothing tells it that every member was read
      else if (compression === "gzip" && byPiece && !byPiece.streaming && byPiece.decoded > 0) yield EMPTY_MEMBER;
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
