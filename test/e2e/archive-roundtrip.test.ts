/**
 * Round trips through GNU tar at every internal boundary of the writer: every compression ×
 * kinds of content (random, text, zeros, mixed within one file, already compressed) × sizes
 * at and around the piece sizes, the output buffer, the read size and 512-byte blocks × one
 * and several compression threads. Then a seeded property test over random trees. Each
 * archive is extracted by GNU tar and compared with its source byte for byte, mode and time.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeArchive } from "../../src/core/archive/writer.ts";
import type { Compression } from "../../src/core/common/config.ts";
import { spawner, describeResult } from "../../src/io/process.ts";
import { walkTree } from "../../bench/walk.ts";
import { makeRng, randomBytes, textLike } from "../../bench/gen.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";

const TAR = requireTool("tar");
const COMPRESSIONS: Compression[] = ["gzip", "zstd", "none"];
const KiB = 1024;
const MiB = 1024 * KiB;

/** Sizes at and around the writer's boundaries (content sizes; each adds a 512-byte header). */
const SIZES = [
  0, 1, 511, 512, 513, 1023, 10240,
  32 * KiB - 1, 32 * KiB, 32 * KiB + 1, // gzip's smallest piece
  128 * KiB - 512, 128 * KiB - 1, 128 * KiB, 128 * KiB + 1, // zstd's smallest piece
  256 * KiB - 513, 256 * KiB - 512, 256 * KiB - 1, 256 * KiB, 256 * KiB + 1, // gzip's largest piece, half the output buffer, the read size
  512 * KiB - 1024, 512 * KiB - 1, 512 * KiB, 512 * KiB + 1, // zstd's largest piece, the output buffer
  MiB - 1, MiB, MiB + 1, // plain tar's piece
  MiB + 512 * KiB + 7,
];

type Kind = "random" | "text" | "zeros" | "mixed" | "compressed";
const KINDS: Kind[] = ["compressed", "mixed", "random", "text", "zeros"];

function content(kind: Kind, n: number, rng: () => number): Uint8Array {
  switch (kind) {
    case "random": return randomBytes(rng, n);
    case "text": return textLike(rng, n);
    case "zeros": return new Uint8Array(n);
    case "compressed": {
      // gzip members of text, back to back, cut to size: already-compressed data
      const out = new Uint8Array(n);
      for (let at = 0; at < n; ) {
        const g = Bun.gzipSync(textLike(rng, 64 * KiB) as Uint8Array<ArrayBuffer>, { level: 1 });
        const take = Math.min(g.length, n - at);
        out.set(g.subarray(0, take), at);
        at += take;
      }
      return out;
    }
    case "mixed": {
      // text, then random, then zeros, then text again, within one file
      const out = new Uint8Array(n);
      const q = Math.floor(n / 4);
      out.set(textLike(rng, q), 0);
      out.set(randomBytes(rng, q), q);
      out.set(textLike(rng, n - 3 * q), 3 * q);
      return out;
    }
  }
}

let base: string;

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-roundtrip-"));
  fs.chmodSync(base, 0o755);
});

