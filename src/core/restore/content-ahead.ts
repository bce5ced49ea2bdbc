/**
 * Where the next bytes of a tar stream are the content of one regular file, foretold from the
 * headers alone, for the frames a pass sets aside (frames-aside.ts, whole-pieces.ts). Only a
 * foretelling: the pass's own parser takes every step over content and refuses one that is
 * not content to it (read.ts, `stepOver`), and the pass is then read again the ordinary way.
 * So whatever is read wrongly here costs a second read, never a wrong one, and this reads
 * only what it needs: no names, no checksums, a small part of the parser's work per entry
 * (which the thread that decompresses would otherwise spend on every header once more).
 */
import { BLOCK, isZero, paddingAfter, parsePax, readNumber } from "../archive/tar.ts";

/** Hard links, symbolic links, directories: no data follows their header. */
const NO_DATA = new Set([0x31, 0x32, 0x35]);

/** The largest extended header read for its size record; a larger one ends the foretelling. */
const MAX_PAX = 1 << 16;

export class ContentAhead {
  private readonly header = new Uint8Array(BLOCK);
  private fill = 0;
  /** Content of a regular file still to come, and the padding after it. */
  private content = 0;
  private padding = 0;
  /** Bytes to pass that are not foretold: padding, other entries' data. */
  private other = 0;
  /** A pax header being read, for the size of the entry after it. */
  private pax: { data: Uint8Array; fill: number } | undefined;
  private paxSize: number | undefined;
  private paxSparse = false;
  /** An old GNU sparse file's stored bytes, while its extension blocks are read (-1: none). */
  private extensions = -1;
  /** Something not followed here: nothing more is foretold. */
  private lost = false;

  /** Bytes from here on that are the content of one regular file (0: none foretold). */
  get ahead(): number {
    return this.lost ? 0 : this.content;
  }

  /** `n` bytes of content stepped over, at most `ahead`. */
  pass(n: number): void {
    this.passBytes(n);
  }

  push(b: Uint8Array): void {
    let at = 0;
    while (at < b.length && !this.lost) {
      if (this.content > 0 || this.other > 0) {
        at += this.passBytes(b.length - at);
        continue;
      }
      if (this.pax) {
        at += this.readPax(b.subarray(at));
        continue;
      }
      const n = Math.min(BLOCK - this.fill, b.length - at);
      this.header.set(b.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === BLOCK) {
        this.fill = 0;
        if (this.extensions < 0) this.onHeader();
        // an old GNU sparse file's extension blocks: the last says so, then its data
        else if (this.header[504] === 0) {
          this.other = this.extensions + paddingAfter(this.extensions);
          this.extensions = -1;
        }
      }
    }
  }

  /** Content or other bytes stepped over, as many of `room` as are left of them. */
  private passBytes(room: number): number {
    if (this.content > 0) {
      const n = Math.min(this.content, room);
      this.content -= n;
      if (this.content === 0) this.other = this.padding;
      return n;
    }
    const n = Math.min(this.other, room);
    this.other -= n;
    return n;
  }

  private readPax(b: Uint8Array): number {
    const p = this.pax!;
    const n = Math.min(p.data.length - p.fill, b.length);
    p.data.set(b.subarray(0, n), p.fill);
    p.fill += n;
    if (p.fill < p.data.length) return n;
    this.pax = undefined;
    this.other = paddingAfter(p.data.length);
    try {
      const records = parsePax(p.data);
      const size = records.get("size");
      this.paxSize = size === undefined ? undefined : Number(size);
      // a size that is no number: the parser names the damage
      if (this.paxSize !== undefined && !(Number.isSafeInteger(this.paxSize) && this.paxSize >= 0)) this.lost = true;
      this.paxSparse = [...records.keys()].some((k) => k.startsWith("GNU.sparse."));
    } catch {
      this.lost = true;
    }
    return n;
  }

  private onHeader(): void {
    const h = this.header;
    if (isZero(h)) return;
    const flag = h[156]!;
    const size = readNumber(h, 124, 12);
    if (!(size >= 0)) {
      this.lost = true;
      return;
    }
    if (flag === 0x78) return this.startPax(size);
    if (flag === 0x67) {
      // a global header (its records hold for every later entry): not followed
      this.lost = true;
      return;
    }
    const stored = this.paxSize ?? size;
    this.paxSize = undefined;
    const sparse = this.paxSparse || flag === 0x53;
    this.paxSparse = false;
    if (flag === 0x53 && this.header[482] !== 0) this.extensions = stored;
    else if (flag === 0x30 || flag === 0 || flag === 0x37 || flag === 0x53) this.regular(stored, sparse);
    // links and directories have no data whatever their size says, as the parser reads them
    else if (!NO_DATA.has(flag)) this.other = stored + paddingAfter(stored);
  }

  /** A regular file's data, foretold; a sparse file's (map and pieces) passed over; an old tar's directory has none. */
  private regular(stored: number, sparse: boolean): void {
    if (this.slashed() && !sparse) return;
    if (sparse) this.other = stored + paddingAfter(stored);
    else {
      this.content = stored;
      this.padding = paddingAfter(stored);
    }
  }

  /** The header's own name ends with a slash (a long name's or a pax path's is not looked at). */
  private slashed(): boolean {
    const end = this.header.subarray(0, 100).indexOf(0);
    return this.header[(end < 0 ? 100 : end) - 1] === 0x2f;
  }

  private startPax(size: number): void {
    if (size > MAX_PAX) {
      this.lost = true;
      return;
    }
    this.pax = { data: new Uint8Array(size), fill: 0 };
    if (size === 0) this.readPax(new Uint8Array(0));
  }
}
