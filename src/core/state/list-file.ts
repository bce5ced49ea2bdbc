/**
 * The file list beside each archive (<archive>.list) as stored: gzip, in independent members
 * of whole lines, at most 1 MiB of list text each, the way BGZF cuts its blocks. To gzip and zcat the
 * members are one stream (`zcat X.list` prints the list); shoot reads one member at a time,
 * each naming its own length in a field of its gzip header, so a list of a million entries is
 * never in memory whole. Lists written before were plain text, and servers and backup hosts
 * still hold them: every reader here tells the two apart by the first two bytes.
 */
import fs from "node:fs";
import zlib from "node:zlib";
import { chunksAt, linesOf, readAt } from "./fsutil.ts";

/** The list text a member holds at most, as written: whole lines unless one is longer. */
export const LIST_BLOCK = 1 << 20;
/** What a reader takes in one member, compressed or not: room above LIST_BLOCK, a bound on a hostile file. */
const MAX_MEMBER = 4 << 20;
const MAGIC = [0x1f, 0x8b];
/** The gzip header shoot writes: magic, deflate, FEXTRA, no time, Unix; one 8-byte extra field. */
const HEADER = 20;
const TRAILER = 8;
/** The extra subfield's id, "SL" (shoot list), and its length: the member's size in bytes, uint32 LE. */
const SUBFIELD = [0x53, 0x4c];

/** True when these first bytes of a file start a gzip stream. */
export function isGzip(head: Uint8Array): boolean {
  return head.length >= 2 && head[0] === MAGIC[0] && head[1] === MAGIC[1];
}

/** One gzip member holding `text` (which it does not keep). */
export function listMember(text: Uint8Array<ArrayBuffer>): Uint8Array {
  const raw = Bun.deflateSync(text, { level: 6, library: "libdeflate" });
  const out = Buffer.allocUnsafe(HEADER + raw.length + TRAILER);
  out.set([...MAGIC, 8, 4, 0, 0, 0, 0, 0, 3, 8, 0, ...SUBFIELD, 4, 0]);
  out.writeUInt32LE(out.length, 16);
  out.set(raw, HEADER);
  out.writeUInt32LE(Bun.hash.crc32(text), out.length - 8);
  out.writeUInt32LE(text.length, out.length - 4);
  return out;
}

/**
 * A member ends after a line whose CRC-32 has these bits clear: about every 256 lines, some
 * 5 KiB compressed, which is about what a changed line costs on the next pull. Every 1024
 * lines made the list 2 % smaller, and the lines of a directory of 129 files renamed cost 42 KiB
 * on the wire instead of 23.
 */
const CUT_MASK = 255;

/**
 * A list given in pieces (text or bytes, cut anywhere), as gzip members to write one after the
 * other. The first line (the header) is a member by itself, so that reading it costs one small
 * read. A later member ends after a line whose CRC-32 has its low 8 bits clear, or at the last
 * newline of LIST_BLOCK bytes: where members end depends on the lines alone, so the next run's
 * list, which differs in a few places, shares its other members byte for byte, and rsync,
 * pulling it against the last copy's list, sends those as matches. Memory holds one block.
 */
export function* compressList(pieces: Iterable<string | Uint8Array>): Generator<Uint8Array> {
  const block = Buffer.allocUnsafe(LIST_BLOCK);
  let used = 0;
  let scanned = 0; // how far the block was searched for line ends
  let lineStart = 0;
  let headerDone = false;
  const take = (cut: number): Uint8Array => {
    const member = listMember(block.subarray(0, cut));
    block.copy(block, 0, cut, used);
    used -= cut;
    scanned = lineStart = 0;
    return member;
  };
  const lineEnd = (): number => block.subarray(0, used).indexOf(10, scanned);
  for (const piece of pieces) {
    let bytes = typeof piece === "string" ? Buffer.from(piece) : piece;
    while (bytes.length > 0) {
      const n = Math.min(bytes.length, LIST_BLOCK - used);
      block.set(bytes.subarray(0, n), used);
      used += n;
      bytes = bytes.subarray(n);
      for (let nl = lineEnd(); nl >= 0; nl = lineEnd()) {
        const cut = !headerDone || (Bun.hash.crc32(block.subarray(lineStart, nl)) & CUT_MASK) === 0;
        scanned = lineStart = nl + 1;
        headerDone = true;
        if (cut) yield take(nl + 1);
      }
      scanned = used;
      if (used === LIST_BLOCK) yield take(block.lastIndexOf(10) + 1 || LIST_BLOCK);
    }
  }
  if (used > 0) yield take(used);
}

