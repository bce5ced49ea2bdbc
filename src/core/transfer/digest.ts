/**
 * The checksum of a whole file, read in large pieces: on a 600 MB archive MD5 through a file
 * stream took 1.5 s, with 1 MiB reads 0.96 s.
 */
import fs from "node:fs";
import type { DigestAlgorithm } from "./follow-digest.ts";

const READ = 1 << 20;
/** Let timers and signal handlers run this often while hashing (bytes). */
const YIELD_EVERY = 64 << 20;

/** The checksum of a whole file. */
export async function fileDigest(file: string, algorithm: DigestAlgorithm): Promise<string> {
  const h = new Bun.CryptoHasher(algorithm);
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.allocUnsafe(READ);
    let sinceYield = 0;
    for (let n = fs.readSync(fd, buf, 0, READ, null); n > 0; n = fs.readSync(fd, buf, 0, READ, null)) {
      h.update(buf.subarray(0, n));
      if ((sinceYield += n) >= YIELD_EVERY) {
        sinceYield = 0;
        await new Promise<void>((r) => setImmediate(r));
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest("hex");
}
