import { describe, expect, test } from "bun:test";
import { openLibzstd } from "../../src/core/archive/libzstd.ts";
import { PieceCompressor, POOL_MAX } from "../../src/core/archive/compress.ts";
import { makeRng, randomBytes, textLike } from "../../bench/gen.ts";

const rng = makeRng(7);
const text = textLike(rng, 600 << 10);
const noise = randomBytes(rng, 600 << 10);

describe("libzstd through bun:ffi", () => {
  // if it did not load, every zstd archive would quietly take the slow path
  const z = openLibzstd();
  test("loads on this machine (Debian: apt-get install -y libzstd1)", () => {
    expect(z).toBeDefined();
    expect(z!.version).toMatch(/^libzstd 1\.\d+\.\d+$/);
  });

  const cases: Array<[string, Uint8Array]> = [
    ["one byte", text.subarray(0, 1)],
    ["100 KiB of text", text.subarray(0, 100 << 10)],
    ["512 KiB of text", text.subarray(0, 512 << 10)],
    ["512 KiB of noise (the frame is larger than its input)", noise.subarray(0, 512 << 10)],
    ["text then noise", new Uint8Array([...text.subarray(0, 200 << 10), ...noise.subarray(0, 50 << 10)])],
  ];
  for (const [what, input] of cases) {
    test(`${what}: one standard frame that Bun's zstd reads back`, () => {
      const out = new ArrayBuffer(z!.bound(input.length));
      const n = z!.compress(input, out, 3);
      expect(n).toBeGreaterThan(0);
      expect(n).toBeLessThanOrEqual(out.byteLength);
      const frame = new Uint8Array(out, 0, n);
      expect([...frame.subarray(0, 4)]).toEqual([0x28, 0xb5, 0x2f, 0xfd]);
      expect(Buffer.from(Bun.zstdDecompressSync(frame)).equals(Buffer.from(input))).toBe(true);
    });
  }

  test("a context used again gives the same bytes as a fresh one (archives stay deterministic)", () => {
    const out = new ArrayBuffer(z!.bound(512 << 10));
    const frameOf = (zz: typeof z, input: Uint8Array, level: number) => Buffer.from(new Uint8Array(out, 0, zz!.compress(input, out, level)));
    const first = frameOf(z, text.subarray(0, 300 << 10), 3);
    frameOf(z, noise.subarray(0, 512 << 10), 3);
    frameOf(z, text.subarray(100, 200_000), 19);
    expect(frameOf(z, text.subarray(0, 300 << 10), 3).equals(first)).toBe(true);
    expect(frameOf(openLibzstd(), text.subarray(0, 300 << 10), 3).equals(first)).toBe(true);
  });

  test("a buffer too small for the frame is libzstd's error, not a short frame", () => {
    expect(() => z!.compress(noise.subarray(0, 4096), new ArrayBuffer(1000), 3)).toThrow(/^libzstd: Destination buffer is too small/);
  });

  test("empty input is refused", () => {
    expect(() => z!.compress(new Uint8Array(0), new ArrayBuffer(100), 3)).toThrow("libzstd: no input");
  });
});

describe("the compression worker's output buffers", () => {
  test("at most POOL_MAX are kept, however many the sink hands back at once", () => {
    const c = new PieceCompressor("zstd", 3, 512 << 10, true);
    // the sink's replies held up: a buffer is made for every piece meanwhile
    const made = Array.from({ length: 3 * POOL_MAX }, (_, i) => c.compress(text.subarray(i, i + (64 << 10))));
    expect(made.every((m) => m.pooled)).toBe(true);
    expect(new Set(made.map((m) => m.out)).size).toBe(made.length);
    for (const m of made) c.giveBack(m.out);
    expect(c.pooled).toBe(POOL_MAX);
    const again = c.compress(text.subarray(0, 64 << 10));
    expect(made.some((m) => m.out === again.out)).toBe(true);
    expect(c.pooled).toBe(POOL_MAX - 1);
  });
});
