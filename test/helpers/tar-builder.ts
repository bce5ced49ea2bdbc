/**
 * Tar archives built byte by byte, in every dialect GNU tar reads: v7, ustar (POSIX), old GNU
 * (long names and links 'L'/'K', sparse 'S' with extension blocks), pax extended headers ('x')
 * and global headers ('g') with any records, pax sparse files 0.0, 0.1 and 1.0, base-256
 * numbers. Nothing here checks what it is given: hostile archives are the point. Every field
 * can be set to raw bytes, and `patch` changes the header block before its checksum is made.
 */
import zlib from "node:zlib";

export const BLOCK = 512;
const enc = new TextEncoder();

export type Bytes = Uint8Array | string;

function bytes(b: Bytes): Uint8Array {
  return typeof b === "string" ? enc.encode(b) : b;
}

/** `value` as octal digits filling `width - 1` bytes and a NUL (or a raw field given as text). */
export function octal(value: number | bigint, width: number): Uint8Array {
  const out = new Uint8Array(width);
  const digits = value.toString(8).padStart(width - 1, "0");
  out.set(enc.encode(digits.slice(-(width - 1))));
  return out;
}

/** GNU's base-256 form: big-endian two's complement, the top bit of the first byte set. */
export function base256(value: number | bigint, width: number): Uint8Array {
  const out = new Uint8Array(width);
  let v = BigInt(value);
  if (v < 0n) v += 1n << BigInt(8 * width);
  for (let i = width - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  out[0]! |= 0x80;
  return out;
}

export type Magic = "ustar" | "gnu" | "v7";

/** One header block's fields; numbers may be given as raw field bytes. */
export interface HeaderFields {
  name: Bytes;
  /** The typeflag, one character ("0", "5", "x", "S", "\0", …). */
  type?: string;
  mode?: number | Uint8Array;
  uid?: number | Uint8Array;
  gid?: number | Uint8Array;
  size?: number | bigint | Uint8Array;
  mtime?: number | bigint | Uint8Array;
  linkname?: Bytes;
  uname?: Bytes;
  gname?: Bytes;
  devmajor?: number;
  devminor?: number;
  /** POSIX ustar only: the prefix field. */
  prefix?: Bytes;
  magic?: Magic;
  /** Called on the block before its checksum is computed. */
  patch?: (block: Uint8Array) => void;
  /** "signed": the checksum of the bytes as signed chars (old tars); a number: that value, right or wrong. */
  checksum?: "unsigned" | "signed" | number;
}

function put(block: Uint8Array, at: number, width: number, v: Bytes | undefined): void {
  if (v === undefined) return;
  const b = bytes(v);
  block.set(b.subarray(0, width), at);
}

function num(block: Uint8Array, at: number, width: number, v: number | bigint | Uint8Array | undefined, dflt: number): void {
  const f = v instanceof Uint8Array ? v : octal(v ?? dflt, width);
  block.set(f.subarray(0, width), at);
}

/** The checksum field as GNU tar writes it: six octal digits, a NUL, a space. */
function setChecksum(block: Uint8Array, how: HeaderFields["checksum"]): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += how === "signed" ? (block[i]! << 24) >> 24 : block[i]!;
  const value = typeof how === "number" ? how : sum;
  const digits = (value < 0 ? value + 0o1000000 : value).toString(8).padStart(6, "0").slice(-6);
  block.set(enc.encode(digits), 148);
  block[154] = 0;
  block[155] = 0x20;
}

