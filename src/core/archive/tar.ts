/**
 * POSIX pax tar headers: encoding (for the archive writer) and decoding (for listing and tests).
 *
 * A header carries only what restores a file: name, mode, owner, size, mtime, type and link
 * target. Never atime or ctime: reading a file for a backup changes its atime, and a header
 * that changes every day would stop rsync from matching the unchanged parts of the archive.
 * The plain ustar header is used whenever everything fits; a pax extended header ('x') carries
 * what does not (long or non-ASCII names, sizes of 8 GiB and more, large ids, sub-second
 * mtimes). The output is a pure function of the input: the same entry gives the same bytes.
 */

export const BLOCK = 512;
/** GNU tar pads the stream to whole records of 20 blocks; so do we. */
export const RECORD = 20 * BLOCK;

export type TarType = "file" | "dir" | "symlink" | "hardlink";

/** Permission bits and owner: what a header restores besides name, type, size and time. */
export interface TarOwnership {
  /** st_mode & 0o7777 (setuid, setgid and sticky included) */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
}

export interface TarHeader extends TarOwnership {
  /** Name inside the archive, without a leading "/"; directories without a trailing "/". */
  name: string;
  type: TarType;
  /** Bytes of content that follow the header (0 for everything but files). */
  size: number;
  /** Modification time in nanoseconds since the epoch. */
  mtimeNs: bigint;
  linkTarget?: string;
  /**
   * A directory's GNU dumpdir (incremental.ts): written as the pax record `GNU.dumpdir`, the
   * form GNU tar itself uses in pax archives, so that every other reader sees a plain directory.
   */
  dumpdir?: string;
}

const TYPEFLAG: Record<TarType, number> = {
  file: 0x30, // '0'
  hardlink: 0x31, // '1'
  symlink: 0x32, // '2'
  dir: 0x35, // '5'
};

const enc = new TextEncoder();
const NS_PER_S = 1_000_000_000n;

/** Largest value an octal field of `width` bytes holds (width-1 digits and a NUL). */
function octalMax(width: number): number {
  return 8 ** (width - 1) - 1;
}

