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
function paxHeaderName(name: string): string {
  const base = name.slice(name.lastIndexOf("/") + 1).replace(/[^\x20-\x7e]/g, "_");
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

const USTAR_MAGIC = new Uint8Array([0x75, 0x73, 0x74, 0x61, 0x72, 0x00, 0x30, 0x30]); // "ustar\0" "00"

/** A ustar block at `base` of a zeroed buffer; every text field is plain ASCII that fits its width. */
function ustarInto(b: Uint8Array, base: number, f: UstarFields): void {
  writeAscii(b, base, f.name);
  writeOctal(b, base + 100, 8, f.mode);
  writeOctal(b, base + 108, 8, f.uid);
  writeOctal(b, base + 116, 8, f.gid);
  writeOctal(b, base + 124, 12, f.size);
  writeOctal(b, base + 136, 12, f.mtime);
  b.fill(0x20, base + 148, base + 156); // checksum is computed with its own field as spaces
  b[base + 156] = f.typeflag;
  writeAscii(b, base + 157, f.linkname);
  b.set(USTAR_MAGIC, base + 257);
  writeAscii(b, base + 265, f.uname);
  writeAscii(b, base + 297, f.gname);
  writeOctal(b, base + 329, 8, 0);
  writeOctal(b, base + 337, 8, 0);
  writeAscii(b, base + 345, f.prefix);
  let sum = 0;
  for (let i = base; i < base + BLOCK; i++) sum += b[i]!;
  writeOctal(b, base + 148, 7, sum);
  b[base + 155] = 0x20;
}

function padded(len: number): number {
  return Math.ceil(len / BLOCK) * BLOCK;
}

/**
 * The header block(s) for one entry: a ustar block, preceded by a pax extended header and its
 * data when some value does not fit ustar. Written straight into one buffer, text a byte per
 * character and times cut from their decimal digits: on a tree of small files the header is as
 * much work as the file (measured: 9 µs an entry with TextEncoder calls and BigInt division,
 * about 2 µs this way).
 */
export function encodeHeader(h: TarHeader): Uint8Array {
  // the pax records, their length in bytes (each record starts with its own) and whether all are ASCII
  let records = "";
  let paxLen = 0;
  let paxAscii = true;
  const addPax = (key: string, value: string): void => {
    const r = paxRecordText(key, value);
    records += r;
    paxLen += parseInt(r, 10);
    paxAscii &&= isPlainAscii(value);
  };
  const tarName = h.type === "dir" ? (h.name === "" ? "./" : h.name + "/") : h.name;
  let split = isPlainAscii(tarName) ? splitUstarName(tarName) : null;
  if (!split) {
    addPax("path", tarName);
    split = { prefix: "", name: paxHeaderName(tarName).slice("PaxHeaders/".length) };
  }

  let linkname = "";
  if (h.type === "symlink" || h.type === "hardlink") {
    const target = h.linkTarget ?? "";
    if (target.length > 100 || !isPlainAscii(target)) addPax("linkpath", target);
    else linkname = target;
  }

  const size = h.type === "file" ? h.size : 0;
  let sizeField = size;
  if (size > octalMax(12)) {
    addPax("size", String(size));
    sizeField = 0;
  }

  let uidField = h.uid;
  if (h.uid < 0 || h.uid > octalMax(8)) {
    addPax("uid", String(h.uid));
    uidField = 0;
  }
  let gidField = h.gid;
  if (h.gid < 0 || h.gid > octalMax(8)) {
    addPax("gid", String(h.gid));
    gidField = 0;
  }

  const owner = (name: string | undefined, key: string): string => {
    if (!name) return "";
    if (name.length > 31 || !isPlainAscii(name)) {
      addPax(key, name);
      return "";
    }
    return name;
  };
  const uname = owner(h.uname, "uname");
  const gname = owner(h.gname, "gname");

  const mtime = mtimeFields(h.mtimeNs);
  if (mtime.pax !== undefined) addPax("mtime", mtime.pax);
  if (h.type === "dir" && h.dumpdir !== undefined) addPax("GNU.dumpdir", h.dumpdir);

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
  if (paxLen === 0) {
    const b = new Uint8Array(BLOCK);
    ustarInto(b, 0, main);
    return b;
  }

  const out = new Uint8Array(BLOCK + padded(paxLen) + BLOCK);
  ustarInto(out, 0, {
    name: paxHeaderName(tarName),
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
  if (paxAscii) writeAscii(out, BLOCK, records);
  else enc.encodeInto(records, out.subarray(BLOCK, BLOCK + paxLen));
  ustarInto(out, BLOCK + padded(paxLen), main);
  return out;
}

/** Zero bytes that follow `size` bytes of content to reach the next block boundary. */
export function paddingAfter(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

// ---------------------------------------------------------------------------------------------
// Decoding

export interface TarListing {
  name: string;
  type: TarType | "other";
  size: number;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtimeNs: bigint;
  linkTarget?: string;
  /** A directory's GNU dumpdir, when the archive is an incremental one (incremental.ts). */
  dumpdir?: string;
}

export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TarFormatError";
  }
}

const dec = new TextDecoder();

/** Longest ASCII run turned into a string a character code at a time; longer ones go through the decoder. */
const SHORT_ASCII = 256;

/**
 * Bytes as text: ASCII (nearly every header field) without a decoder call, which on a tree of
 * small files cost more than the rest of reading an entry; anything else as UTF-8.
 */
function text(b: Uint8Array, from: number, to: number): string {
  if (to - from > SHORT_ASCII) return dec.decode(b.subarray(from, to));
  let out = "";
  for (let i = from; i < to; i++) {
    const c = b[i]!;
    if (c >= 0x80) return dec.decode(b.subarray(from, to));
    out += String.fromCharCode(c);
  }
  return out;
}

function cString(b: Uint8Array, offset: number, width: number): string {
  const limit = offset + width;
  let end = offset;
  while (end < limit && b[end] !== 0) end++;
  return text(b, offset, end);
}

/** ASCII whitespace, as String.prototype.trim removes it. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function readNumber(b: Uint8Array, offset: number, width: number): number {
  if (b[offset]! & 0x80) {
    // base-256 (GNU): big-endian two's complement with the top bit as marker
    let v = b[offset]! & 0x3f;
    const negative = (b[offset]! & 0x40) !== 0;
    for (let i = 1; i < width; i++) v = v * 256 + b[offset + i]!;
    return negative ? v - 2 ** (8 * width - 2) : v;
  }
  // octal text up to the first NUL, with blanks around it (as parseInt of the trimmed field)
  const limit = offset + width;
  let i = offset;
  let end = offset;
  while (end < limit && b[end] !== 0) end++;
  while (i < end && isSpace(b[i]!)) i++;
  if (i === end) return 0;
  const sign = b[i] === 0x2d ? -1 : 1;
  if (b[i] === 0x2d || b[i] === 0x2b) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
    digits++;
  }
  return digits === 0 ? NaN : sign * v;
}

function parsePaxTime(v: string): bigint {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(v);
  if (!m) throw new TarFormatError(`bad pax time "${v}"`);
  const ns = BigInt(m[2]!) * NS_PER_S + BigInt((m[3] ?? "").slice(0, 9).padEnd(9, "0"));
  return m[1] ? -ns : ns;
}

/** Parse pax records into key/value pairs. */
export function parsePax(data: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) break;
    const sp = data.indexOf(0x20, at);
    if (sp < 0) throw new TarFormatError("bad pax record");
    const len = parseInt(text(data, at, sp), 10);
    if (!Number.isFinite(len) || len <= 0 || at + len > data.length) throw new TarFormatError("bad pax record length");
    const rec = text(data, sp + 1, at + len - 1);
    const eq = rec.indexOf("=");
    if (eq < 0) throw new TarFormatError("bad pax record");
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    at += len;
  }
  return out;
}

