/**
 * The decompression of a pass (inflate.ts): reads the file open on the descriptor it is given,
 * walks zstd frames, decompresses (the zstd frames and gzip members shoot writes whole, by
 * libzstd and libdeflate: whole-pieces.ts; anything else by the stream decompressor) and sends
 * the tar stream in pieces through `reply`, waiting while the reader holds enough of them.
 * It runs on a thread of its own (inflate.worker.ts) or on the reader's (where that thread has
 * time to spare and another thread would cost memory); the messages are the same either way.
 */
import { Readable, Writable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import { startWorkerFile } from "../common/worker-file.ts";
import { piecesAt } from "../state/fsutil.ts";
import { decompressor, INFLATED_PIECE, ZstdFrames } from "./inflate.ts";
import { FrameByFrame, MemberByMember, type WholePieces } from "./whole-pieces.ts";

/**
 * What the reader sends the decompression: the archive to read, how many pieces it took, the
 * buffers of pieces it is done with (to fill again).
 */
export type InflateRequest = { fd: number; compression: "gzip" | "zstd" } | { taken: number } | { free: ArrayBuffer };

type Stage = "read" | "frame" | "decode";

/** What comes back: a piece of the tar stream, its end, or why it stopped (`size`: of the file, read). */
export type InflateReply =
  | { data: Uint8Array; size: number }
  | { end: true; size: number; cut: string | undefined }
  | { error: string; where: Stage; size: number };

/** Pieces sent and not yet taken: enough to keep the reader busy, few enough to hold little. */
const WINDOW = 8;
/** Bytes of the file read at a time. */
const READ_PIECE = 1 << 20;

export type Reply = (m: InflateReply, transfer?: ArrayBuffer[]) => void;

export interface Inflater {
  /** A message from the reader. */
  request(m: InflateRequest): void;
  /** No more reading (the reader is done, or gave up): resolved once the file is no longer read. */
  stop(): Promise<void>;
}

/**
 * The file's pieces decompressed whole while they can be: "all" when every one was, else the
 * bytes the stream decompressor starts from.
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
  // an empty file goes to the stream decompressor too, which names it
  return byPiece.decoded > 0 ? "all" : Buffer.alloc(0);
}

export function inflater(reply: Reply): Inflater {
  let inFlight = 0;
  /** Buffers the reader is done with, filled again. */
  const pool: ArrayBuffer[] = [];
  let resume: (() => void) | undefined;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();

  /** Where the tar stream goes: to the reader in pieces, `size` bytes of the file read by then. */
  const sender = (size: () => number) =>
    new Writable({
      write(chunk: Buffer, _enc, done) {
        if (stopped) return done(new Error("the read was stopped"));
        const reuse = pool.length > 0 && pool.at(-1)!.byteLength >= chunk.length;
        const buf = reuse ? pool.pop()! : new ArrayBuffer(Math.max(chunk.length, INFLATED_PIECE));
        const data = new Uint8Array(buf, 0, chunk.length);
        data.set(chunk);
        reply({ data, size: size() }, [buf]);
        if (++inFlight < WINDOW) return done();
        resume = done;
      },
    });

  async function run(fd: number, compression: "gzip" | "zstd"): Promise<void> {
    let size = 0;
    let where: "read" | "frame" | "decode" | undefined;
    const out = sender(() => size);
    const byFrame = compression === "zstd" ? FrameByFrame.open(out) : undefined;
    const frames = compression === "zstd" ? new ZstdFrames(byFrame && ((f) => byFrame.framed(f))) : undefined;
    const byPiece = compression === "zstd" ? byFrame : MemberByMember.open(out);
    // while pieces are decompressed whole, each read is copied at once: one buffer serves them all
    const once = Buffer.allocUnsafeSlow(READ_PIECE);
    const file = piecesAt(fd, 0, () => (byPiece && !byPiece.streaming ? once : Buffer.allocUnsafe(READ_PIECE)));
    /** The file's next piece, counted and its zstd frames walked; undefined at its end. */
    const nextChunk = (): Buffer | undefined => {
      if (stopped) throw new Error("the read was stopped");
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
      // stopped by the reader: nobody reads on
      if (stopped) return;
      reply({ error: e instanceof Error ? e.message : String(e), where: where ?? "decode", size });
      return;
    }
    reply({ end: true, size, cut: frames?.end() });
  }

  const wake = () => {
    const r = resume;
    if (r && (inFlight < WINDOW || stopped)) {
      resume = undefined;
      r();
    }
  };
  return {
    request(m) {
      if ("fd" in m) running = run(m.fd, m.compression);
      else if ("free" in m) pool.push(m.free);
      else {
        inFlight -= m.taken;
        wake();
      }
    },
    stop() {
      stopped = true;
      wake();
      return running;
    },
  };
}

