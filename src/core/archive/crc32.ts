/**
 * CRC-32 (the IEEE polynomial, as Bun.hash.crc32 and gzip compute it) continued over a run of
 * zero bytes without reading them: appending n zeros multiplies the CRC register by x^(8n)
 * modulo the polynomial, which takes a few dozen steps for any n. Sparse files and zero-filled
 * gaps make such runs gigabytes long, and the archive's proof sums every byte of them twice.
 */

/** The polynomial, bit-reflected. */
const POLY = 0xedb88320;

/** a·b modulo POLY, both reflected (bit 31 is x^0). */
function multiply(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** X2N[k] = x^(2^k) modulo POLY. */
const X2N: number[] = (() => {
  const t: number[] = [];
  let p = 0x40000000; // x^1
  for (let k = 0; k < 64; k++) {
    t.push(p);
    p = multiply(p, p);
  }
  return t;
})();

/** x^(8n) modulo POLY: the register's factor for n zero bytes. */
function zerosFactor(n: number): number {
  let p = 0x80000000; // x^0
  let k = 3; // 8n = n · 2^3
  for (let left = n; left > 0; left = Math.floor(left / 2), k++) {
    if (left % 2 === 1) p = multiply(X2N[k % 64]!, p);
  }
  return p;
}

/** The CRC-32 of what `crc` was taken over, followed by `n` zero bytes. */
export function crc32Zeros(crc: number, n: number): number {
  if (n <= 0) return crc >>> 0;
  return ~multiply(zerosFactor(n), ~crc >>> 0) >>> 0;
}

/** Bun.hash.crc32 continued over `bytes`, with all-zero stretches summed without reading them one by one. */
export function crc32Of(bytes: Uint8Array, crc: number, knownZeros = false): number {
  if (knownZeros) return crc32Zeros(crc, bytes.length);
  return Bun.hash.crc32(bytes, crc);
}
