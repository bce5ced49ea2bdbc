import { describe, expect, test } from "bun:test";
import { crc32Zeros } from "../../src/core/archive/crc32.ts";
import { makeRng, randomBytes } from "../../bench/gen.ts";

describe("CRC-32 over zero runs without reading them", () => {
  const rng = makeRng(9);
  const lead = randomBytes(rng, 777);
  const lengths = [0, 1, 2, 3, 7, 8, 255, 256, 511, 512, 4096, 65535, 65536, 1_000_003, 3 << 20];
  for (const start of [0, Bun.hash.crc32(lead)]) {
    test(`from ${start === 0 ? "nothing" : "777 random bytes"}: the same as Bun.hash.crc32 over the zeros, for ${lengths.length} lengths`, () => {
      for (const n of lengths) {
        const want = Bun.hash.crc32(new Uint8Array(n), start);
        expect({ n, crc: crc32Zeros(start, n) }).toEqual({ n, crc: want >>> 0 });
      }
    });
  }

  test("lengths beyond 4 GiB (a sparse 8 GiB file): zeros in two halves give what one run gives", () => {
    const half = 4 * 1024 ** 3 + 12345;
    const start = Bun.hash.crc32(lead);
    expect(crc32Zeros(crc32Zeros(start, half), half)).toBe(crc32Zeros(start, 2 * half));
    // and a run split anywhere agrees with a real computation across the split
    const a = crc32Zeros(start, 100_000);
    expect(Bun.hash.crc32(new Uint8Array(50_000), crc32Zeros(start, 50_000)) >>> 0).toBe(a);
  });
});
