/**
 * The benchmark's generated trees, made once under the data directory and reused: the mixed
 * tree of a given size, and trees of many small files (whole.ts has the 200-directory one).
 */
import fs from "node:fs";
import path from "node:path";
import { makeRng, randomBytes, textLike } from "./gen.ts";
import { MiB } from "./lib.ts";

export interface TreeInfo {
  files: number;
  bytes: number;
  small: string[];
}

export function mixedTreePath(dataDir: string, total: number): string {
  return path.join(dataDir, `tree-${total}`);
}

/**
 * Many small text-like files (30 %), some medium ones (10 %), a few 50-100 MiB ones, part
 * random: `total` bytes in all, under dataDir, made once and reused (its marker says it is whole).
 */
export function mixedTree(dataDir: string, total: number): TreeInfo {
  const tree = mixedTreePath(dataDir, total);
  const marker = path.join(tree, ".complete.json");
  if (fs.existsSync(marker)) return JSON.parse(fs.readFileSync(marker, "utf8")) as TreeInfo;
  fs.rmSync(tree, { recursive: true, force: true });
  console.error(`generating a ${(total / MiB).toFixed(0)} MiB tree in ${tree} ...`);
  const info = writeMixedTree(tree, total);
  fs.writeFileSync(marker, JSON.stringify(info));
  return info;
}


/** The mixed tree written at `tree` (which must not hold one yet), the same bytes for the same `total`. */
export function writeMixedTree(tree: string, total: number): TreeInfo {
  const rng = makeRng(2026);
  const info: TreeInfo = { files: 0, bytes: 0, small: [] };
  const put = (rel: string, data: Uint8Array) => {
    const p = path.join(tree, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
    info.files++;
    info.bytes += data.length;
    return p;
  };
  for (let i = 0, budget = total * 0.3; budget > 0; i++) {
    const n = 500 + (rng() % 24_000);
    info.small.push(put(`small/d${String(i % 200).padStart(3, "0")}/f${String(i).padStart(6, "0")}.txt`, textLike(rng, n)));
    budget -= n;
  }
  for (let i = 0, budget = total * 0.1; budget > 0; i++) {
    const n = MiB + (rng() % (3 * MiB));
    put(`medium/m${i}.${i % 3 === 0 ? "bin" : "log"}`, i % 3 === 0 ? randomBytes(rng, n) : textLike(rng, n));
    budget -= n;
  }
  const bigSize = Math.min(100 * MiB, Math.max(2 * MiB, Math.floor(total / 14)));
  for (let i = 0, budget = total * 0.6; budget > 0; i++) {
    const n = Math.floor(bigSize * (0.5 + (rng() % 1000) / 1000));
    put(`big/b${i}.${i % 5 < 2 ? "bin" : "dat"}`, i % 5 < 2 ? randomBytes(rng, n) : textLike(rng, n));
    budget -= n;
  }
  return info;
}
