/**
 * The decompression of a pass that need not hash the archive (inflate.ts): reads the file open
 * on the descriptor it is given (threads share them), walks zstd frames, decompresses, and
 * sends the tar stream in pieces, waiting while the main thread holds enough of them. A
 * compiled binary holds this file as an entry point of its own (scripts/build.ts).
 */
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { decompressor, INFLATED_PIECE, readFd, ZstdFrames, type InflateReply, type InflateRequest } from "./inflate.ts";

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
  const frames = compression === "zstd" ? new ZstdFrames() : undefined;
  let size = 0;
  let where: "read" | "frame" | "decode" | undefined;
  function* reading(): Generator<Buffer> {
    try {
      for (const chunk of readFd(fd)) {
        size += chunk.length;
        const bad = frames?.push(chunk);
        if (bad) {
          where ??= "frame";
          throw new Error(bad);
        }
        yield chunk;
      }
    } catch (e) {
      where ??= "read";
      throw e;
    }
  }
  const inflate = decompressor(compression)!;
  inflate.on("error", () => (where ??= "decode"));
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
