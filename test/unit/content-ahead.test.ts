/**
 * What ContentAhead (src/core/restore/content-ahead.ts) foretells must be content to the tar
 * parser: wherever it says the next `ahead` bytes are one file's content, the parser hands
 * those very bytes on as content, whatever the chunks the stream comes in and whatever the
 * archive holds (GNU tar's own archives of every kind of entry, pax and GNU formats, sparse
 * files; archives built byte by byte with a pax size that differs from the header's). And it
 * foretells most of a plain file's content, or setting frames aside would never pay.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { TarParser } from "../../src/core/archive/tar.ts";
import { ContentAhead } from "../../src/core/restore/content-ahead.ts";
import { makeRng, randomBytes } from "../../bench/gen.ts";
import { tempDir } from "../helpers/fixture.ts";
import { concat, entry, file, header } from "../helpers/tar-builder.ts";
import { requireTool } from "../helpers/tools.ts";

const root = tempDir("shoot-content-ahead-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Byte ranges of the stream the parser hands on as content, and how many of them are regular files'. */
function contentOf(tar: Uint8Array): { ranges: Array<[number, number]>; fileBytes: number } {
  const p = new TarParser();
  const ranges: Array<[number, number]> = [];
  let regular = false;
  let fileBytes = 0;
  try {
    p.push(tar, (e) => (regular = e.type === "file" && !e.sparse), (piece) => {
      ranges.push([p.offset, p.offset + piece.length]);
      if (regular) fileBytes += piece.length;
    });
  } catch {
    // damage: the pass stops here, and what is foretold after it is never stepped over
    ranges.push([p.offset, Infinity]);
  }
  return { ranges, fileBytes };
}

function within(ranges: Array<[number, number]>, from: number, to: number): boolean {
  return ranges.some(([a, b]) => a <= from && to <= b);
}

/**
 * The stream fed in chunks of the given sizes (cycled); at each chunk's end what is foretold
 * is checked against the parser, and half of it stepped over as a pass would. The bytes foretold.
 */
function foretold(tar: Uint8Array, chunks: number[]): number {
  const { ranges } = contentOf(tar);
  const c = new ContentAhead();
  let at = 0;
  let told = 0;
  for (let i = 0; at < tar.length; i++) {
    const ahead = c.ahead;
    if (ahead > 0) {
      expect({ at, ahead, within: within(ranges, at, at + ahead) }).toEqual({ at, ahead, within: true });
      const step = Math.max(1, ahead >> 1);
      c.pass(step);
      told += step;
      at += step;
      continue;
    }
    const n = Math.min(chunks[i % chunks.length]!, tar.length - at);
    c.push(tar.subarray(at, at + n));
    at += n;
  }
  return told;
}

const CHUNKS: Array<[string, number[]]> = [
  ["one block at a time", [512]],
  ["odd chunks", [1, 7, 511, 513, 4096, 100_003]],
  ["frames of 256 KiB", [256 << 10]],
];

function gnuTar(format: string, tree: string, extra: string[] = []): Uint8Array {
  const out = path.join(root, `${format}.tar`);
  const r = Bun.spawnSync([requireTool("tar"), `--format=${format}`, ...extra, "-cf", out, "-C", tree, "."], { stdin: "ignore", stderr: "pipe" });
  expect(r.stderr.toString()).toBe("");
  return fs.readFileSync(out);
}

describe("GNU tar's archives of a tree with every kind of entry", () => {
  const rng = makeRng(20261205);
  const tree = path.join(root, "tree");
  fs.mkdirSync(path.join(tree, "d".repeat(90), "e".repeat(90)), { recursive: true });
  fs.writeFileSync(path.join(tree, "big"), randomBytes(rng, (1 << 20) + 5));
  fs.writeFileSync(path.join(tree, "d".repeat(90), "e".repeat(90), "long-named"), randomBytes(rng, 300_000));
  fs.writeFileSync(path.join(tree, "empty"), "");
  fs.writeFileSync(path.join(tree, "small"), "x");
  fs.symlinkSync("big", path.join(tree, "link"));
  fs.linkSync(path.join(tree, "big"), path.join(tree, "hard"));
  const sparse = fs.openSync(path.join(tree, "sparse"), "w");
  fs.writeSync(sparse, randomBytes(rng, 70_000), 0, 70_000, 3 << 20);
  fs.closeSync(sparse);
  for (const [format, extra] of [["gnu", []], ["posix", []], ["posix", ["--sparse"]], ["gnu", ["--sparse"]], ["oldgnu", []]] as const) {
    const tar = gnuTar(format, tree, [...extra]);
    for (const [what, chunks] of CHUNKS) {
      test(`${[format, ...extra].join(" ")}, ${what}: all it foretells is content, and most of the plain files' content`, () => {
        const told = foretold(tar, chunks);
        // fed a block at a time, it is asked at every block: the two large files, nearly whole
        if (chunks[0] === 512) expect(told).toBeGreaterThan(0.9 * ((1 << 20) + 300_000));
        else expect(told).toBeGreaterThan(0);
      });
    }
  }
});

describe("archives built byte by byte", () => {
  const rng = makeRng(7);
  const data = randomBytes(rng, 200_000);
  const pax = (records: string) => entry({ name: "PaxHeaders/x", type: "x", data: records });
  const rec = (k: string, v: string) => {
    const body = ` ${k}=${v}\n`;
    let n = body.length + 1;
    while (String(n).length + body.length !== n) n++;
    return `${n}${body}`;
  };
  const end = new Uint8Array(1024);
  const cases: Array<[string, Uint8Array]> = [
    ["a pax size larger than the header's", concat([pax(rec("size", String(data.length))), entry({ name: "f", data, size: 10 }), end])],
    ["a pax size of 0 where the header says more", concat([pax(rec("size", "0")), header({ name: "f", size: data.length }), file("g", data), end])],
    ["a pax header with a sparse record", concat([pax(rec("GNU.sparse.size", "5") + rec("size", String(data.length))), entry({ name: "f", data, size: data.length }), file("g", data), end])],
    ["a directory whose header says a size (no data follows it)", concat([header({ name: "d/", type: "5", size: 5000 }), file("g", data), end])],
    ["a directory whose header says a size, data after it (damage)", concat([entry({ name: "d/", type: "5", data: data.subarray(0, 5000) }), file("g", data), end])],
    ["an old tar's directory: a regular file whose name ends with a slash", concat([header({ name: "d/", size: 5000 }), file("g", data), end])],
    ["a FIFO whose header says a size: its data is passed over", concat([entry({ name: "p", type: "6", data: data.subarray(0, 5000) }), file("g", data), end])],
    ["a GNU long name, then a file", concat([entry({ name: "././@LongLink", type: "L", data: `${"n".repeat(300)}\0` }), file("x", data), end])],
    ["a base-256 size", concat([entry({ name: "f", data, size: Uint8Array.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0x0d, 0x40]) }), end])],
  ];
  for (const [what, tar] of cases) {
    test(`${what}: all it foretells is content`, () => {
      for (const [, chunks] of CHUNKS) foretold(tar, chunks);
    });
  }
  test("a file of 200,000 bytes after a pax size record: foretold whole in 512-byte chunks", () => {
    expect(foretold(cases[0]![1], [512])).toBeGreaterThan(data.length - 1024);
  });
});
