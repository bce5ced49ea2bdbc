/**
 * Deterministic test content: text-like bytes that compress about as well as configuration
 * files and logs, and random bytes that do not compress at all. The same seed gives the
 * same bytes, so a tree can be rebuilt identically.
 */

/** xorshift32: tiny, fast and reproducible; not for anything secret. */
export function makeRng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const WORDS = (
  "the of and to in is that for it as with was on be by this are from or at an have not " +
  "server client backup archive config user group file path error warning info debug " +
  "request response status time date host port value key name index data block cache " +
  "0 1 2 3 42 100 200 404 500 1024 2048 = : ; { } [ ] # - / . , true false null none"
).split(" ");
const enc = new TextEncoder();
const WORD_BYTES = WORDS.map((w) => enc.encode(w));

/** `n` bytes of word salad with newlines: compresses roughly 3-4× with gzip -6. */
export function textLike(rng: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let at = 0;
  let col = 0;
  while (at < n) {
    const r = rng();
    const w = WORD_BYTES[r % WORD_BYTES.length]!;
    const take = Math.min(w.length, n - at);
    out.set(w.subarray(0, take), at);
    at += take;
    col += take;
    if (at < n) {
      out[at++] = col > 60 + ((r >>> 8) & 31) ? 0x0a : 0x20;
      if (out[at - 1] === 0x0a) col = 0;
    }
  }
  return out;
}

/** `n` incompressible bytes. */
export function randomBytes(rng: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = rng();
  for (let i = words.length * 4; i < n; i++) out[i] = rng() & 0xff;
  return out;
}
