/**
 * The compressed pieces shoot writes (zstd frames, gzip members) decompressed whole, one call
 * of the system's library each, on the decompression thread (inflate.worker.ts): a fraction of
 * the time the stream decompressor takes. Whatever is not such a piece (an archive from another
 * tool, damage, a piece too large) goes from there on to the stream decompressor, which reads
 * it as it always would and names what is wrong. Holds the bytes of one piece at most.
 */
import type { Writable } from "node:stream";
import { openLibzstd, type Libzstd } from "../archive/libzstd.ts";
import { errorMessage } from "../common/errors.ts";
import { ContentAhead } from "./content-ahead.ts";
import type { FrameTriples } from "./frames-aside.ts";
import { INFLATED_PIECE, type FrameListener, type Stepped, type ZstdFrame } from "./inflate.ts";
import { openLibdeflate, type Libdeflate } from "./libdeflate.ts";

/** A piece is decompressed whole when it holds at most this; from a larger one on, the stream does it. */
export const WHOLE_PIECE = 4 << 20;

/**
 * What the piece at the start of the held bytes is: its length and what it held (written at
 * the end of `out`), its length and the bytes of file content it holds when it is set aside
 * undecompressed (frames-aside.ts), not whole yet, one for the stream, the end of the stream,
 * or one that needs `out` emptied first.
 */
type Next =
  | { read: number; wrote: number }
  | { read: number; stepped: number; frame: FrameTriples }
  | "wait" | "stream" | "end" | "flush";

/** Bytes of the tar stream stepped over, in their place among the pieces sent, and the frames that hold them. */
export type SetAside = Stepped & { frames: FrameTriples };

/** Frames set aside are sent on together, this many at most: few messages, and the checking thread kept busy. */
const ASIDE_BATCH = 16;

export abstract class WholePieces {
  streaming = false;
  /** Pieces decompressed whole so far. */
  decoded = 0;
  /** The rest of the file is no archive's (padding after the last gzip member) and is passed over. */
  protected ended = false;
  /** Bytes taken, not yet decompressed: `buf` up to `held`, from byte `heldAt` of the file (where a piece starts). */
  protected buf = Buffer.allocUnsafeSlow(2 << 20);
  protected held = 0;
  protected heldAt = 0;
  /**
   * What was decompressed, up to `filled`, sent on in pieces of INFLATED_PIECE: a piece of the
   * tar stream costs the main thread the same whatever its size, so small ones are gathered.
   * Less than one such piece is kept between pieces, so that room is left for the largest one
   * shoot writes (a zstd frame of 512 KiB).
   */
  protected out = new ArrayBuffer(4 * INFLATED_PIECE);
  protected filled = 0;
  /** Frames set aside after what `out` holds was sent, not sent on yet. */
  private aside: SetAside = { stepped: 0, frames: [] };

  constructor(private readonly sink: Writable) {}

  /** The piece at byte `at` of `buf`, decompressed into `room()` once it is whole; `final`: no more bytes come. */
  protected abstract next(at: number, final: boolean): Next;

  /** Where the next piece is decompressed to. */
  protected room(): Uint8Array {
    return new Uint8Array(this.out, this.filled);
  }

  /** `out` made to hold at least `n` bytes (only while it holds nothing). */
  protected grow(n: number): void {
    if (this.out.byteLength < n) this.out = new ArrayBuffer(n);
  }

  /**
   * The next bytes of the file, every one from its start: its whole pieces decompressed and
   * written on; once streaming, what the stream decompressor must take from here.
   */
  async take(chunk: Buffer): Promise<Buffer | undefined> {
    if (this.ended) return undefined;
    this.hold(chunk);
    return this.drain(false);
  }

  /** At the end of the file: the last pieces written on, and what is left for the stream. */
  async finish(): Promise<Buffer | undefined> {
    if (this.ended || this.streaming) return undefined;
    const rest = await this.drain(true);
    await this.flush(0);
    return rest;
  }