/** Largest pax or GNU long-name payload accepted, so a broken archive cannot eat memory. */
const MAX_META = 1 << 20;

/**
 * Incremental tar reader: push bytes in any chunk sizes, get the entries back, and with
 * `onData` each entry's content after it, in order (never kept here).
 */
export class TarParser {
  private header = new Uint8Array(BLOCK);
  private headerFill = 0;
  /** Content bytes of the current entry still to come. */
  private content = 0;
  /** Bytes to pass over: the padding after content or an extended header. */
  private skip = 0;
  private meta: { kind: "x" | "g" | "L" | "K"; data: Uint8Array; fill: number; pad: number } | null = null;
  private pax = new Map<string, string>();
  private longName: string | undefined;
  private longLink: string | undefined;
  private zeroBlocks = 0;
  ended = false;
  /** Bytes consumed so far: once `ended`, the end-of-archive marker ends here. */
  offset = 0;

  /** @param onData the content of the entry last given to `onEntry`, in pieces; all of it before the next entry */
  push(chunk: Uint8Array, onEntry: (e: TarListing) => void, onData?: (piece: Uint8Array) => void): void {
    let at = 0;
    while (at < chunk.length && !this.ended) {
      if (this.content > 0) {
        const n = Math.min(this.content, chunk.length - at);
        onData?.(chunk.subarray(at, at + n));
        this.content -= n;
        at += n;
        continue;
      }
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
        continue;
      }
      if (this.meta) {
        const m = this.meta;
        const n = Math.min(m.data.length - m.fill, chunk.length - at);
        m.data.set(chunk.subarray(at, at + n), m.fill);
        m.fill += n;
        at += n;
        if (m.fill === m.data.length) {
          this.finishMeta(m.kind, m.data);
          this.meta = null;
          this.skip = m.pad;
        }
        continue;
      }
      const n = Math.min(BLOCK - this.headerFill, chunk.length - at);
      this.header.set(chunk.subarray(at, at + n), this.headerFill);
      this.headerFill += n;
      at += n;
      if (this.headerFill === BLOCK) {
        this.headerFill = 0;
        this.onHeader(onEntry);
      }
    }
    this.offset += at;
  }

  private finishMeta(kind: "x" | "g" | "L" | "K", data: Uint8Array): void {
    if (kind === "x") this.pax = parsePax(data);
    else if (kind === "L") this.longName = cString(data, 0, data.length);
    else if (kind === "K") this.longLink = cString(data, 0, data.length);
  }

  private onHeader(onEntry: (e: TarListing) => void): void {
    const b = this.header;
    if (b.every((x) => x === 0)) {
      this.zeroBlocks++;
      if (this.zeroBlocks === 2) this.ended = true;
      return;
    }
    this.zeroBlocks = 0;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
    if (sum !== readNumber(b, 148, 8)) throw new TarFormatError("header checksum mismatch");
    const flag = String.fromCharCode(b[156]!);
    let size = readNumber(b, 124, 12);
    if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
      if (size > MAX_META) throw new TarFormatError(`extended header of ${size} bytes is too large`);
      this.meta = { kind: flag, data: new Uint8Array(size), fill: 0, pad: paddingAfter(size) };
      if (size === 0) {
        this.finishMeta(flag, this.meta.data);
        this.meta = null;
      }
      return;
    }
    const ustar = cString(b, 257, 6) === "ustar";
    const prefix = ustar ? cString(b, 345, 155) : "";
    let name = this.longName ?? (prefix ? prefix + "/" : "") + cString(b, 0, 100);
    let linkTarget: string | undefined = this.longLink ?? cString(b, 157, 100);
    const pax = this.pax;
    name = pax.get("path") ?? name;
    linkTarget = pax.get("linkpath") ?? linkTarget;
    if (pax.has("size")) size = Number(pax.get("size"));
    const uid = pax.has("uid") ? Number(pax.get("uid")) : readNumber(b, 108, 8);
    const gid = pax.has("gid") ? Number(pax.get("gid")) : readNumber(b, 116, 8);
    const mtimeNs = pax.has("mtime") ? parsePaxTime(pax.get("mtime")!) : BigInt(readNumber(b, 136, 12)) * NS_PER_S;
    const type: TarListing["type"] =
      flag === "0" || flag === "\0" || flag === "7" ? "file"
      : flag === "1" ? "hardlink"
      : flag === "2" ? "symlink"
      : flag === "5" ? "dir"
      : "other";
    if (type === "dir" && name.endsWith("/")) name = name.slice(0, -1);
    onEntry({
      name,
      type,
      size: type === "file" ? size : 0,
      mode: readNumber(b, 100, 8) & 0o7777,
      uid,
      gid,
      uname: pax.get("uname") ?? (ustar ? cString(b, 265, 32) : ""),
      gname: pax.get("gname") ?? (ustar ? cString(b, 297, 32) : ""),
      mtimeNs,
      linkTarget: type === "symlink" || type === "hardlink" ? linkTarget : undefined,
      dumpdir: type === "dir" ? pax.get("GNU.dumpdir") : undefined,
    });
    this.pax = new Map();
    this.longName = undefined;
    this.longLink = undefined;
    // hard links, symlinks and directories carry no content even when size says otherwise
    // in some writers; ours always write 0, and GNU tar skips `size` bytes for any type but these
    const content = type === "file" || type === "other" ? size : 0;
    this.content = content;
    this.skip = paddingAfter(content);
  }
}