/** `value` (at most octalMax(width)) as width-1 octal digits and a NUL, digit by digit: a string per field cost a third of an entry's header time. */
function writeOctal(block: Uint8Array, offset: number, width: number, value: number): void {
  let v = value;
  for (let i = offset + width - 2; i >= offset; i--) {
    block[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  block[offset + width - 1] = 0;
}

/** Plain ASCII `s` from `offset`, a byte per character: a TextEncoder call per field cost more than the rest of a header. */
function writeAscii(block: Uint8Array, offset: number, s: string): void {
  for (let i = 0; i < s.length; i++) block[offset + i] = s.charCodeAt(i);
}

/** Printable ASCII without newline: safe in a ustar field for every reader. */
function isPlainAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/**
 * Split a plain-ASCII name into ustar prefix (≤155 bytes) and name (≤100 bytes) at a "/", or
 * null when it cannot be split that way.
 */
export function splitUstarName(name: string): { prefix: string; name: string } | null {
  if (name.length <= 100) return { prefix: "", name };
  if (name.length > 256) return null;
  // the rest after the slash must fit 100 bytes, the part before it 155: take the first slash
  // that leaves a short enough rest (never the leading one: the prefix would be empty)
  for (let i = Math.max(1, name.length - 101); i < name.length - 1; i++) {
    if (name.charCodeAt(i) === 0x2f) return i > 155 ? null : { prefix: name.slice(0, i), name: name.slice(i + 1) };
  }
  return null;
}

/** One pax record as text: "LEN key=value\n", where LEN counts the record's bytes including itself. */
function paxRecordText(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bytes = isPlainAscii(value) ? body.length : Buffer.byteLength(body);
  let len = bytes + 1;
  while (String(len).length + bytes !== len) len = String(len).length + bytes;
  return String(len) + body;
}

/** One pax record: "LEN key=value\n", where LEN counts the whole record including itself. */
export function paxRecord(key: string, value: string): Uint8Array {
  return enc.encode(paxRecordText(key, value));
}

/** Seconds and the nine digits of the fraction of a time at or after the epoch, cut from its decimal digits (cheaper than BigInt division). */
function splitTime(ns: bigint): { seconds: string; fraction: string } {
  const d = ns.toString();
  return d.length > 9 ? { seconds: d.slice(0, -9), fraction: d.slice(-9) } : { seconds: "0", fraction: d.padStart(9, "0") };
}

/** Seconds and the fraction's digits without trailing zeros, as pax writes a time. */
function paxTime(seconds: string, fraction: string): string {
  let end = fraction.length;
  while (end > 0 && fraction.charCodeAt(end - 1) === 0x30) end--;
  return end === 0 ? seconds : `${seconds}.${fraction.slice(0, end)}`;
}

/** Seconds with the fraction written out exactly, trailing zeros dropped (pax `mtime`). */
export function formatPaxTime(ns: bigint): string {
  const { seconds, fraction } = splitTime(ns < 0n ? -ns : ns);
  return (ns < 0n ? "-" : "") + paxTime(seconds, fraction);
}

/** The ustar mtime field (whole seconds, at least 0 and at most what the field holds) and, when that loses anything, the pax value. */
function mtimeFields(ns: bigint): { seconds: number; pax?: string } {
  // before the epoch: the field cannot hold it, the pax record does
  if (ns < 0n) return { seconds: 0, pax: formatPaxTime(ns) };
  const { seconds, fraction } = splitTime(ns);
  const whole = Number(seconds);
  if (fraction === "000000000" && whole <= octalMax(12)) return { seconds: whole };
  return { seconds: Math.min(whole, octalMax(12)), pax: paxTime(seconds, fraction) };
}

/** Name of the 'x' header itself: informational only, but deterministic and plain ASCII. */
function paxHeaderName(name: string, plainAscii: boolean): string {
  const last = name.slice(name.lastIndexOf("/") + 1);
  const base = plainAscii ? last : last.replace(/[^\x20-\x7e]/g, "_");
  return ("PaxHeaders/" + base).slice(0, 100);
}

interface UstarFields {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: number;
  linkname: string;
  uname: string;
  gname: string;
}

/** "ustar\0" "00" */
const USTAR_MAGIC = new Uint8Array([0x75, 0x73, 0x74, 0x61, 0x72, 0x00, 0x30, 0x30]);
/** What the magic, the checksum field as spaces and the two device fields ("0000000\0") add to a block's sum. */
const FIXED_SUM = USTAR_MAGIC.reduce((a, b) => a + b, 0) + 8 * 0x20 + 2 * 7 * 0x30;

/** `s` (plain ASCII) from `offset`, a byte per character; the sum of its bytes. */
function asciiSum(block: Uint8Array, offset: number, s: string): number {
  let sum = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    block[offset + i] = c;
    sum += c;
  }
  return sum;
}

/** writeOctal, answering the sum of the bytes written. */
function octalSum(block: Uint8Array, offset: number, width: number, value: number): number {
  let v = value;
  let sum = 0;
  for (let i = offset + width - 2; i >= offset; i--) {
    const c = 0x30 + (v % 8);
    block[i] = c;
    sum += c;
    v = Math.floor(v / 8);
  }
  block[offset + width - 1] = 0;
  return sum;
}

/**
 * A ustar block at `base` of a zeroed buffer; every text field is plain ASCII that fits its
 * width. The checksum is summed from the fields as they are written: the rest of the block is
 * zeros, so summing all 512 bytes again would add nothing.
 */
function ustarInto(b: Uint8Array, base: number, f: UstarFields): void {
  let sum = FIXED_SUM + f.typeflag;
  sum += asciiSum(b, base, f.name);
  sum += octalSum(b, base + 100, 8, f.mode);
  sum += octalSum(b, base + 108, 8, f.uid);
  sum += octalSum(b, base + 116, 8, f.gid);
  sum += octalSum(b, base + 124, 12, f.size);
  sum += octalSum(b, base + 136, 12, f.mtime);
  b[base + 156] = f.typeflag;
  sum += asciiSum(b, base + 157, f.linkname);
  b.set(USTAR_MAGIC, base + 257);
  sum += asciiSum(b, base + 265, f.uname);
  sum += asciiSum(b, base + 297, f.gname);
  writeOctal(b, base + 329, 8, 0);
  writeOctal(b, base + 337, 8, 0);
  sum += asciiSum(b, base + 345, f.prefix);
  writeOctal(b, base + 148, 7, sum);
  b[base + 155] = 0x20;
}

function padded(len: number): number {
  return Math.ceil(len / BLOCK) * BLOCK;
}

/**
 * Encodes headers one after the other into a buffer it keeps (and grows for the rare header
 * that needs more): the archive writer copies each from there into its stream, so no header
 * costs an allocation. `encode` answers the header's length; its bytes are `bytes[0, length)`
 * until the next call.
 */
export class HeaderEncoder {
  bytes = new Uint8Array(4 * BLOCK);
  private records = "";
  private paxLen = 0;
  private paxAscii = true;

  private addPax(key: string, value: string): void {
    const r = paxRecordText(key, value);
    this.records += r;
    this.paxLen += parseInt(r, 10);
    this.paxAscii &&= isPlainAscii(value);
  }

  /**
   * The header block(s) for one entry: a ustar block, preceded by a pax extended header and
   * its data when some value does not fit ustar. Text is written a byte per character and
   * times are cut from their decimal digits: on a tree of small files the header is as much
   * work as the file.
   */
  encode(h: TarHeader): number {
    this.records = "";
    this.paxLen = 0;
    this.paxAscii = true;
    const tarName = h.type === "dir" ? (h.name === "" ? "./" : h.name + "/") : h.name;
    const ascii = isPlainAscii(tarName);
    let split = ascii ? splitUstarName(tarName) : null;
    if (!split) {
      this.addPax("path", tarName);
      split = { prefix: "", name: paxHeaderName(tarName, ascii).slice("PaxHeaders/".length) };
    }

    let linkname = "";
    if (h.type === "symlink" || h.type === "hardlink") {
      const target = h.linkTarget ?? "";
      if (target.length > 100 || !isPlainAscii(target)) this.addPax("linkpath", target);
      else linkname = target;
    }

    const size = h.type === "file" ? h.size : 0;
    let sizeField = size;
    if (size > octalMax(12)) {
      this.addPax("size", String(size));
      sizeField = 0;
    }
    let uidField = h.uid;
    if (h.uid < 0 || h.uid > octalMax(8)) {
      this.addPax("uid", String(h.uid));
      uidField = 0;
    }
    let gidField = h.gid;
    if (h.gid < 0 || h.gid > octalMax(8)) {
      this.addPax("gid", String(h.gid));
      gidField = 0;
    }
    const uname = this.owner(h.uname, "uname");
    const gname = this.owner(h.gname, "gname");
    const mtime = mtimeFields(h.mtimeNs);
    if (mtime.pax !== undefined) this.addPax("mtime", mtime.pax);
    if (h.type === "dir" && h.dumpdir !== undefined) this.addPax("GNU.dumpdir", h.dumpdir);

    const main: UstarFields = {
      name: split.name,
      prefix: split.prefix,
      mode: h.mode & 0o7777,
      uid: uidField,
      gid: gidField,
      size: sizeField,
      mtime: mtime.seconds,
      typeflag: TYPEFLAG[h.type],
      linkname,
      uname,
      gname,
    };
    const paxLen = this.paxLen;
    const length = paxLen === 0 ? BLOCK : BLOCK + padded(paxLen) + BLOCK;
    if (this.bytes.length < length) this.bytes = new Uint8Array(padded(length * 2));
    const out = this.bytes;
    out.fill(0, 0, length);
    if (paxLen === 0) {
      ustarInto(out, 0, main);
      return length;
    }
    ustarInto(out, 0, {
      name: paxHeaderName(tarName, ascii),
      prefix: "",
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: paxLen,
      mtime: mtime.seconds,
      typeflag: 0x78, // 'x'
      linkname: "",
      uname: "",
      gname: "",
    });
    if (this.paxAscii) writeAscii(out, BLOCK, this.records);
    else enc.encodeInto(this.records, out.subarray(BLOCK, BLOCK + paxLen));
    ustarInto(out, BLOCK + padded(paxLen), main);
    return length;
  }

  private owner(name: string | undefined, key: string): string {
    if (!name) return "";
    if (name.length > 31 || !isPlainAscii(name)) {
      this.addPax(key, name);
      return "";
    }
    return name;
  }
}

const shared = new HeaderEncoder();

/** The header block(s) for one entry, in a buffer of their own (see HeaderEncoder.encode). */
export function encodeHeader(h: TarHeader): Uint8Array {
  return shared.bytes.slice(0, shared.encode(h));
}

/** Zero bytes that follow `size` bytes of content to reach the next block boundary. */
export function paddingAfter(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

// ---------------------------------------------------------------------------------------------
// Decoding
//
// Every dialect GNU tar reads is read as GNU tar reads it, or refused by name; never guessed at.
// v7, ustar (POSIX) and old GNU headers; GNU long names and link targets ('L', 'K'); pax
// extended headers ('x') and global headers ('g', whose records apply to every later entry
// until the next one, under each entry's own); old-GNU sparse files ('S', with their extension
// blocks) and pax sparse files of GNU's formats 0.0, 0.1 and 1.0; octal and base-256 numbers.
// Numbers that are neither (trailing garbage, base-64, hex or signs in pax records) and
// anything that does not add up are damage, reported with the byte of the tar stream where
// the block that holds them starts.

/** A piece of a sparse file's content: `length` bytes that belong at `offset`. */
export interface SparsePiece {
  offset: number;
  length: number;
}

export interface TarListing {
  name: string;
  type: TarType | "other";
  /** Bytes of the file (a sparse file's whole size, holes included); 0 for all but files. */
  size: number;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtimeNs: bigint;
  linkTarget?: string;
  /** For "other": what it is (a FIFO, a character device, an unknown type, …). */
  kind?: string;
  /** A sparse file: its content comes as these pieces back to back, each to be put at its offset. */
  sparse?: SparsePiece[];
  /** Why the entry, though it reads fine, cannot be made as the archive has it (a name that is not UTF-8). */
  unrestorable?: string;
  /** Byte of the tar stream where the entry's first header block (extended headers included) starts. */
  offset?: number;
  /** A directory's GNU dumpdir, when the archive is an incremental one (incremental.ts). */
  dumpdir?: string;
}

export class TarFormatError extends Error {
  /** "unsupported": readable by GNU tar, but not by this reader (an extended header over its limit). */
  readonly kind: "damaged" | "unsupported";
  /** Byte of the tar stream where the block that holds the problem starts. */
  readonly offset: number | undefined;
  readonly reason: string;
  constructor(reason: string, offset?: number, kind: "damaged" | "unsupported" = "damaged") {
    super(offset === undefined ? reason : `${reason} (at byte ${offset} of the tar stream)`);
    this.name = "TarFormatError";
    this.reason = reason;
    this.offset = offset;
    this.kind = kind;
  }
}

const dec = new TextDecoder();
const strict = new TextDecoder("utf-8", { fatal: true });

/** Buffer's native Latin-1 slice (Bun and Node have it): a string of ASCII bytes without a decoder call. */
type Latin1Slice = (this: Uint8Array, from: number, to: number) => string;
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice: Latin1Slice }).latin1Slice;

