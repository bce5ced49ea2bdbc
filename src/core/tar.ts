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

function writeBytes(block: Uint8Array, offset: number, bytes: Uint8Array, width: number): void {
  block.set(bytes.subarray(0, width), offset);
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
 * Split a name into ustar prefix (≤155 bytes) and name (≤100 bytes) at a "/", or null when
 * it cannot be split that way.
 */
export function splitUstarName(name: Uint8Array): { prefix: Uint8Array; name: Uint8Array } | null {
  if (name.length <= 100) return { prefix: new Uint8Array(0), name };
  if (name.length > 256) return null;
  // the rest after the slash must fit 100 bytes, the part before it 155: take the first slash
  // that leaves a short enough rest
  for (let i = name.length - 101; i < name.length - 1; i++) {
    if (i < 0) continue;
    if (name[i] === 0x2f) {
      if (i > 155) return null;
      if (i === 0) continue;
      return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
    }
  }
  return null;
}

/** One pax record: "LEN key=value\n", where LEN counts the whole record including itself. */
export function paxRecord(key: string, value: string): Uint8Array {
  const body = enc.encode(` ${key}=${value}\n`);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  const out = new Uint8Array(len);
  out.set(enc.encode(String(len)), 0);
  out.set(body, len - body.length);
  return out;
}

/** Seconds with the fraction written out exactly, trailing zeros dropped (pax `mtime`). */
export function formatPaxTime(ns: bigint): string {
  const neg = ns < 0n;
  const abs = neg ? -ns : ns;
  const sec = abs / NS_PER_S;
  const frac = abs % NS_PER_S;
  let s = sec.toString();
  if (frac !== 0n) s += "." + frac.toString().padStart(9, "0").replace(/0+$/, "");
  return neg ? "-" + s : s;
}

/** Name of the 'x' header itself: informational only, but deterministic and plain ASCII. */
function paxHeaderName(name: string): Uint8Array {
  const base = name.slice(name.lastIndexOf("/") + 1).replace(/[^\x20-\x7e]/g, "_");
  return enc.encode(("PaxHeaders/" + base).slice(0, 100));
}

function ustarBlock(f: {
  name: Uint8Array;
  prefix: Uint8Array;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: number;
  linkname: Uint8Array;
  uname: Uint8Array;
  gname: Uint8Array;
}): Uint8Array {
  const b = new Uint8Array(BLOCK);
  writeBytes(b, 0, f.name, 100);
  writeOctal(b, 100, 8, f.mode);
  writeOctal(b, 108, 8, f.uid);
  writeOctal(b, 116, 8, f.gid);
  writeOctal(b, 124, 12, f.size);
  writeOctal(b, 136, 12, f.mtime);
  b.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  b[156] = f.typeflag;
  writeBytes(b, 157, f.linkname, 100);
  b.set([0x75, 0x73, 0x74, 0x61, 0x72, 0x00, 0x30, 0x30], 257); // "ustar\0" "00"
  writeBytes(b, 265, f.uname, 32);
  writeBytes(b, 297, f.gname, 32);
  writeOctal(b, 329, 8, 0);
  writeOctal(b, 337, 8, 0);
  writeBytes(b, 345, f.prefix, 155);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  writeOctal(b, 148, 7, sum);
  b[155] = 0x20;
  return b;
}

function padded(len: number): number {
  return Math.ceil(len / BLOCK) * BLOCK;
}

/**
 * The header block(s) for one entry: a ustar block, preceded by a pax extended header and its
 * data when some value does not fit ustar.
 *
 * Most entries of a real tree are plain: an ASCII name that fits ustar's fields, ids and size
 * in range, and at most a sub-second mtime for the pax header. Those are written straight into
 * one buffer (`encodePlainHeader`), about five times as fast as the general encoder, which
 * matters on trees of small files (a header per few hundred bytes of content). Every other
 * entry goes through `encodeHeaderGeneral`. Both give the same bytes for a plain entry: the
 * archive format does not depend on which one ran (test/unit/tar.test.ts compares them).
 */
export function encodeHeader(h: TarHeader): Uint8Array {
  return encodePlainHeader(h) ?? encodeHeaderGeneral(h);
}

/** The ustar name field split of a plain-ASCII name: where the prefix ends (-1: no prefix), or undefined when it does not fit. */
function plainSplit(name: string): number | undefined {
  if (name.length <= 100) return -1;
  if (name.length > 256) return undefined;
  // the same choice as splitUstarName: the first slash that leaves a short enough rest
  for (let i = Math.max(1, name.length - 101); i < name.length - 1; i++) {
    if (name.charCodeAt(i) === 0x2f) return i > 155 ? undefined : i;
  }
  return undefined;
}

function writeAscii(b: Uint8Array, offset: number, s: string, from = 0, to = s.length): void {
  for (let i = from; i < to; i++) b[offset + i - from] = s.charCodeAt(i);
}

/** A ustar block at `base` of a zeroed buffer, fields given as plain ASCII strings. */
function plainUstarInto(
  b: Uint8Array,
  base: number,
  f: { name: string; nameFrom: number; prefixEnd: number; mode: number; uid: number; gid: number; size: number; mtime: number; typeflag: number; linkname: string; uname: string; gname: string },
): void {
  if (f.prefixEnd >= 0) writeAscii(b, base + 345, f.name, 0, f.prefixEnd);
  writeAscii(b, base, f.name, f.nameFrom);
  writeOctal(b, base + 100, 8, f.mode);
  writeOctal(b, base + 108, 8, f.uid);
  writeOctal(b, base + 116, 8, f.gid);
  writeOctal(b, base + 124, 12, f.size);
  writeOctal(b, base + 136, 12, f.mtime);
  b.fill(0x20, base + 148, base + 156);
  b[base + 156] = f.typeflag;
  writeAscii(b, base + 157, f.linkname);
  b.set(USTAR_MAGIC, base + 257);
  writeAscii(b, base + 265, f.uname);
  writeAscii(b, base + 297, f.gname);
  writeOctal(b, base + 329, 8, 0);
  writeOctal(b, base + 337, 8, 0);
  let sum = 0;
  for (let i = base; i < base + BLOCK; i++) sum += b[i]!;
  writeOctal(b, base + 148, 7, sum);
  b[base + 155] = 0x20;
}

const USTAR_MAGIC = new Uint8Array([0x75, 0x73, 0x74, 0x61, 0x72, 0x00, 0x30, 0x30]); // "ustar\0" "00"

/** The header of a plain entry (see encodeHeader), or undefined for any other. */
export function encodePlainHeader(h: TarHeader): Uint8Array | undefined {
  const tarName = h.type === "dir" ? (h.name === "" ? "./" : h.name + "/") : h.name;
  if (!isPlainAscii(tarName)) return undefined;
  const prefixEnd = plainSplit(tarName);
  if (prefixEnd === undefined) return undefined;
  let linkname = "";
  if (h.type === "symlink" || h.type === "hardlink") {
    linkname = h.linkTarget ?? "";
    if (linkname.length > 100 || !isPlainAscii(linkname)) return undefined;
  }
  const uname = h.uname ?? "";
  const gname = h.gname ?? "";
  if (uname.length > 31 || gname.length > 31 || !isPlainAscii(uname) || !isPlainAscii(gname)) return undefined;
  const size = h.type === "file" ? h.size : 0;
  if (!(size <= octalMax(12)) || h.uid < 0 || h.uid > octalMax(8) || h.gid < 0 || h.gid > octalMax(8)) return undefined;
  if (h.mtimeNs < 0n) return undefined;
  // seconds and nanoseconds from the decimal digits: one conversion instead of BigInt division
  const digits = h.mtimeNs.toString();
  const secDigits = digits.length > 9 ? digits.slice(0, digits.length - 9) : "0";
  const fraction = digits.length > 9 ? digits.slice(digits.length - 9) : digits.padStart(9, "0");
  const mtime = Number(secDigits);
  if (mtime > octalMax(12)) return undefined;

  const fields = {
    name: tarName,
    nameFrom: prefixEnd + 1,
    prefixEnd,
    mode: h.mode & 0o7777,
    uid: h.uid,
    gid: h.gid,
    size,
    mtime,
    typeflag: TYPEFLAG[h.type],
    linkname,
    uname,
    gname,
  };
  if (fraction === "000000000") {
    const b = new Uint8Array(BLOCK);
    plainUstarInto(b, 0, fields);
    return b;
  }
  // the one pax record a plain entry needs: "LEN mtime=SECONDS.FRACTION\n", trailing zeros dropped
  let end = 9;
  while (fraction.charCodeAt(end - 1) === 0x30) end--;
  const body = ` mtime=${secDigits}.${fraction.slice(0, end)}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  const record = String(len) + body;
  const out = new Uint8Array(BLOCK + padded(len) + BLOCK);
  const slash = tarName.lastIndexOf("/");
  const paxName = ("PaxHeaders/" + tarName.slice(slash + 1)).slice(0, 100);
  plainUstarInto(out, 0, {
    name: paxName,
    nameFrom: 0,
    prefixEnd: -1,
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: len,
    mtime,
    typeflag: 0x78, // 'x'
    linkname: "",
    uname: "",
    gname: "",
  });
  writeAscii(out, BLOCK, record);
  plainUstarInto(out, BLOCK + padded(len), fields);
  return out;
}

/** encodeHeader for any entry: long and non-ASCII names and link targets, large ids and sizes, any mtime. */
export function encodeHeaderGeneral(h: TarHeader): Uint8Array {
  const pax: Uint8Array[] = [];
  const tarName = h.type === "dir" ? (h.name === "" ? "./" : h.name + "/") : h.name;
  const nameBytes = enc.encode(tarName);
  let split = isPlainAscii(tarName) ? splitUstarName(nameBytes) : null;
  if (!split) {
    pax.push(paxRecord("path", tarName));
    split = { prefix: new Uint8Array(0), name: paxHeaderName(tarName).subarray(11) };
  }

  let linkname = new Uint8Array(0);
  if (h.type === "symlink" || h.type === "hardlink") {
    const target = h.linkTarget ?? "";
    const tb = enc.encode(target);
    if (tb.length > 100 || !isPlainAscii(target)) pax.push(paxRecord("linkpath", target));
    else linkname = tb;
  }

  const size = h.type === "file" ? h.size : 0;
  let sizeField = size;
  if (size > octalMax(12)) {
    pax.push(paxRecord("size", String(size)));
    sizeField = 0;
  }

  let uidField = h.uid;
  if (h.uid < 0 || h.uid > octalMax(8)) {
    pax.push(paxRecord("uid", String(h.uid)));
    uidField = 0;
  }
  let gidField = h.gid;
  if (h.gid < 0 || h.gid > octalMax(8)) {
    pax.push(paxRecord("gid", String(h.gid)));
    gidField = 0;
  }

  const owner = (name: string | undefined, key: string): Uint8Array => {
    if (!name) return new Uint8Array(0);
    const b = enc.encode(name);
    if (b.length > 31 || !isPlainAscii(name)) {
      pax.push(paxRecord(key, name));
      return new Uint8Array(0);
    }
    return b;
  };
  const uname = owner(h.uname, "uname");
  const gname = owner(h.gname, "gname");

  const seconds = h.mtimeNs >= 0n ? h.mtimeNs / NS_PER_S : -((-h.mtimeNs + NS_PER_S - 1n) / NS_PER_S);
  const whole = h.mtimeNs % NS_PER_S === 0n;
  let mtimeField = Number(seconds);
  if (!whole || mtimeField < 0 || mtimeField > octalMax(12)) {
    pax.push(paxRecord("mtime", formatPaxTime(h.mtimeNs)));
    mtimeField = Math.min(Math.max(mtimeField, 0), octalMax(12));
  }

  const main = ustarBlock({
    name: split.name,
    prefix: split.prefix,
    mode: h.mode & 0o7777,
    uid: uidField,
    gid: gidField,
    size: sizeField,
    mtime: mtimeField,
    typeflag: TYPEFLAG[h.type],
    linkname,
    uname,
    gname,
  });
  if (pax.length === 0) return main;

  let paxLen = 0;
  for (const r of pax) paxLen += r.length;
  const out = new Uint8Array(BLOCK + padded(paxLen) + BLOCK);
  out.set(
    ustarBlock({
      name: paxHeaderName(tarName),
      prefix: new Uint8Array(0),
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: paxLen,
      mtime: mtimeField,
      typeflag: 0x78, // 'x'
      linkname: new Uint8Array(0),
      uname: new Uint8Array(0),
      gname: new Uint8Array(0),
    }),
    0,
  );
  let at = BLOCK;
  for (const r of pax) {
    out.set(r, at);
    at += r.length;
  }
  out.set(main, BLOCK + padded(paxLen));
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
}

export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TarFormatError";
  }
}

const dec = new TextDecoder();

function cString(b: Uint8Array, offset: number, width: number): string {
  const field = b.subarray(offset, offset + width);
  const end = field.indexOf(0);
  return dec.decode(end < 0 ? field : field.subarray(0, end));
}

function readNumber(b: Uint8Array, offset: number, width: number): number {
  const field = b.subarray(offset, offset + width);
  if (field[0]! & 0x80) {
    // base-256 (GNU): big-endian two's complement with the top bit as marker
    let v = field[0]! & 0x3f;
    const negative = (field[0]! & 0x40) !== 0;
    for (let i = 1; i < width; i++) v = v * 256 + field[i]!;
    return negative ? v - 2 ** (8 * width - 2) : v;
  }
  const s = cString(b, offset, width).trim();
  return s === "" ? 0 : parseInt(s, 8);
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
    const len = parseInt(dec.decode(data.subarray(at, sp)), 10);
    if (!Number.isFinite(len) || len <= 0 || at + len > data.length) throw new TarFormatError("bad pax record length");
    const rec = dec.decode(data.subarray(sp + 1, at + len - 1));
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
 * Incremental tar reader: push bytes in any chunk sizes, get the entries back. Content is
 * skipped, not kept.
 */
export class TarParser {
  private header = new Uint8Array(BLOCK);
  private headerFill = 0;
  private skip = 0;
  private meta: { kind: "x" | "g" | "L" | "K"; data: Uint8Array; fill: number; pad: number } | null = null;
  private pax = new Map<string, string>();
  private longName: string | undefined;
  private longLink: string | undefined;
  private zeroBlocks = 0;
  ended = false;

  push(chunk: Uint8Array, onEntry: (e: TarListing) => void): void {
    let at = 0;
    while (at < chunk.length && !this.ended) {
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
    });
    this.pax = new Map();
    this.longName = undefined;
    this.longLink = undefined;
    // hard links, symlinks and directories carry no content even when size says otherwise
    // in some writers; ours always write 0, and GNU tar skips `size` bytes for any type but these
    const content = type === "file" || type === "other" ? size : 0;
    this.skip = content + paddingAfter(content);
  }
}
