/**
 * Entries whose content is a stream of unknown length (a database dump): written into the
 * archive as it comes, never to a file of its own, with memory bounded like any file's.
 *
 * The difficulty: a tar header holds the entry's size and comes before the content, and the
 * size of a dump is known only when the dump ends. The design:
 *  1. The writer cuts a piece boundary, then asks the output worker to reserve a fixed number
 *     of bytes in the file (a "reserve" message with its own sequence number): the place of the
 *     header, written as zeros for now.
 *  2. The content goes through the chunker and the compression workers like a file's, in
 *     pieces after the reserved one; then the padding to a whole block, and another cut.
 *  3. With the size known, the writer builds the one 512-byte header block and frames it on its
 *     own so that it fills the reserved place exactly: a gzip member with one stored deflate
 *     block (535 bytes), a zstd frame with one raw block (522 bytes), or the block itself for
 *     plain tar (512). A "patch" message, next in sequence, has the output worker write it into
 *     the reserved place (pwrite) once every content piece before it is written.
 *  4. The file's MD5 and SHA-256 cannot be taken in write order past the reserved place, so the
 *     output worker stops hashing there and, at the end, reads the file back from that offset
 *     to finish both digests. Streamed entries go after the files, so only they are read twice.
 *  5. The proof (pieces.ts) counts the streamed bytes and their CRC-32 on the side and checks
 *     them, and the header's name, type and size, once the header arrives.
 * Every framing is a standard member or frame: gzip, zstd and GNU tar read the archive as one
 * stream, as they read any other.
 */
import type { Compression } from "../common/config.ts";
import { BLOCK, encodeHeader } from "./tar.ts";

export interface StreamedEntry {
  /** Name inside the archive, e.g. "dumps/shop.sql". */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** Whole seconds are kept (the header must be one block). */
  mtimeMs: number;
  /** The content, chunk by chunk; it is read only as fast as the archive is written. */
  content: AsyncIterable<Uint8Array>;
  /**
   * Called once the content has ended, before its header is written: throws when the
   * content is not whole (the program that made it failed), which fails the archive.
   */
  ended(): Promise<void>;
}

/** Bytes the framed header takes in the file, for each compression. */
export const RESERVED: Record<Compression, number> = { gzip: 10 + 5 + BLOCK + 8, zstd: 4 + 1 + 2 + 3 + BLOCK, none: BLOCK };

/** The largest size the octal field of a ustar header holds (11 digits); beyond it, base-256. */
const OCTAL_SIZE_MAX = 8 ** 11 - 1;

/** The single 512-byte header block of a streamed entry, for its size now known. */
export function streamedHeader(e: Omit<StreamedEntry, "content" | "ended">, size: number): Uint8Array {
  const short = (s: string | undefined) => (s !== undefined && s.length <= 31 && /^[\x20-\x7e]*$/.test(s) ? s : undefined);
  const block = encodeHeader({
    name: e.name, type: "file", mode: e.mode & 0o7777, uid: e.uid, gid: e.gid, uname: short(e.uname), gname: short(e.gname),
    size: Math.min(size, OCTAL_SIZE_MAX), mtimeNs: BigInt(Math.floor(e.mtimeMs / 1000)) * 1_000_000_000n,
  });
  if (block.length !== BLOCK) throw new Error(`the header of ${e.name} does not fit one block (name, owner or ids too long for ustar)`);
  if (size > OCTAL_SIZE_MAX) setBase256Size(block, size);
  return block;
}

/** The size field as GNU's base-256 number (what GNU tar writes for files of 8 GiB and more), checksum redone. */
function setBase256Size(b: Uint8Array, size: number): void {
  b.fill(0, 124, 136);
  b[124] = 0x80;
  let v = size;
  for (let i = 135; i > 124 && v > 0; i--) {
    b[i] = v % 256;
    v = Math.floor(v / 256);
  }
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  const digits = sum.toString(8).padStart(6, "0");
  for (let i = 0; i < 6; i++) b[148 + i] = digits.charCodeAt(i);
  b[154] = 0;
  b[155] = 0x20;
}

/** The header block framed to fill exactly RESERVED[compression] bytes. */
export function frameHeader(compression: Compression, block: Uint8Array): Uint8Array {
  if (block.length !== BLOCK) throw new Error("frameHeader: a header is one block");
  if (compression === "none") return block;
  const out = new Uint8Array(RESERVED[compression]);
  const view = new DataView(out.buffer);
  if (compression === "gzip") {
    // member header (no name, no time, unknown OS), one final stored block, CRC-32 and length
    out.set([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff], 0);
    out[10] = 1;
    view.setUint16(11, BLOCK, true);
    view.setUint16(13, 0xffff ^ BLOCK, true);
    out.set(block, 15);
    view.setUint32(15 + BLOCK, Bun.hash.crc32(block) >>> 0, true);
    view.setUint32(19 + BLOCK, BLOCK, true);
    return out;
  }
  // zstd: magic, a single-segment frame header with a 2-byte content size (value - 256), one last raw block
  out.set([0x28, 0xb5, 0x2f, 0xfd, 0x60], 0);
  view.setUint16(5, BLOCK - 256, true);
  const blockHeader = 1 | (BLOCK << 3);
  out.set([blockHeader & 0xff, (blockHeader >> 8) & 0xff, (blockHeader >> 16) & 0xff], 7);
  out.set(block, 10);
  return out;
}