  private async drain(final: boolean): Promise<Buffer | undefined> {
    let done = 0;
    for (;;) {
      const n = done < this.held ? this.next(done, final) : "wait";
      if (n === "wait") break;
      if (n === "flush") {
        await this.flush(0);
        continue;
      }
      if (n === "stream") {
        await this.flush(0);
        return this.toStream(done);
      }
      if (n === "end") {
        await this.flush(0);
        this.ended = true;
        return undefined;
      }
      done += n.read;
      this.decoded++;
      if ("stepped" in n) {
        await this.setAside(n.stepped, n.frame);
        continue;
      }
      this.filled += n.wrote;
      await this.flush(INFLATED_PIECE);
    }
    // what was decompressed let go at once: `buf` starts where the next piece does
    this.buf.copyWithin(0, done, this.held);
    this.held -= done;
    this.heldAt += done;
    // a piece far larger than any whole one, still without its end
    if (this.held <= 2 * WHOLE_PIECE) return undefined;
    await this.flush(0);
    return this.toStream(0);
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

  /** What is held from `from`, for the stream decompressor; nothing is held here again. */
  private toStream(from: number): Buffer {
    this.streaming = true;
    return this.buf.subarray(from, this.held);
  }

  /** A frame stepped over, after everything decompressed before it; sent on with the next ones. */
  private async setAside(stepped: number, frame: FrameTriples): Promise<void> {
    if (this.filled > 0) await this.flush(0);
    this.aside.stepped += stepped;
    this.aside.frames.push(...frame);
    if (this.aside.frames.length >= 3 * ASIDE_BATCH) await this.sendAside();
  }

  private async sendAside(): Promise<void> {
    const a = this.aside;
    if (a.stepped === 0) return;
    this.aside = { stepped: 0, frames: [] };
    await new Promise<void>((resolve, reject) => this.sink.write(a, (e) => (e ? reject(e) : resolve())));
  }

  /**
   * What `out` holds written on in pieces of INFLATED_PIECE, as long as at least `least` bytes
   * are left (0: all); the frames set aside before it first.
   */
  private async flush(least: number): Promise<void> {
    if (least === 0 || this.filled >= least) await this.sendAside();
    let at = 0;
    while (this.filled - at > 0 && this.filled - at >= least) {
      const n = Math.min(INFLATED_PIECE, this.filled - at);
      const piece = Buffer.from(this.out, at, n);
      await new Promise<void>((resolve, reject) => this.sink.write(piece, (e) => (e ? reject(e) : resolve())));
      at += n;
    }
    if (at > 0) new Uint8Array(this.out).copyWithin(0, at, this.filled);
    this.filled -= at;
  }
}

/**
 * The zstd frame that starts at byte `start` of the file decompressed whole into `out`, which
 * holds one byte more than the `size` its header says (a frame that holds more fails, not cut
 * short); throws, naming the frame, when it does not decode to exactly that.
 */
export function decodeFrame(z: Libzstd, frame: Uint8Array, out: Uint8Array, start: number, size: number): void {
  let n: number;
  try {
    n = z.decompress(frame, out);
  } catch (e) {
    throw new Error(`the zstd frame at byte ${start} does not decode: ${errorMessage(e)}`);
  }
  if (n !== size) throw new Error(`the zstd frame at byte ${start} holds ${n} bytes, its header says ${size}`);
}

/** A frame is decompressed whole when it says how much it holds, and that is at most WHOLE_PIECE. */
function whole(f: ZstdFrame): f is ZstdFrame & { contentSize: number } {
  return f.contentSize !== undefined && f.contentSize <= WHOLE_PIECE;
}

/**
 * zstd frames by libzstd. The walk of the frames (ZstdFrames) says where each ends and what it
 * holds; from the first frame that does not say, or says more than WHOLE_PIECE, the stream
 * decompressor does the rest (a single-frame archive from zstd's command line). That frame is
 * handed on as soon as its header is read, not once its end is: the stream then reads it as far
 * as the walk has, and names damage where the pass without this thread names it.
 */
export class FrameByFrame extends WholePieces implements FrameListener {
  /** Frames not decompressed yet, in order: whole ones once their end is known, the first other one from its header. */
  private readonly known: ZstdFrame[] = [];