/** The error of a list that is not what shoot wrote: it names the file and where. */
function damaged(file: string, at: number, why: string): Error {
  return new Error(`${file}: the compressed block at byte ${at} ${why}`);
}

/** The length of the member whose header is `head` (at least HEADER bytes), or why it has none. */
function memberLength(head: Buffer): number | string {
  if (!isGzip(head) || head[2] !== 8) return "is not gzip";
  const named = head[3] === 4 && head.readUInt16LE(10) === 8 && head.readUInt16LE(14) === 4;
  const ours = named && head[12] === SUBFIELD[0] && head[13] === SUBFIELD[1];
  if (!ours) return "does not name its length (shoot did not write it)";
  const len = head.readUInt32LE(16);
  return len < HEADER + TRAILER || len > MAX_MEMBER ? `names an impossible length (${len} bytes)` : len;
}

/** The text of one whole member, checked against its CRC-32 and length; or why it cannot be had. */
function inflateMember(member: Buffer): Uint8Array | string {
  const size = member.readUInt32LE(member.length - 4);
  if (size > MAX_MEMBER) return `says it holds ${size} bytes, more than a list block`;
  let text: Uint8Array;
  try {
    text = zlib.inflateRawSync(member.subarray(HEADER, member.length - TRAILER), { maxOutputLength: MAX_MEMBER });
  } catch (e) {
    return `does not decompress (${(e as Error).message})`;
  }
  if (text.length !== size) return `holds ${text.length} bytes, its trailer says ${size}`;
  return Bun.hash.crc32(text) === member.readUInt32LE(member.length - 8) ? text : "does not match its CRC-32";
}

/** The member at byte `at` of a compressed list, decompressed, and its length; undefined at the end. */
function memberAt(fd: number, file: string, at: number): { text: Uint8Array; len: number } | undefined {
  const head = Buffer.allocUnsafe(HEADER);
  const n = readAt(fd, head, at);
  if (n === 0) return undefined;
  const len = n < HEADER ? "is cut short" : memberLength(head);
  if (typeof len === "string") throw damaged(file, at, len);
  const member = Buffer.allocUnsafe(len);
  if (readAt(fd, member, at) < len) throw damaged(file, at, "is cut short");
  const text = inflateMember(member);
  if (typeof text === "string") throw damaged(file, at, text);
  return { text, len };
}

/** Up to `max` bytes from the start of an open file. */
function firstBytes(fd: number, max: number): Uint8Array {
  const buf = Buffer.allocUnsafe(max);
  return buf.subarray(0, readAt(fd, buf, 0));
}

/** True when the open file starts as gzip does. */
function startsGzip(fd: number): boolean {
  const magic = Buffer.alloc(2);
  return isGzip(magic.subarray(0, readAt(fd, magic, 0)));
}

/**
 * A list's text in pieces: a compressed list's members one by one, a plain list's bytes in
 * pieces of 1 MiB (then one buffer, reused: use a piece before asking for the next). Errors
 * name the file; a damaged member is met when its turn comes.
 */
export function* listChunks(file: string): Generator<Uint8Array> {
  const fd = fs.openSync(file, "r");
  try {
    if (!startsGzip(fd)) return yield* chunksAt(fd, 0);
    for (let at = 0, m = memberAt(fd, file, at); m; at += m.len, m = memberAt(fd, file, at)) yield m.text;
  } finally {
    fs.closeSync(fd);
  }
}

/** A list's lines, compressed or plain; a last line without its newline is given too. */
export function listLines(file: string): Generator<string> {
  return linesOf(listChunks(file));
}

/** How much of a list its first line may take: a header is a few hundred bytes. */
const FIRST_LINE_MAX = 64 * 1024;

/**
 * A list's first line (its header), reading its first member or its first 64 KiB; undefined
 * when no line ends within them. Throws when the file cannot be opened (with `noFollow`, also
 * when it is a symbolic link) or its first member is damaged.
 */
export function listFirstLine(file: string, noFollow = false): string | undefined {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | (noFollow ? fs.constants.O_NOFOLLOW : 0));
  try {
    const text = startsGzip(fd) ? memberAt(fd, file, 0)!.text : firstBytes(fd, FIRST_LINE_MAX);
    const bytes = Buffer.from(text.buffer, text.byteOffset, Math.min(text.byteLength, FIRST_LINE_MAX));
    const end = bytes.indexOf(10);
    return end < 0 ? undefined : bytes.subarray(0, end).toString("utf8");
  } finally {
    fs.closeSync(fd);
  }
}