/** Set by `text` when the bytes it decoded were not UTF-8 (they were decoded with replacement characters). */
let lastNotUtf8 = false;

/**
 * Bytes as text: ASCII (nearly every header field) through the Latin-1 slice, which on a tree
 * of small files is several times cheaper than a decoder call; anything else as UTF-8.
 */
function text(b: Uint8Array, from: number, to: number): string {
  lastNotUtf8 = false;
  for (let i = from; i < to; i++) if (b[i]! >= 0x80) return utf8(b, from, to);
  return from === to ? "" : latin1Slice.call(b, from, to);
}

/** Bytes that are not all ASCII as UTF-8; `lastNotUtf8` says whether they were not (decoded with replacement characters). */
function utf8(b: Uint8Array, from: number, to: number): string {
  try {
    return strict.decode(b.subarray(from, to));
  } catch {
    lastNotUtf8 = true;
    return dec.decode(b.subarray(from, to));
  }
}

/** A NUL-terminated field (or one that fills its width). */
function cString(b: Uint8Array, offset: number, width: number): string {
  const limit = offset + width;
  let end = offset;
  while (end < limit && b[end] !== 0) end++;
  return text(b, offset, end);
}

/** ASCII whitespace, as C's isspace. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function isOctal(c: number): boolean {
  return c >= 0x30 && c <= 0x37;
}

/**
 * A numeric header field as GNU tar reads it: octal digits (after one NUL and blanks old tars
 * put first, and ending at a NUL or blank), or base-256 (first byte 0x80, or 0xff for a
 * negative number); an empty field is 0. NaN for anything else, and for what a double cannot
 * hold exactly; `numberProblem` then says why.
 */
