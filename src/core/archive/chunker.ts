/**
 * Content-defined cutting of the tar stream into pieces, each compressed on its own.
 *
 * A cut falls where a rolling gear hash over the last 32 bytes matches a mask, so the cut
 * points depend on the content around them, not on their offset: when a file changes, the
 * pieces before and after it stay byte-identical, compress to identical bytes, and rsync
 * finds them in yesterday's archive. Pieces are at least `minSize` (the hash is not even
 * computed over the first minSize-32 bytes of a piece: that keeps per-byte work down) and at
 * most `maxSize`. Runs of zero bytes (sparse files) are skipped without hashing byte by byte.
 */

export interface ChunkerParams {
  /** Smallest piece; no cut before it. */
  minSize: number;
  /** Expected distance from minSize to a hash cut; a power of two. 0: no hashing, cut at maxSize only. */
  avgGap: number;
  /** Largest piece. */
  maxSize: number;
  /** Bytes of free space offered to each read; the buffer holds maxSize + readSize. */
  readSize: number;
}

/** The hash state after a byte has been fed 32 times in a row forgets everything before. */
const WINDOW = 32;

/** 256 fixed pseudo-random 32-bit values: part of the archive format's stability, never change them. */
function gearTable(): Int32Array {
  const t = new Int32Array(256);
  let x = 0x9e3779b97f4a7c15n;
  for (let i = 0; i < 256; i++) {
    // splitmix64
    x = (x + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
    let z = x;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
    z ^= z >> 31n;
    t[i] = Number(z & 0xffffffffn) | 0;
  }
  return t;
}

const GEAR = gearTable();
/** After 32 zero bytes the state is Σ G[0]·2^k = G[0]·(2^32−1) ≡ −G[0] (mod 2^32). */
const ZERO_STATE = -GEAR[0]! | 0;

function maskFor(gap: number): number {
  const bits = Math.round(Math.log2(gap));
  if (2 ** bits !== gap || bits < 1 || bits > 30) throw new Error(`chunker: avgGap must be a power of two, got ${gap}`);
  // the top bits depend on the whole 32-byte window, the low bits only on the last few bytes
  return ~((1 << (32 - bits)) - 1) | 0;
}

const ZEROS = new Uint8Array(64 * 1024);
/** Piece memory comes in multiples of this, and a few free slabs are kept for reuse. */
const SLAB_CLASS = 128 * 1024;
const MAX_FREE = 8;

/** memcmp against zeros: stops at the first non-zero byte, and allocates nothing. */
export function isAllZero(b: Buffer, from = 0, to = b.length): boolean {
  for (let at = from; at < to; at += ZEROS.length) {
    const n = Math.min(to - at, ZEROS.length);
    if (b.compare(ZEROS, 0, n, at, at + n) !== 0) return false;
  }
  return true;
}

export class Chunker {
  private readonly buf: Buffer;
  /** Start of the current piece in buf. */
  private start = 0;
  /** End of the bytes in buf. */
  private end = 0;
  /** Everything in [start, scanned) has been examined for a cut. */
  private scanned = 0;
  /** Bytes of zero runs passed over without hashing them one by one (what tests check). */
  zeroBytesSkipped = 0;
  private h = 0;
  private readonly mask: number;
  /** Piece buffers handed back by recycle(): fresh memory costs a page fault per 4 KiB. */
  private free: ArrayBuffer[] = [];

  constructor(
    private readonly p: ChunkerParams,
    private readonly onPiece: (piece: Buffer) => void,
  ) {
    if (p.avgGap > 0 && (p.minSize < WINDOW || p.maxSize < p.minSize)) throw new Error("chunker: bad sizes");
    this.mask = p.avgGap > 0 ? maskFor(p.avgGap) : 0;
    if (p.avgGap > 0 && (ZERO_STATE & this.mask) === 0) throw new Error("chunker: zero runs would cut everywhere");
    this.buf = Buffer.allocUnsafeSlow(p.maxSize + p.readSize);
  }

  /** Bytes in the current (not yet emitted) piece. */
  get pending(): number {
    return this.end - this.start;
  }

  /** Space to fill, at most `want` bytes (and at most readSize); then call commit(n). */
  space(want: number): Buffer {
    if (this.buf.length - this.end < Math.min(want, this.p.readSize)) this.compact();
    const n = Math.min(want, this.p.readSize, this.buf.length - this.end);
    return this.buf.subarray(this.end, this.end + n);
  }

  /** `n` bytes were written into the last space(): look for cuts. */
  commit(n: number): void {
    this.end += n;
    this.scan();
  }

  append(bytes: Uint8Array): void {
    // a tar header fits the free space nearly always: copy it in without making views
    if (bytes.length <= this.p.readSize && this.buf.length - this.end >= bytes.length) {
      this.buf.set(bytes, this.end);
      this.commit(bytes.length);
      return;
    }
    let at = 0;
    while (at < bytes.length) {
      const dst = this.space(bytes.length - at);
      dst.set(bytes.subarray(at, at + dst.length));
      at += dst.length;
      this.commit(dst.length);
    }
  }

  /** The first `len` bytes of `src` (at most readSize), without making a view of them. */
  appendFrom(src: Uint8Array, len: number): void {
    if (this.buf.length - this.end < len) this.compact();
    if (this.buf.length - this.end < len) return this.append(src.subarray(0, len));
    this.buf.set(len === src.length ? src : src.subarray(0, len), this.end);
    this.commit(len);
  }

  appendZeros(count: number): void {
    while (count > 0) {
      const dst = this.space(count);
      dst.fill(0);
      count -= dst.length;
      this.commit(dst.length);
    }
  }

  /**
   * A place where a cut would be welcome (the start of a tar entry): cut here when the piece
   * has its minimum size and `token` (a hash of what follows) says so. Pure function of the
   * content, so it is as stable as the hash cuts.
   */
  boundary(token: number): void {
    if (this.pending >= this.p.minSize && (token & 3) === 0) this.cut(this.end);
  }

  /**
   * A cut here whatever the piece's size, where the content-defined cuts are made (not for
   * `none`, whose pieces are the tar stream as it is): around the header of a large file, so
   * that a change of its size or time costs the header's own small piece, not the rest of a
   * piece of the file before it.
   */
  cutHere(): void {
    if (this.mask !== 0 && this.end > this.start) this.cut(this.end);
  }

  /** Emit what is left as the last piece. */
  finish(): void {
    if (this.pending > 0) this.cut(this.end);
  }

  private compact(): void {
    if (this.start === 0) return;
    this.buf.copyWithin(0, this.start, this.end);
    this.end -= this.start;
    this.scanned -= this.start;
    this.start = 0;
  }

  /** Give a piece's memory (the piece's ArrayBuffer) back once nothing refers to it any more. */
  recycle(slab: ArrayBuffer): void {
    if (slab.byteLength === 0) return; // transferred away
    this.free.push(slab);
    if (this.free.length > MAX_FREE) {
      // keep the larger ones: they fit any piece
      this.free.sort((a, b) => b.byteLength - a.byteLength);
      this.free.length = MAX_FREE;
    }
  }

  /** A free slab that holds `len` bytes, or a new one of the next size class. */
  private slab(len: number): ArrayBuffer {
    for (let i = this.free.length - 1; i >= 0; i--) {
      const s = this.free[i]!;
      if (s.byteLength >= len) {
        this.free[i] = this.free[this.free.length - 1]!;
        this.free.pop();
        return s;
      }
    }
    return new ArrayBuffer(Math.min(this.p.maxSize, Math.ceil(len / SLAB_CLASS) * SLAB_CLASS) || len);
  }

  private cut(at: number): void {
    const piece = Buffer.from(this.slab(at - this.start), 0, at - this.start);
    this.buf.copy(piece, 0, this.start, at);
    this.start = at;
    this.scanned = at;
    this.h = 0;
    this.onPiece(piece);
  }

  private scan(): void {
    const { maxSize } = this.p;
    for (;;) {
      const limit = Math.min(this.end, this.start + maxSize);
      if (this.mask !== 0) {
        const at = this.findCut(limit);
        if (at >= 0) {
          this.cut(at);
          continue;
        }
      }
      this.scanned = Math.max(this.scanned, limit);
      if (this.end - this.start >= maxSize) {
        this.cut(this.start + maxSize);
        continue;
      }
      return;
    }
  }

  /** First hash cut in [scanned, limit), or -1 (the state is kept for the next bytes). */
  private findCut(limit: number): number {
    const buf = this.buf;
    const mask = this.mask;
    const cutFrom = this.start + this.p.minSize;
    let i = Math.max(this.scanned, cutFrom - WINDOW);
    let h = this.h;
    if (this.scanned < cutFrom - WINDOW) h = 0;
    while (i < limit) {
      const blockEnd = Math.min(limit, i + 4096);
      // a zero run leaves the state at ZERO_STATE, which never matches the mask: skip it
      if (h === ZERO_STATE && isAllZero(buf, i, blockEnd)) {
        this.zeroBytesSkipped += blockEnd - i;
        i = blockEnd;
        continue;
      }
      if (i < cutFrom) {
        // the window before the first allowed cut: hash without testing
        const warmEnd = Math.min(blockEnd, cutFrom);
        for (; i < warmEnd; i++) h = ((h << 1) + GEAR[buf[i]!]!) | 0;
        continue;
      }
      // unrolled by four: about a third faster in JavaScriptCore than one byte per turn
      const g = GEAR;
      let cut = -1;
      for (const end4 = blockEnd - 3; i < end4; i += 4) {
        h = ((h << 1) + g[buf[i]!]!) | 0;
        if ((h & mask) === 0) { cut = i + 1; break; }
        h = ((h << 1) + g[buf[i + 1]!]!) | 0;
        if ((h & mask) === 0) { cut = i + 2; break; }
        h = ((h << 1) + g[buf[i + 2]!]!) | 0;
        if ((h & mask) === 0) { cut = i + 3; break; }
        h = ((h << 1) + g[buf[i + 3]!]!) | 0;
        if ((h & mask) === 0) { cut = i + 4; break; }
      }
      if (cut < 0) {
        for (; i < blockEnd; i++) {
          h = ((h << 1) + g[buf[i]!]!) | 0;
          if ((h & mask) === 0) { cut = i + 1; break; }
        }
      }
      if (cut >= 0) {
        this.h = h;
        return cut;
      }
    }
    this.h = h;
    this.scanned = limit;
    return -1;
  }
}