afterAll(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

async function writeTo(file: string, root: string, compression: Compression, threads: number): Promise<void> {
  const fd = fs.openSync(file, "w+");
  try {
    await writeArchive(walkTree(root), fd, { compression, level: compression === "zstd" ? 3 : 6, threads });
  } finally {
    fs.closeSync(fd);
  }
}

/** GNU tar's extraction of `file` compared with `root`: the differences, none when it restores. */
async function restoredDifferences(file: string, root: string, dest: string): Promise<string[]> {
  fs.mkdirSync(dest, { recursive: true });
  const r = await spawner.run([TAR, "-x", "-p", "--numeric-owner", "-f", file, "-C", dest], { timeoutMs: 120_000, captureStdout: true });
  if (r.exitCode !== 0 || r.stderrTail.join("").trim() !== "") throw new Error(`GNU tar could not extract ${file}: ${describeResult(r)}`);
  return treeDifferences(root, path.join(dest, root), { owners: process.getuid?.() === 0, root: true });
}

describe("every boundary round-trips through GNU tar", () => {
  let tree: string;
  beforeAll(() => {
    tree = path.join(base, "boundaries");
    const rng = makeRng(20);
    // a directory per size holding each kind: small and large pieces alternate in the stream
    for (const size of SIZES) {
      const dir = path.join(tree, `s${String(size).padStart(8, "0")}`);
      fs.mkdirSync(dir, { recursive: true });
      for (const kind of KINDS) fs.writeFileSync(path.join(dir, kind), content(kind, size, rng));
    }
  }, 120_000);

  for (const compression of COMPRESSIONS) {
    for (const threads of [1, 3]) {
      test(`${compression}, ${threads} thread(s): ${SIZES.length} sizes × ${KINDS.length} kinds`, async () => {
        const file = path.join(base, `b-${compression}-${threads}.tar`);
        await writeTo(file, tree, compression, threads);
        expect(await restoredDifferences(file, tree, path.join(base, `x-${compression}-${threads}`))).toEqual([]);
      }, 120_000);
    }
  }
});

/** Bytes in which two files differ: all but their longest common start and end. */
function differingBytes(a: Buffer, b: Buffer): number {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let end = 0;
  while (end < a.length - start && end < b.length - start && a[a.length - 1 - end] === b[b.length - 1 - end]) end++;
  return Math.max(a.length, b.length) - start - end;
}

describe("a large file's header is a piece of its own: a new time for the file changes only it", () => {
  for (const compression of ["gzip", "zstd"] as const) {
    test(compression, async () => {
      const rng = makeRng(31);
      const tree = path.join(base, `header-${compression}`);
      fs.mkdirSync(tree, { recursive: true });
      // text before it, so that without a cut the header would end a piece of 100 KiB of text
      fs.writeFileSync(path.join(tree, "a-text"), textLike(rng, 100 * KiB));
      const large = path.join(tree, "b-large");
      fs.writeFileSync(large, randomBytes(rng, 2 * MiB));
      fs.writeFileSync(path.join(tree, "c-text"), textLike(rng, 50 * KiB));
      const day1 = path.join(base, `header-${compression}-1.tar`);
      await writeTo(day1, tree, compression, 2);
      // a time with a fraction, as the first one has: the pax header keeps its length
      fs.utimesSync(large, new Date(1_700_000_000_123), new Date(1_700_000_000_123));
      const day2 = path.join(base, `header-${compression}-2.tar`);
      await writeTo(day2, tree, compression, 2);
      // the header's piece compressed, and the frame or member around it: a few hundred bytes
      expect(differingBytes(fs.readFileSync(day1), fs.readFileSync(day2))).toBeLessThan(1024);
      expect(await restoredDifferences(day2, tree, path.join(base, `header-${compression}-x`))).toEqual([]);
    }, 60_000);
  }
});

/** A random tree: files of every kind and many sizes, links, empty directories, odd modes and times. */
function randomTree(root: string, rng: () => number): void {
  fs.mkdirSync(root, { recursive: true });
  const dirs = [root];
  const files: string[] = [];
  const n = 1 + (rng() % 20);
  for (let i = 0; i < n; i++) {
    const parent = dirs[rng() % dirs.length]!;
    const name = path.join(parent, `e${i}`);
    const pick = rng() % 10;
    if (pick < 2) {
      fs.mkdirSync(name);
      dirs.push(name);
    } else if (pick === 2 && files.length > 0) {
      fs.linkSync(files[rng() % files.length]!, name);
    } else if (pick === 3) {
      fs.symlinkSync(rng() % 2 ? `e${rng() % n}` : "../nowhere", name);
    } else {
      // small ones, and enough around or past a piece size that pieces of every size follow each other
      const r = rng() % 8;
      const size = r < 3 ? rng() % 4096 : r < 6 ? rng() % (600 * KiB) : SIZES[rng() % SIZES.length]! + (rng() % 1025) - 512;
      fs.writeFileSync(name, content(KINDS[rng() % KINDS.length]!, Math.max(0, size), rng));
      fs.chmodSync(name, [0o644, 0o600, 0o755, 0o4755, 0o444, 0o2711][rng() % 6]!);
      files.push(name);
    }
  }
  // times last, deepest first, so that making a name does not move its directory's time
  const all = [...files, ...dirs.slice(1).reverse(), root];
  for (const p of all) {
    const t = new Date(1_000_000_000_000 + (rng() % 700_000_000) * 1000 + (rng() % 1000));
    fs.utimesSync(p, t, t);
  }
}

describe("seeded property test: random trees restore exactly", () => {
  const CASES = Number(process.env.SHOOT_PROPERTY_CASES ?? 200);
  const SEED = Number(process.env.SHOOT_PROPERTY_SEED ?? 2026);

  test(`${CASES} random trees (seed ${SEED}), every compression, 1 to 3 threads`, async () => {
    const rng = makeRng(SEED);
    const tally: Record<string, number> = {};
    let bytes = 0;
    for (let i = 0; i < CASES; i++) {
      const compression = COMPRESSIONS[i % 3]!;
      const threads = 1 + (rng() % 3);
      const root = path.join(base, "prop", `t${i}`);
      randomTree(root, rng);
      const file = path.join(base, "prop", `t${i}.tar`);
      await writeTo(file, root, compression, threads);
      bytes += fs.statSync(file).size;
      const diffs = await restoredDifferences(file, root, path.join(base, "prop", `x${i}`));
      if (diffs.length > 0) throw new Error(`case ${i} (seed ${SEED}, ${compression}, ${threads} threads) does not restore:\n${diffs.slice(0, 10).join("\n")}`);
      tally[compression] = (tally[compression] ?? 0) + 1;
      fs.rmSync(path.join(base, "prop"), { recursive: true, force: true });
    }
    console.log(`property test: ${CASES} trees restored exactly (${JSON.stringify(tally)}), ${(bytes / MiB).toFixed(1)} MiB of archives, seed ${SEED}`);
    expect(Object.values(tally).reduce((a, b) => a + b, 0)).toBe(CASES);
  }, 600_000);
});