export function readNumber(b: Uint8Array, offset: number, width: number): number {
  const lim = offset + width;
  let i = offset;
  if (b[i] === 0) i++;
  while (i < lim && isSpace(b[i]!)) i++;
  if (i === lim) return NaN;
  const c = b[i]!;
  if (isOctal(c)) {
    let v = 0;
    for (; i < lim && isOctal(b[i]!); i++) v = v * 8 + (b[i]! - 0x30);
    if (i < lim && b[i] !== 0 && !isSpace(b[i]!)) return NaN;
    return v <= Number.MAX_SAFE_INTEGER ? v : NaN;
  }
  if ((c === 0x80 || c === 0xff) && lim - i >= 2) {
    let v = BigInt((c & 0x3f) - (c & 0x40));
    for (i++; i < lim; i++) v = v * 256n + BigInt(b[i]!);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : NaN;
  }
  return c === 0 ? 0 : NaN;
}

/** Why `readNumber` gave NaN for a field, in a few words with the field's text. */
function numberProblem(b: Uint8Array, offset: number, width: number): string {
  const raw = Array.from(b.subarray(offset, offset + width), (c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`)).join("");
  const first = b[offset]!;
  if (first === 0x2d || first === 0x2b) return `"${raw}" is base-64, which only test versions of GNU tar wrote`;
  if (first & 0x80) return `"${raw}" is a base-256 number out of range`;
  return `"${raw}" is not an octal number`;
}

/** "123" and nothing else: what a pax record holds for a size, an id or a count. */
function paxInteger(v: string): number {
  if (!/^\d{1,16}$/.test(v)) return NaN;
  const n = Number(v);
  return n <= Number.MAX_SAFE_INTEGER ? n : NaN;
}

export function parsePaxTime(v: string): bigint | undefined {
  const plain = plainPaxTime(v);
  if (plain !== undefined) return plain;
  const m = /^(-?)(\d{1,19})(?:\.(\d*))?$/.exec(v);
  if (!m) return undefined;
  const ns = BigInt(m[2]!) * NS_PER_S + BigInt((m[3] ?? "").slice(0, 9).padEnd(9, "0"));
  return m[1] ? -ns : ns;
}

/**
 * The form every writer gives a time ("1733390000.123456789": at most 15 digits, a fraction of
 * at most 9) read without the regular expression, which every entry of a pax archive pays for;
 * undefined for anything else, which the general reading then takes.
 */
function plainPaxTime(v: string): bigint | undefined {
  const dot = v.indexOf(".");
  const end = dot < 0 ? v.length : dot;
  if (end < 1 || end > 15 || v.length - end > 10) return undefined;
  let s = 0;
  for (let i = 0; i < end; i++) {
    const c = v.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return undefined;
    s = s * 10 + c;
  }
  let ns = 0;
  for (let i = end + 1; i < end + 10; i++) {
    const c = i < v.length ? v.charCodeAt(i) - 0x30 : 0;
    if (c < 0 || c > 9) return undefined;
    ns = ns * 10 + c;
  }
  return BigInt(s) * NS_PER_S + BigInt(ns);
}

const SPARSE_MAP_KEYS = new Set(["GNU.sparse.numblocks", "GNU.sparse.map", "GNU.sparse.offset", "GNU.sparse.numbytes"]);

/** The records of a pax header, in order; repeated keys (GNU's sparse format 0.0) kept. */
interface PaxRecords {
  /** Each key's last value; values but GNU.dumpdir's are cut at a NUL, as GNU tar reads them. */
  map: Map<string, string>;
  /** Keys whose value is not UTF-8. */
  notUtf8?: Set<string>;
  /** The records of a pax sparse map (numblocks, map, offset, numbytes), in the order given: GNU tar reads them in turn. */
  sparse?: Array<[string, string]>;
}

/**
 * Parse pax records ("LEN key=value\n", LEN counting the whole record): decimal digits, one
 * space, the key, "=", the value and a newline, or damage. A NUL where a record would start
 * ends them (GNU tar's reading).
 */
function parsePaxRecords(data: Uint8Array): PaxRecords {
  const out: PaxRecords = { map: new Map() };
  let at = 0;
  while (at < data.length && data[at] !== 0) {
    let i = at;
    let len = 0;
    while (i < data.length && data[i]! >= 0x30 && data[i]! <= 0x39 && i - at < 16) len = len * 10 + (data[i++]! - 0x30);
    if (i === at || data[i] !== 0x20) throw new TarFormatError(`pax record at byte ${at} of its header does not start with a decimal length and a space`);
    if (len <= i - at + 1 || at + len > data.length) throw new TarFormatError(`pax record at byte ${at} of its header has a length (${len}) beyond its header`);
    const end = at + len;
    if (data[end - 1] !== 0x0a) throw new TarFormatError(`pax record at byte ${at} of its header does not end with a newline`);
    const eq = data.indexOf(0x3d, i + 1);
    if (eq < 0 || eq >= end) throw new TarFormatError(`pax record at byte ${at} of its header has no "="`);
    const key = text(data, i + 1, eq);
    // GNU.dumpdir is a list of NUL-ended names: GNU tar reads it by its length, every other value up to a NUL
    let vEnd = key === "GNU.dumpdir" ? -1 : data.indexOf(0, eq + 1);
    if (vEnd < 0 || vEnd > end - 1) vEnd = end - 1;
    const value = text(data, eq + 1, vEnd);
    if (lastNotUtf8) (out.notUtf8 ??= new Set()).add(key);
    if (SPARSE_MAP_KEYS.has(key)) (out.sparse ??= []).push([key, value]);
    out.map.set(key, value);
    at = end;
  }
  return out;
}

/** Parse pax records into key/value pairs (the last of a key given twice). */
export function parsePax(data: Uint8Array): Map<string, string> {
  return parsePaxRecords(data).map;
}

/** Largest pax or GNU long-name payload, and sparse map, accepted: a broken archive cannot eat memory. */
const MAX_META = 1 << 20;
/** Most pieces a sparse file may have here (GNU tar has no limit; this keeps memory bounded). */
const MAX_SPARSE_PIECES = 1 << 17;

const FILE_KINDS: Record<string, string> = {
  "3": "a character device", "4": "a block device", "6": "a FIFO",
  M: "the continuation of a file from another volume", N: "an old GNU long-name record",
};

/** The typeflag as it may be printed. */
function flagText(c: number): string {
  return c >= 0x21 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `0x${c.toString(16).padStart(2, "0")}`;
}

/** An entry waiting for the rest of its sparse map: old-GNU extension blocks, or a 1.0 map at the start of its content. */
interface PendingSparse {
  entry: TarListing;
  pieces: number[];
  realSize: number;
  /** Bytes of content after the header (the map's blocks included for 1.0). */
  stored: number;
  /** "ext": extension blocks follow; "map": the 1.0 map is being read from the content. */
  phase: "ext" | "map";
  map?: Uint8Array;
  mapFill?: number;
}

/**
 * Incremental tar reader: push bytes in any chunk sizes, get the entries back, and with
 * `onData` each entry's content after it, in order (never kept here). A sparse file's content
 * comes as its pieces back to back (`sparse` says where each goes).
 */
export class TarParser {
  private readonly header = new Uint8Array(BLOCK);
  /** The same block four bytes at a time (for its checksum): a view, so `header` is never replaced. */
  private readonly headerWords = new Uint32Array(this.header.buffer);
  private headerFill = 0;
  /** Content bytes of the current entry still to come. */
  private content = 0;
  /** Bytes to pass over: the padding after content or an extended header. */
  private skip = 0;
  private meta: { kind: "x" | "g" | "L" | "K"; data: Uint8Array; fill: number; pad: number } | null = null;
  private pax: PaxRecords | undefined;
  /** The records of the last pax global header. */
  private globals = new Map<string, string>();
  private longName: string | undefined;
  private longLink: string | undefined;
  private longNotUtf8 = false;
  private pending: PendingSparse | null = null;
  /** A sparse file's pieces being read: their lengths, each followed by padding to a whole block. */
  private pieces: number[] | null = null;
  private piece = 0;
  private zeroAt = -1;
  /** Where the entry being read started (its first extended header), or -1. */
  private entryStart = -1;
  /** Bytes of the tar stream read so far: once `ended`, the end-of-archive marker ends here. */
  offset = 0;
  ended = false;

  /**
   * Step over `n` bytes of the current entry's content without them, as `push` would with no
   * `onData` (content checked elsewhere: frames-aside.ts). More than is left is a caller's error.
   */
  passContent(n: number): void {
    if (n > this.content) throw new Error(`${n} bytes of content passed over where ${this.content} are left`);
    this.content -= n;
    this.offset += n;
  }

  /** @param onData the content of the entry last given to `onEntry`, in pieces; all of it before the next entry */
  push(chunk: Uint8Array, onEntry: (e: TarListing) => void, onData?: (piece: Uint8Array) => void): void {
    let at = 0;
    while (at < chunk.length && !this.ended) {
      if (this.content > 0) {
        const n = Math.min(this.content, chunk.length - at);
        onData?.(chunk.subarray(at, at + n));
        this.content -= n;
        this.offset += n;
        at += n;
        continue;
      }
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        this.offset += n;
        at += n;
        continue;
      }
      if (this.pieces) {
        if (this.piece === this.pieces.length) this.pieces = null;
        else {
          this.content = this.pieces[this.piece++]!;
          this.skip = paddingAfter(this.content);
        }
        continue;
      }
      if (this.meta) {
        const m = this.meta;
        const n = Math.min(m.data.length - m.fill, chunk.length - at);
        m.data.set(chunk.subarray(at, at + n), m.fill);
        m.fill += n;
        this.offset += n;
        at += n;
        if (m.fill === m.data.length) {
          this.meta = null;
          this.finishMeta(m.kind, m.data);
          this.skip = m.pad;
        }
        continue;
      }
      const n = Math.min(BLOCK - this.headerFill, chunk.length - at);
      this.header.set(chunk.subarray(at, at + n), this.headerFill);
      this.headerFill += n;
      this.offset += n;
      at += n;
      if (this.headerFill === BLOCK) {
        this.headerFill = 0;
        if (this.pending?.phase === "ext") this.onExtension(onEntry);
        else if (this.pending?.phase === "map") this.onMapBlock(onEntry);
        else this.onHeader(onEntry);
      }
    }
  }

  private damage(reason: string, at = this.offset - BLOCK): TarFormatError {
    return new TarFormatError(reason, at);
  }

  private finishMeta(kind: "x" | "g" | "L" | "K", data: Uint8Array): void {
    const at = this.offset - data.length;
    try {
      if (kind === "x") this.pax = parsePaxRecords(data);
      else if (kind === "g") {
        // each global header replaces the one before (an empty one clears it), as GNU tar reads them
        this.globals = parsePaxRecords(data).map;
        if ([...this.globals.keys()].some((k) => k.startsWith("GNU.sparse."))) throw new TarFormatError("a pax global header with sparse-file records (for every later entry), which this reader does not follow", at, "unsupported");
      } else {
        const v = cString(data, 0, data.length);
        this.longNotUtf8 ||= lastNotUtf8;
        if (kind === "L") this.longName = v;
        else this.longLink = v;
      }
    } catch (e) {
      throw e instanceof TarFormatError ? new TarFormatError(e.reason, at) : e;
    }
  }

  private onHeader(onEntry: (e: TarListing) => void): void {
    const b = this.header;
    const at = this.offset - BLOCK;
    if (isZero(b)) {
      if (this.zeroAt >= 0) {
        if (this.pax || this.longName !== undefined || this.longLink !== undefined) throw this.damage("an extended header is followed by the end of the archive", this.entryStart);
        this.ended = true;
      } else this.zeroAt = at;
      return;
    }
    // GNU tar takes a lone zero block for the end and reads no further: an entry after one is not read as an entry
    if (this.zeroAt >= 0) throw this.damage("a lone zero block is followed by more entries", this.zeroAt);
    checkChecksum(b, this.headerWords, at);
    if (this.entryStart < 0) this.entryStart = at;
    const flag = b[156]!;
    const size = this.number(b, 124, 12, "size", 0);
    if (flag === 0x78 || flag === 0x67 || flag === 0x4c || flag === 0x4b) {
      const kind = String.fromCharCode(flag) as "x" | "g" | "L" | "K";
      if (size > MAX_META) throw new TarFormatError(`an extended header of ${size} bytes (more than ${MAX_META} are not read)`, at, "unsupported");
      this.meta = { kind, data: new Uint8Array(size), fill: 0, pad: paddingAfter(size) };
      if (size === 0) {
        this.meta = null;
        this.finishMeta(kind, new Uint8Array(0));
      }
      if (kind === "g") this.entryStart = -1;
      return;
    }
    if (flag === 0x56) {
      // a volume label: nothing to make (GNU tar makes nothing of it either)
      this.skip = size + paddingAfter(size);
      this.reset();
      return;
    }
    this.entry(b, flag, size, at, onEntry);
  }

  /** A numeric field at least `min`, or damage naming it. */
  private number(b: Uint8Array, offset: number, width: number, what: string, min: number): number {
    const v = readNumber(b, offset, width);
    if (Number.isNaN(v)) throw this.damage(`the ${what} field ${numberProblem(b, offset, width)}`);
    if (v < min) throw this.damage(`the ${what} field is negative (${v})`);
    return v;
  }

  /** A pax record's value: the entry's own, else the last global header's. */
  private paxValue(key: string): string | undefined {
    return this.pax?.map.get(key) ?? this.globals.get(key);
  }

  private paxNumber(key: string): number | undefined {
    const v = this.paxValue(key);
    if (v === undefined) return undefined;
    const n = paxInteger(v);
    if (Number.isNaN(n)) throw this.damage(`the pax record ${key}=${JSON.stringify(v)} is not a decimal number`, this.entryStart);
    return n;
  }

  private entry(b: Uint8Array, flag: number, headerSize: number, at: number, onEntry: (e: TarListing) => void): void {
    const magic = cString(b, 257, 8);
    const posix = magic === "ustar" && b[262] === 0;
    const gnu = magic === "ustar  ";
    let notUtf8 = this.longNotUtf8;
    const field = (offset: number, width: number): string => {
      const v = cString(b, offset, width);
      notUtf8 ||= lastNotUtf8;
      return v;
    };
    let name: string;
    if (this.longName !== undefined) name = this.longName;
    else {
      const prefix = posix ? field(345, 155) : "";
      name = field(0, 100);
      if (prefix) name = `${prefix}/${name}`;
    }
    let linkTarget = this.longLink ?? field(157, 100);
    const pathKey = this.paxValue("GNU.sparse.name") !== undefined ? "GNU.sparse.name" : "path";
    const paxPath = this.paxValue(pathKey);
    if (paxPath !== undefined) name = paxPath;
    const paxLink = this.paxValue("linkpath");
    if (paxLink !== undefined) linkTarget = paxLink;
    const bad = this.pax?.notUtf8;
    if (bad && (bad.has(pathKey) || bad.has("linkpath"))) notUtf8 = true;
    const size = this.paxNumber("size") ?? headerSize;
    const paxMtime = this.paxValue("mtime");
    let mtimeNs = BigInt(this.number(b, 136, 12, "mtime", -Number.MAX_SAFE_INTEGER)) * NS_PER_S;
    if (paxMtime !== undefined) {
      const t = parsePaxTime(paxMtime);
      if (t === undefined) throw this.damage(`the pax record mtime=${JSON.stringify(paxMtime)} is not a time`, this.entryStart);
      mtimeNs = t;
    }
    const uid = this.number(b, 108, 8, "uid", 0);
    const gid = this.number(b, 116, 8, "gid", 0);

    let type: TarListing["type"];
    let kind: string | undefined;
    let stored = 0; // content bytes that follow the header
    const c = String.fromCharCode(flag);
    if (flag === 0x53 && !gnu) {
      // GNU tar reads 'S' as a sparse file in its own format only (elsewhere it is star's, or not one)
      type = "other";
      kind = "an old-GNU sparse file in an archive that is not old GNU";
      stored = size;
    } else if (flag === 0x30 || flag === 0 || flag === 0x37 || flag === 0x53) {
      // old tars mark a directory by the slash at the end of a regular file's name, and give it no content
      if (flag !== 0x37 && flag !== 0x53 && name.endsWith("/")) type = "dir";
      else {
        type = "file";
        stored = size;
      }
    } else if (c === "1") type = "hardlink";
    else if (c === "2") type = "symlink";
    else if (c === "5") type = "dir";
    else if (c === "D") {
      // GNU's incremental directory: a directory, its list of names skipped
      type = "dir";
      this.skip = size + paddingAfter(size);
    } else {
      type = "other";
      kind = FILE_KINDS[c] ?? `an entry of unknown type ${flagText(flag)}`;
      stored = size;
    }
    while (type === "dir" && name.length > 1 && name.endsWith("/")) name = name.slice(0, -1);
    const e: TarListing = {
      name,
      type,
      size: type === "file" ? size : 0,
      mode: this.number(b, 100, 8, "mode", 0) & 0o7777,
      uid: this.paxNumber("uid") ?? uid,
      gid: this.paxNumber("gid") ?? gid,
      uname: this.paxValue("uname") ?? (posix || gnu ? cString(b, 265, 32) : ""),
      gname: this.paxValue("gname") ?? (posix || gnu ? cString(b, 297, 32) : ""),
      mtimeNs,
      linkTarget: type === "symlink" || type === "hardlink" ? linkTarget : undefined,
      offset: this.entryStart >= 0 ? this.entryStart : at,
      dumpdir: type === "dir" ? this.pax?.map.get("GNU.dumpdir") : undefined,
    };
    if (kind) e.kind = kind;
    if (notUtf8) e.unrestorable = "its name or link target is not UTF-8";
    if (type === "file" && this.sparse(b, flag, e, stored, onEntry)) return;
    this.emit(e, stored, onEntry);
  }

  /** Hand the entry on; its `stored` content bytes follow. */
  private emit(e: TarListing, stored: number, onEntry: (e: TarListing) => void): void {
    this.reset();
    onEntry(e);
    this.content = stored;
    if (this.skip === 0) this.skip = paddingAfter(stored);
  }

  private reset(): void {
    this.pax = undefined;
    this.longName = undefined;
    this.longLink = undefined;
    this.longNotUtf8 = false;
    this.entryStart = -1;
  }

  /**
   * A sparse file (old GNU 'S', or pax records of GNU's formats 0.0, 0.1, 1.0): its map read,
   * or waited for; false when the entry is a plain file.
   */
  private sparse(b: Uint8Array, flag: number, e: TarListing, stored: number, onEntry: (e: TarListing) => void): boolean {
    if (flag === 0x53) {
      const realSize = this.number(b, 483, 12, "sparse real size", 0);
      const pieces: number[] = [];
      const more = this.slots(b, 386, 4, pieces);
      const p: PendingSparse = { entry: e, pieces, realSize, stored, phase: "ext" };
      if (more && b[482] !== 0) this.pending = p;
      else this.finishSparse(p, onEntry);
      return true;
    }
    const major = this.pax?.map.get("GNU.sparse.major");
    const minor = this.pax?.map.get("GNU.sparse.minor");
    const records = this.pax?.sparse ?? [];
    if (major === undefined && minor === undefined && records.length === 0) return false;
    const realSize = this.paxNumber("GNU.sparse.realsize") ?? this.paxNumber("GNU.sparse.size");
    if (realSize === undefined) throw this.damage("a pax sparse file without GNU.sparse.size or GNU.sparse.realsize", this.entryStart);
    if (major !== undefined || minor !== undefined) {
      if (major !== "1" || minor !== "0") {
        e.type = "other";
        e.kind = `a sparse file of GNU's format ${major ?? "?"}.${minor ?? "?"}, which GNU tar 1.34 does not know either`;
        e.size = 0;
        this.emit(e, stored, onEntry);
        return true;
      }
      this.pending = { entry: e, pieces: [], realSize, stored, phase: "map", map: new Uint8Array(Math.min(stored, MAX_META)), mapFill: 0 };
      if (stored === 0) throw this.damage("a sparse file of format 1.0 without its map", this.entryStart);
      this.reset();
      return true;
    }
    const pieces = this.paxSparseMap(records);
    this.finishSparse({ entry: e, pieces, realSize, stored, phase: "ext" }, onEntry);
    return true;
  }

  /**
   * The map of a sparse file of format 0.0 or 0.1, as GNU tar reads it: GNU.sparse.numblocks
   * first (it sizes the map), then either one GNU.sparse.map or offset and size records in turn.
   */
  private paxSparseMap(records: ReadonlyArray<[string, string]>): number[] {
    const last = records.map(([k]) => k).lastIndexOf("GNU.sparse.numblocks");
    if (last < 0) throw this.damage("a pax sparse map without GNU.sparse.numblocks before it", this.entryStart);
    const count = this.sparseNumber(records[last]![1], "GNU.sparse.numblocks");
    const after = records.slice(last + 1);
    const maps = after.filter(([k]) => k === "GNU.sparse.map");
    const pieces: number[] = [];
    if (maps.length > 0) {
      if (maps.length !== after.length) throw this.damage("a pax sparse map given both as GNU.sparse.map and as offset records", this.entryStart);
      const map = maps.at(-1)![1];
      for (const v of map === "" ? [] : map.split(",")) pieces.push(this.sparseNumber(v, "GNU.sparse.map"));
      if (pieces.length % 2 !== 0) throw this.damage("the pax record GNU.sparse.map has an odd number of values", this.entryStart);
    } else {
      for (const [i, [k, v]] of after.entries()) {
        if (k !== (i % 2 === 0 ? "GNU.sparse.offset" : "GNU.sparse.numbytes")) throw this.damage(`the pax record ${k} out of its turn in a sparse map`, this.entryStart);
        pieces.push(this.sparseNumber(v, k));
      }
      if (pieces.length % 2 !== 0) throw this.damage("a sparse map ends with an offset and no size", this.entryStart);
    }
    if (count !== pieces.length / 2) throw this.damage(`GNU.sparse.numblocks says ${count} pieces, the map has ${pieces.length / 2}`, this.entryStart);
    return pieces;
  }

  private sparseNumber(v: string, key: string): number {
    const n = paxInteger(v);
    if (Number.isNaN(n)) throw this.damage(`the sparse map value ${key}=${JSON.stringify(v)} is not a decimal number`, this.entryStart);
    return n;
  }

  /** Old-GNU sparse slots (offset, size; octal or base-256) from `at`; false once a slot is empty (the map ends). */
  private slots(b: Uint8Array, at: number, count: number, pieces: number[]): boolean {
    for (let i = 0; i < count; i++) {
      const s = at + i * 24;
      if (b[s + 12] === 0) return false;
      pieces.push(this.number(b, s, 12, "sparse offset", 0), this.number(b, s + 12, 12, "sparse size", 0));
      if (pieces.length > 2 * MAX_SPARSE_PIECES) throw new TarFormatError(`a sparse file of more than ${MAX_SPARSE_PIECES} pieces`, this.offset - BLOCK, "unsupported");
    }
    return true;
  }

  private onExtension(onEntry: (e: TarListing) => void): void {
    const p = this.pending!;
    const more = this.slots(this.header, 0, 21, p.pieces);
    if (!more || this.header[504] === 0) {
      this.pending = null;
      this.finishSparse(p, onEntry);
    }
  }

  /** A block of a 1.0 map: decimal numbers each ending in a newline (the count, then offset and size pairs), padded to a block. */
  private onMapBlock(onEntry: (e: TarListing) => void): void {
    const p = this.pending!;
    if (p.mapFill! + BLOCK > p.map!.length) {
      if (p.stored > MAX_META) throw new TarFormatError(`a sparse map of more than ${MAX_META} bytes`, p.entry.offset, "unsupported");
      throw this.damage("a sparse file's map runs past its content", p.entry.offset);
    }
    p.map!.set(this.header, p.mapFill!);
    p.mapFill! += BLOCK;
    const nums: number[] = [];
    let at = 0;
    const m = p.map!;
    while (at < p.mapFill!) {
      const nl = m.indexOf(0x0a, at);
      if (nl < 0 || nl >= p.mapFill!) return; // the number goes on in the next block
      const v = text(m, at, nl);
      nums.push(this.sparseNumber(v, "sparse map of format 1.0"));
      at = nl + 1;
      if (nums.length === 2 * nums[0]! + 1) break;
      if (nums.length > 2 * MAX_SPARSE_PIECES + 1) throw new TarFormatError(`a sparse file of more than ${MAX_SPARSE_PIECES} pieces`, p.entry.offset, "unsupported");
    }
    if (nums.length === 0 || nums.length !== 2 * nums[0]! + 1) return;
    this.pending = null;
    p.pieces = nums.slice(1);
    p.stored -= p.mapFill!;
    this.finishSparse(p, onEntry);
  }

  /** The map against the content and the real size, then the entry. */
  private finishSparse(p: PendingSparse, onEntry: (e: TarListing) => void): void {
    const e = p.entry;
    const pieces: SparsePiece[] = [];
    let sum = 0;
    for (let i = 0; i < p.pieces.length; i += 2) {
      const offset = p.pieces[i]!;
      const length = p.pieces[i + 1]!;
      if (offset + length > p.realSize) throw this.damage(`a sparse piece at ${offset} of ${length} bytes lies past the file's size ${p.realSize}`, e.offset);
      sum += length;
      pieces.push({ offset, length });
    }
    // GNU tar reads each piece as whole blocks (the pieces it writes are, but for the last)
    const blocks = pieces.reduce((n, x) => n + Math.ceil(x.length / BLOCK), 0);
    if (blocks !== Math.ceil(p.stored / BLOCK)) throw this.damage(`a sparse file's ${pieces.length} pieces (${sum} bytes) take ${blocks} blocks as GNU tar reads them, its content ${Math.ceil(p.stored / BLOCK)}`, e.offset);
    e.size = p.realSize;
    e.sparse = pieces;
    this.emit(e, 0, onEntry);
    this.skip = 0;
    this.pieces = pieces.map((x) => x.length);
    this.piece = 0;
  }
}