export interface InflateEvents {
  /** Bytes of the file read so far. */
  size: (n: number) => void;
  /** The stage that failed, before the stream is destroyed. */
  failed: (where: Stage, e: Error) => void;
  /** The file ends within a zstd frame (the decompressor says nothing then). */
  cut: (why: string) => void;
}

/** Pieces the reader holds before the decompression waits: 4 MiB. */
const HELD_PIECES = 16;

/** The two ends of the decompression as the reader sees them, on a thread of its own or on the reader's. */
interface Port {
  post(m: InflateRequest, transfer?: ArrayBuffer[]): void;
  onReply?: (m: InflateReply) => void;
  onFailure?: (why: string) => void;
  /** Resolved once the file is no longer read. */
  stop(): Promise<void>;
}

function threadPort(): Port {
  const worker = startWorkerFile("./core/restore/inflate.worker.ts", new URL("./inflate.worker.ts", import.meta.url));
  const closed = new Promise<void>((resolve) => worker.addEventListener("close", () => resolve()));
  const port: Port = {
    post: (m, transfer = []) => worker.postMessage(m, transfer),
    stop: () => (void worker.terminate(), closed),
  };
  worker.onmessage = (ev: MessageEvent<InflateReply>) => port.onReply?.(ev.data);
  worker.onerror = (ev) => port.onFailure?.(`the decompression thread failed: ${ev.message}`);
  return port;
}

/** On the reader's thread: each message taken a turn later, as a thread would, not within the call that sent it. */
function herePort(): Port {
  const work = inflater((m) => queueMicrotask(() => port.onReply?.(m)));
  const port: Port = {
    post: (m) => queueMicrotask(() => work.request(m)),
    stop: () => work.stop(),
  };
  return port;
}

/**
 * The tar stream of the archive open on `fd`, decompressed while the caller takes it, on a
 * thread of its own (`thread`) or on the caller's; `free` hands a piece's buffer back once the
 * caller is done with it; `stop` ends the reading, resolved once it has. Buffers go back and
 * forth: a new one for each piece is garbage that the collector counts late (some 25 MiB more
 * at a million entries).
 */
export function inflatedTar(
  fd: number,
  compression: "gzip" | "zstd",
  on: InflateEvents,
  thread = true,
): { tar: Readable; free: (piece: Buffer) => void; stop: () => Promise<void> } {
  const port = thread ? threadPort() : herePort();
  const lent = new Set<ArrayBufferLike>();
  let owed = 0;
  const take = (n: number) => port.post({ taken: n });
  const stream = new Readable({
    highWaterMark: HELD_PIECES * INFLATED_PIECE,
    read() {
      if (owed > 0) take(owed);
      owed = 0;
    },
    destroy(err, done) {
      void port.stop();
      done(err);
    },
  });
  port.onReply = (m) => {
    on.size(m.size);
    if ("data" in m) {
      lent.add(m.data.buffer);
      if (stream.push(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength))) take(1);
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
  port.onFailure = (why) => stream.destroy(new Error(why));
  port.post({ fd, compression });
  const free = (piece: Buffer) => {
    // a buffer it did not lend (stream stages may join pieces) is left to the collector
    if (!lent.delete(piece.buffer)) return;
    const buffer = piece.buffer as ArrayBuffer;
    port.post({ free: buffer }, [buffer]);
  };
  // the descriptor it reads is closed once the pass is over: the reading must have stopped by then
  const stop = () => {
    stream.destroy();
    return port.stop();
  };
  return { tar: stream, free, stop };
}
