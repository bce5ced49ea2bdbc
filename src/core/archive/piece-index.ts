/**
 * The piece index kept beside an archive on the server (`<archive>.pieces`): the hash of every
 * compressed piece, in order. The next run compares its own pieces with it and counts the
 * places where the two archives differ, which is what the backup host sizes rsync's delta
 * blocks by (transfer/rsync.ts, deltaBlockSize). Only a hint: an index that is missing or
 * unreadable means the count from the scan is used instead.
 */

/** 16 bytes: the name, a version and padding, so the hashes that follow are aligned. */
const MAGIC = "shoot-pieces 1\n\0";
const HEADER = MAGIC.length;

export function encodePieceIndex(hashes: BigUint64Array): Uint8Array {
  const out = new Uint8Array(HEADER + hashes.length * 8);
  out.set(new TextEncoder().encode(MAGIC));
  const view = new DataView(out.buffer);
  for (let i = 0; i < hashes.length; i++) view.setBigUint64(HEADER + i * 8, hashes[i]!, true);
  return out;
}

/** The hashes of an index, or undefined when `bytes` is not one. */
export function decodePieceIndex(bytes: Uint8Array): BigUint64Array | undefined {
  if (bytes.length < HEADER || (bytes.length - HEADER) % 8 !== 0) return undefined;
  if (new TextDecoder().decode(bytes.subarray(0, HEADER)) !== MAGIC) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hashes = new BigUint64Array((bytes.length - HEADER) / 8);
  for (let i = 0; i < hashes.length; i++) hashes[i] = view.getBigUint64(HEADER + i * 8, true);
  return hashes;
}

/**
 * In how many places an archive of pieces `hashes` differs from one of pieces `before`: runs of
 * consecutive pieces the earlier archive does not hold anywhere. A piece found at another place
 * costs rsync nothing but its block checksums, so it starts no place.
 */
export function changedRuns(before: BigUint64Array, hashes: BigUint64Array): number {
  const known = new Set(before);
  let runs = 0;
  let inRun = false;
  for (const h of hashes) {
    const changed = !known.has(h);
    if (changed && !inRun) runs++;
    inRun = changed;
  }
  return runs;
}