export function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * The checksum GNU tar accepts: the sum of the bytes as unsigned or (old tars) as signed chars,
 * the field as spaces. `words` is the header block read four bytes at a time (its own memory).
 */
function checkChecksum(b: Uint8Array, words: Uint32Array, at: number): void {
  // the field (bytes 148-155, words 37 and 38) counts as 8 spaces; as signed chars, each byte
  // of 0x80 or more counts 256 less. Four bytes at a time: byte pairs summed in two 16-bit
  // lanes, high bits counted in four 8-bit lanes; 126 words fill neither lane.
  let pairs = 0;
  let highs = 0;
  for (let i = 0; i < 128; i++) {
    if (i === 37) i = 39;
    const w = words[i]!;
    pairs += (w & 0xff00ff) + ((w >>> 8) & 0xff00ff);
    highs += (w >>> 7) & 0x1010101;
  }
  const unsigned = 8 * 0x20 + (pairs % 0x10000) + Math.floor(pairs / 0x10000);
  const high = (highs & 0xff) + ((highs >>> 8) & 0xff) + ((highs >>> 16) & 0xff) + (highs >>> 24);
  const signed = unsigned - 0x100 * high;
  // octal only, as GNU tar reads this field
  let i = b[148] === 0 ? 149 : 148;
  while (i < 156 && isSpace(b[i]!)) i++;
  let v = 0;
  let digits = 0;
  for (; i < 156 && isOctal(b[i]!); i++, digits++) v = v * 8 + (b[i]! - 0x30);
  const ends = i === 156 || b[i] === 0 || isSpace(b[i]!);
  if (digits === 0 || !ends || (v !== unsigned && v !== signed)) throw new TarFormatError("header checksum mismatch", at);
}
