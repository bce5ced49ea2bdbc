import { describe, expect, test } from "bun:test";
import { Chunker, isAllZero, type ChunkerParams } from "../../src/core/archive/chunker.ts";
import { makeRng, randomBytes, textLike } from "../../bench/gen.ts";

const P: ChunkerParams = { minSize: 4096, avgGap: 8192, maxSize: 65536, readSize: 20000 };

/** Feed `data` in slices of the given sizes (cycled); return the pieces. */
function cut(data: Uint8Array, slices: number[], params = P): Buffer[] {
  const pieces: Buffer[] = [];
  const c = new Chunker(params, (p) => pieces.push(p));
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = Math.min(slices[i % slices.length]!, data.length - at);
    c.append(data.subarray(at, at + n));
    at += n;
  }
  c.finish();
  return pieces;
}

function mixed(seed: number, n: number): Uint8Array {
  const rng = makeRng(seed);
  const out = new Uint8Array(n);
  for (let at = 0; at < n; ) {
    const len = Math.min(n - at, 1000 + (rng() % 20000));
    out.set(rng() % 3 === 0 ? randomBytes(rng, len) : textLike(rng, len), at);
    at += len;
  }
  return out;
}

const sizes = (pieces: Buffer[]) => pieces.map((p) => p.length);

describe("content-defined chunker", () => {
  const data = mixed(1, 2_000_000);

  test("pieces put together are the input, and respect min and max", () => {
    const pieces = cut(data, [100_000]);
    expect(Buffer.concat(pieces).equals(Buffer.from(data))).toBe(true);
    for (const p of pieces.slice(0, -1)) {
      expect(p.length).toBeGreaterThanOrEqual(P.minSize);
      expect(p.length).toBeLessThanOrEqual(P.maxSize);
    }
    const avg = data.length / pieces.length;
    expect(avg).toBeGreaterThan(P.minSize + P.avgGap / 2);
    expect(avg).toBeLessThan(P.minSize + P.avgGap * 2);
  }, 10_000);

  test("cut points do not depend on how the input arrives", () => {
    const a = sizes(cut(data, [1_000_000]));
    expect(sizes(cut(data, [1]).slice(0, 50))).toEqual(a.slice(0, 50));
    expect(sizes(cut(data, [511, 7, 30_000, 3]))).toEqual(a);
    expect(sizes(cut(data, [4096]))).toEqual(a);
  }, 30_000);

  test("an insertion changes only the pieces around it", () => {
    const before = cut(data, [65536]);
    const edited = new Uint8Array(data.length + 10);
    edited.set(data.subarray(0, 1_000_000), 0);
    edited.set(new TextEncoder().encode("0123456789"), 1_000_000);
    edited.set(data.subarray(1_000_000), 1_000_010);
    const after = cut(edited, [65536]);
    const old = new Set(before.map((p) => p.toString("base64")));
    const fresh = after.filter((p) => !old.has(p.toString("base64")));
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.length).toBeLessThanOrEqual(3);
  }, 10_000);

  test("a header boundary cuts only past the minimum", () => {
    const pieces: Buffer[] = [];
    const c = new Chunker(P, (p) => pieces.push(p));
    c.append(new Uint8Array(100).fill(1));
    c.boundary(0);
    expect(pieces.length).toBe(0);
    c.append(textLike(makeRng(3), P.minSize));
    c.boundary(1); // the token says no
    expect(pieces.length).toBe(0);
    c.boundary(4);
    expect(pieces.length).toBe(1);
    expect(pieces[0]!.length).toBe(100 + P.minSize);
  }, 5000);

  test("a cut asked for is made at any size, never an empty piece, and not without hashing", () => {
    const pieces: Buffer[] = [];
    const c = new Chunker(P, (p) => pieces.push(p));
    c.cutHere();
    c.append(new Uint8Array(100).fill(1));
    c.cutHere();
    c.cutHere();
    expect(pieces.map((p) => p.length)).toEqual([100]);
    const plain: Buffer[] = [];
    const none = new Chunker({ ...P, avgGap: 0 }, (p) => plain.push(p));
    none.append(new Uint8Array(100).fill(1));
    none.cutHere();
    expect(plain.length).toBe(0);
  }, 5000);

  test("zero runs are cut at the maximum size without hashing each byte", () => {
    const zeros = new Uint8Array(1 << 20);
    let pieces = 0;
    let allMax = true;
    const c = new Chunker({ ...P, readSize: 1 << 20 }, (p) => {
      // the first piece starts with the text
      if (pieces++ > 0) allMax &&= p.length === P.maxSize && isAllZero(p);
    });
    c.append(textLike(makeRng(5), 1000));
    for (let i = 0; i < 512; i++) c.append(zeros);
    expect(pieces).toBeGreaterThan(8000);
    expect(allMax).toBe(true);
    // only the bytes before each piece's first allowed cut (minSize - 32 of every maxSize) are
    // not looked at at all; everything else of the zeros is passed over, never hashed byte by byte
    const looked = 512 * (1 << 20) * (1 - (P.minSize - 32) / P.maxSize);
    expect(c.zeroBytesSkipped).toBeGreaterThan(looked * 0.99);
  }, 10_000);

  test("without hashing, pieces are cut at the maximum only", () => {
    const pieces = cut(data, [30_000], { minSize: 50_000, avgGap: 0, maxSize: 50_000, readSize: 30_000 });
    expect(sizes(pieces).slice(0, -1).every((n) => n === 50_000)).toBe(true);
  }, 5000);
});