  /**
   * @param follow the tar stream followed through the frames decompressed here, when frames
   * that hold only the content of one file are set aside (frames-aside.ts); the pass's own
   * parser has the last word on each (read.ts).
   */
  private constructor(private readonly z: Libzstd, sink: Writable, private readonly follow: ContentAhead | undefined) {
    super(sink);
  }

  static open(sink: Writable, aside = false): FrameByFrame | undefined {
    const z = openLibzstd();
    return z && new FrameByFrame(z, sink, aside ? new ContentAhead() : undefined);
  }

  // once streaming, the frames are the stream's: none is kept (a hostile file can hold millions)
  headed(start: number, contentSize: number | undefined): void {
    const f = { start, end: Infinity, contentSize };
    if (!this.streaming && !whole(f)) this.known.push(f);
  }

  framed(f: ZstdFrame): void {
    if (!this.streaming && whole(f)) this.known.push(f);
  }

  protected next(at: number, final: boolean): Next {
    const f = this.known[0];
    if (f && !whole(f)) return "stream";
    // a frame whose end is not read yet: at the file's end, one that ends early
    if (!f || f.end > this.heldAt + this.held) return final ? "stream" : "wait";
    const t = this.follow;
    if (t && f.contentSize > 0 && t.ahead >= f.contentSize) {
      this.known.shift();
      t.pass(f.contentSize);
      return { read: f.end - f.start, stepped: f.contentSize, frame: [f.start, f.end, f.contentSize] };
    }
    if (this.out.byteLength - this.filled < f.contentSize + 1) {
      if (this.filled > 0) return "flush";
      this.grow(f.contentSize + 1);
    }
    this.known.shift();
    decodeFrame(this.z, this.buf.subarray(at, at + f.end - f.start), this.room(), f.start, f.contentSize);
    t?.push(this.room().subarray(0, f.contentSize));
    return { read: f.end - f.start, wrote: f.contentSize };
  }
}

/** How every gzip member begins: the magic bytes and deflate's method. */
const MEMBER_START = Buffer.from([0x1f, 0x8b, 0x08]);
/** The shortest member: a 10-byte header, an empty deflate block, the 8-byte trailer. */
const SHORTEST_MEMBER = 20;

/**
 * gzip members by libdeflate, which says where each ends, so the next is read from exactly
 * where a sequential reader reads it. A member is tried once the start of another is in sight
 * (or the file ends), so that one cut by a read is not decompressed twice. What the stream
 * decompressor reads otherwise is read the same way: after a member, a zero byte ends the
 * stream (padding); anything else that is no member goes to the stream, which names it.
 */
export class MemberByMember extends WholePieces {
  /** Where the search for a member's start has reached, in bytes of the file. */
  private searched = 0;

  constructor(private readonly lib: Libdeflate, sink: Writable) {
    super(sink);
  }

  static open(sink: Writable): MemberByMember | undefined {
    const lib = openLibdeflate();
    return lib && new MemberByMember(lib, sink);
  }

  protected next(at: number, final: boolean): Next {
    const b = this.buf;
    if (this.decoded > 0 && b[at] === 0) return "end";
    if (this.held - at < MEMBER_START.length) return final ? "stream" : "wait";
    if (b.compare(MEMBER_START, 0, MEMBER_START.length, at, at + MEMBER_START.length) !== 0) return "stream";
    if (!final && !this.anotherInSight(at)) return "wait";
    const r = this.lib.gunzipMember(b.subarray(at, this.held), this.room());
    if (r !== "room") return r === "bad" ? (final ? "stream" : "wait") : r;
    if (this.filled > 0) return "flush";
    // larger than shoot's members: tried once more with room for the largest read whole
    if (this.out.byteLength >= WHOLE_PIECE) return "stream";
    this.grow(WHOLE_PIECE);
    return this.next(at, final);
  }

  /** Whether bytes that may start the next member are held after the member at `at`. */
  private anotherInSight(at: number): boolean {
    const from = Math.max(at + SHORTEST_MEMBER, this.searched - this.heldAt);
    const found = this.buf.subarray(0, this.held).indexOf(MEMBER_START, from);
    this.searched = this.heldAt + (found < 0 ? Math.max(from, this.held - MEMBER_START.length + 1) : found + 1);
    return found >= 0;
  }
}