/** One header block. */
export function header(f: HeaderFields): Uint8Array {
  const b = new Uint8Array(BLOCK);
  put(b, 0, 100, f.name);
  num(b, 100, 8, f.mode, 0o644);
  num(b, 108, 8, f.uid, 0);
  num(b, 116, 8, f.gid, 0);
  num(b, 124, 12, f.size, 0);
  num(b, 136, 12, f.mtime, 1_600_000_000);
  b[156] = (f.type ?? "0").charCodeAt(0);
  put(b, 157, 100, f.linkname);
  const magic = f.magic ?? "ustar";
  if (magic === "ustar") put(b, 257, 8, "ustar\u000000");
  else if (magic === "gnu") put(b, 257, 8, "ustar  \u0000");
  if (magic !== "v7") {
    put(b, 265, 32, f.uname ?? "root");
    put(b, 297, 32, f.gname ?? "root");
    num(b, 329, 8, f.devmajor, 0);
    num(b, 337, 8, f.devminor, 0);
  }
  if (magic === "ustar") put(b, 345, 155, f.prefix);
  f.patch?.(b);
  setChecksum(b, f.checksum);
  return b;
}

/** Zeros that bring `n` bytes to a whole block. */
export function pad(n: number): Uint8Array {
  return new Uint8Array((BLOCK - (n % BLOCK)) % BLOCK);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A header and its content, padded: `size` defaults to the content's length. */
export function entry(f: Omit<HeaderFields, "size"> & { size?: HeaderFields["size"]; data?: Bytes }): Uint8Array {
  const data = bytes(f.data ?? "");
  const out = new Uint8Array(BLOCK + data.length + pad(data.length).length);
  out.set(header({ ...f, size: f.size ?? data.length }));
  out.set(data, BLOCK);
  return out;
}

export const file = (name: Bytes, data: Bytes = "", more: Partial<HeaderFields> = {}) => entry({ name, data, ...more });
export const dir = (name: Bytes, more: Partial<HeaderFields> = {}) => entry({ name, type: "5", mode: 0o755, ...more });
export const symlink = (name: Bytes, target: Bytes, more: Partial<HeaderFields> = {}) => entry({ name, type: "2", linkname: target, mode: 0o777, ...more });
export const hardlink = (name: Bytes, target: Bytes, more: Partial<HeaderFields> = {}) => entry({ name, type: "1", linkname: target, ...more });

/** One pax record, its length counting itself. */
export function paxRecord(key: string, value: Bytes): Uint8Array {
  const v = bytes(value);
  const k = enc.encode(` ${key}=`);
  const body = k.length + v.length + 1;
  let len = body + 1;
  while (String(len).length + body !== len) len = String(len).length + body;
  const out = new Uint8Array(len);
  const digits = enc.encode(String(len));
  out.set(digits);
  out.set(k, digits.length);
  out.set(v, digits.length + k.length);
  out[len - 1] = 0x0a;
  return out;
}

/** A pax extended header ('x') or global header ('g') with these records, raw record text allowed. */
export function pax(records: ReadonlyArray<readonly [string, Bytes]> | Uint8Array, type: "x" | "g" = "x", more: Partial<HeaderFields> = {}): Uint8Array {
  const data = records instanceof Uint8Array ? records : concat(records.map(([k, v]) => paxRecord(k, v)));
  return entry({ name: type === "g" ? "GlobalHead.0.1" : "PaxHeaders/x", type, data, ...more });
}

/** A GNU long name ('L') or long link target ('K') block and its content (NUL-terminated, as GNU writes it). */
export function gnuLong(type: "L" | "K", value: Bytes): Uint8Array {
  const v = concat([bytes(value), new Uint8Array(1)]);
  return entry({ name: "././@LongLink", type, data: v, magic: "gnu", mode: 0o644 });
}

export type SparseMap = ReadonlyArray<readonly [offset: number, length: number]>;

/**
 * The content of a sparse file as GNU tar reads it: the bytes of each piece of `full` the map
 * names, each padded to a whole block but the last (whose padding is the entry's).
 */
export function packed(full: Uint8Array, map: SparseMap): Uint8Array {
  const last = map.reduce((k, [, n], i) => (n > 0 ? i : k), -1);
  return concat(map.flatMap(([o, n], i) => (i < last ? [full.subarray(o, o + n), pad(n)] : [full.subarray(o, o + n)])));
}

/** An old-GNU sparse entry ('S'): four map entries in the header, 21 in each extension block. */
export function oldGnuSparse(name: string, full: Uint8Array, map: SparseMap, more: Partial<HeaderFields> = {}): Uint8Array {
  const data = packed(full, map);
  const sp = (b: Uint8Array, at: number, [o, n]: readonly [number, number]) => {
    b.set(octal(o, 12), at);
    b.set(octal(n, 12), at + 12);
  };
  const first = map.slice(0, 4);
  const rest = map.slice(4);
  const h = header({
    name, magic: "gnu", type: "S", size: data.length, ...more,
    patch: (b) => {
      first.forEach((m, i) => sp(b, 386 + i * 24, m));
      b[482] = rest.length > 0 ? 1 : 0;
      b.set(octal(full.length, 12), 483);
      more.patch?.(b);
    },
  });
  const ext: Uint8Array[] = [];
  for (let i = 0; i < rest.length; i += 21) {
    const b = new Uint8Array(BLOCK);
    rest.slice(i, i + 21).forEach((m, j) => sp(b, j * 24, m));
    b[504] = i + 21 < rest.length ? 1 : 0;
    ext.push(b);
  }
  return concat([h, ...ext, data, pad(data.length)]);
}

/** A pax sparse entry of GNU's format 0.0 (repeated offset/numbytes), 0.1 (one map record) or 1.0 (map in the data). */
export function paxSparse(version: "0.0" | "0.1" | "1.0", name: string, full: Uint8Array, map: SparseMap, more: Partial<HeaderFields> = {}): Uint8Array {
  const data = packed(full, map);
  const stored = `GNUSparseFile.0/${name.split("/").at(-1)}`;
  if (version === "0.0") {
    const recs: Array<[string, string]> = [["GNU.sparse.size", String(full.length)], ["GNU.sparse.numblocks", String(map.length)]];
    for (const [o, n] of map) recs.push(["GNU.sparse.offset", String(o)], ["GNU.sparse.numbytes", String(n)]);
    return concat([pax(recs), entry({ name, data, ...more })]);
  }
  if (version === "0.1") {
    const recs: Array<[string, string]> = [
      ["GNU.sparse.size", String(full.length)], ["GNU.sparse.numblocks", String(map.length)], ["GNU.sparse.name", name],
      ["GNU.sparse.map", map.flat().join(",")],
    ];
    return concat([pax(recs), entry({ name: stored, data, ...more })]);
  }
  const mapText = enc.encode(`${map.length}\n${map.map(([o, n]) => `${o}\n${n}\n`).join("")}`);
  const body = concat([mapText, pad(mapText.length), data]);
  const recs: Array<[string, string]> = [["GNU.sparse.major", "1"], ["GNU.sparse.minor", "0"], ["GNU.sparse.name", name], ["GNU.sparse.realsize", String(full.length)]];
  return concat([pax(recs), entry({ name: stored, data: body, ...more })]);
}

/** The end of an archive: two zero blocks, then zeros to a whole record of 20 blocks (as GNU tar writes). */
export function end(before: number, record = true): Uint8Array {
  const n = before + 2 * BLOCK;
  return new Uint8Array(2 * BLOCK + (record ? (10_240 - (n % 10_240)) % 10_240 : 0));
}

/** Entries then the end-of-archive blocks. */
export function tar(...parts: Uint8Array[]): Uint8Array {
  const body = concat(parts);
  return concat([body, end(body.length)]);
}

export type Compression = "none" | "gzip" | "zstd";

export function compress(t: Uint8Array, c: Compression, level?: number): Uint8Array {
  if (c === "gzip") return zlib.gzipSync(t, { level: level ?? 6 });
  if (c === "zstd") return zlib.zstdCompressSync(t, level === undefined ? undefined : { params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
  return t;
}

export const EXT: Record<Compression, string> = { none: ".tar", gzip: ".tar.gz", zstd: ".tar.zst" };
