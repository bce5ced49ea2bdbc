/**
 * Compressing one piece of the tar stream on its own (a gzip member or a zstd frame), and the
 * first check of an archive's proof (pieces.ts): what was made is decompressed again and must
 * be exactly the piece. Runs on the compression workers (compress.worker.ts).
 */
import { openLibzstd, type Libzstd } from "./libzstd.ts";

export interface Compressed {
  out: ArrayBuffer;
  len: number;
  /** `out` came from the pool and should go back to it once written. */
  pooled: boolean;
}

/**
 * Output buffers kept for reuse. A worker has a few pieces in flight (pipeline.ts), so it
 * needs a few buffers; a pool that kept every buffer handed back would grow with the archive.
 */
export const POOL_MAX = 16;

export class PieceCompressor {
  readonly zstd: Libzstd | undefined;
  private readonly room: number;
  private scratch: ArrayBuffer;
  /** Output buffers written and handed back, to be filled again (libzstd only). */
  private readonly pool: ArrayBuffer[] = [];

  constructor(
    readonly kind: "gzip" | "zstd",
    private readonly level: number,
    maxPiece: number,
    systemZstd: boolean,
  ) {
    this.zstd = kind === "zstd" && systemZstd ? openLibzstd() : undefined;
    this.room = this.zstd ? this.zstd.bound(maxPiece) : 0;
    this.scratch = new ArrayBuffer(maxPiece);
  }

  /** An output buffer the sink has written; kept to be filled again while the pool has room. */
  giveBack(out: ArrayBuffer): void {
    if (this.pool.length < POOL_MAX) this.pool.push(out);
  }

  /** Buffers waiting to be filled again. */
  get pooled(): number {
    return this.pool.length;
  }

  compress(input: Uint8Array): Compressed {
    return this.zstd ? this.viaLibzstd(this.zstd, input) : this.viaBun(input);
  }

  /** Compress with libzstd into a pooled buffer (the sink hands it back once written). */
  private viaLibzstd(z: Libzstd, input: Uint8Array): Compressed {
    let out = this.pool.pop();
    if (out === undefined || out.byteLength < z.bound(input.length)) out = new ArrayBuffer(Math.max(this.room, z.bound(input.length)));
    return { out, len: z.compress(input, out, this.level), pooled: true };
  }

  private viaBun(input: Uint8Array): Compressed {
    const view = input as Uint8Array<ArrayBuffer>;
    const made = this.kind === "gzip" ? Bun.gzipSync(view, { level: this.level as 6, library: "libdeflate" }) : Bun.zstdCompressSync(view, { level: this.level });
    const whole = made.byteOffset === 0 && made.byteLength === made.buffer.byteLength;
    const out = whole ? (made.buffer as ArrayBuffer) : made.slice().buffer;
    return { out, len: made.byteLength, pooled: false };
  }

  /** Decompress `compressed` again; throws when it is not exactly `input`. */
  checkRoundTrip(compressed: Uint8Array, input: Uint8Array): void {
    let back: Uint8Array;
    try {
      back = this.decompress(compressed, input.length);
    } catch (e) {
      throw new Error(`a ${this.kind} piece does not decompress: ${e instanceof Error ? e.message : String(e)}`);
    }
    const same = back.length === input.length && Buffer.from(back.buffer, back.byteOffset, back.length).equals(Buffer.from(input.buffer, input.byteOffset, input.length));
    if (!same) throw new Error(`a ${this.kind} piece does not decompress to what went in (${back.length} bytes back of ${input.length})`);
  }

  private decompress(compressed: Uint8Array, expected: number): Uint8Array {
    if (this.zstd) {
      // one byte of room more than expected: a frame that holds more is caught, not cut short
      if (this.scratch.byteLength < expected + 1) this.scratch = new ArrayBuffer(expected + 1);
      return new Uint8Array(this.scratch, 0, this.zstd.decompress(compressed, this.scratch));
    }
    const view = compressed as Uint8Array<ArrayBuffer>;
    return this.kind === "gzip" ? Bun.gunzipSync(view, { library: "libdeflate" } as unknown as Bun.ZlibCompressionOptions) : Bun.zstdDecompressSync(view);
  }
}
