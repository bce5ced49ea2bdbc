/** A small seeded generator (mulberry32): fault tests replay exactly with the same seed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Bytes from the seeded generator: incompressible, reproducible. */
export function randomBytes(rand: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  const view = new DataView(out.buffer);
  let i = 0;
  for (; i + 4 <= n; i += 4) view.setUint32(i, Math.floor(rand() * 4294967296));
  for (; i < n; i++) out[i] = Math.floor(rand() * 256);
  return out;
}
