/**
 * A pass that hashes a file while a worker decompresses it (restore's check,
 * src/core/restore/read.ts) reads what the pass on one thread reads: the same entries, the
 * file's own digests, and for a damaged or truncated archive the same damage with the whole
 * file's digests, so that a restore can still tell a changed archive from a damaged one.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import type { TarListing } from "../../src/core/archive/tar.ts";
import { ZstdFrames, type ZstdFrame } from "../../src/core/restore/inflate.ts";
import { ArchiveDamage, archivePass, type PassResult } from "../../src/core/restore/read.ts";
import { tempDir } from "../helpers/fixture.ts";
import { randomBytes, seeded } from "../helpers/random.ts";
import { requireTool } from "../helpers/tools.ts";

const root = tempDir("shoot-read-alongside-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/**
 * Some 12 MiB in 60 files of random letters: compressed, several MiB of Huffman-coded blocks,
 * in which damage is found where it is (stored blocks would hide it until the checksum at the
 * end), so that the worker fails while the file is still being hashed.
 */
function makeTree(): string {
  const rand = seeded(20261203);
  const tree = path.join(root, "tree");
  for (let i = 0; i < 60; i++) {
    const file = path.join(tree, `d${i % 4}`, `f${i}`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.from(randomBytes(rand, Math.floor(rand() * 300_000))).toString("base64"));
  }
  return tree;
}

const tree = makeTree();

function gnuTar(flag: string, name: string): string {
  const archive = path.join(root, name);
  const r = Bun.spawnSync([requireTool("tar"), flag, "-cf", archive, "-C", tree, "."], { stdin: "ignore" });
  if (r.exitCode !== 0) throw new Error(`tar ${flag} -cf: ${r.stderr.toString()}`);
  return archive;
}

function digests(bytes: Uint8Array): { md5: string; sha256: string } {
  return { md5: new Bun.CryptoHasher("md5").update(bytes).digest("hex"), sha256: new Bun.CryptoHasher("sha256").update(bytes).digest("hex") };
}

/** One pass over `file`, its entries by name and size, or the damage it ended with. */
async function pass(file: string, worker: boolean): Promise<{ result?: PassResult; damage?: ArchiveDamage; entries: string[] }> {
  const fd = fs.openSync(file, "r");
  const entries: string[] = [];
  try {
    const result = await archivePass(fd, { worker, onEntry: (e: TarListing) => entries.push(`${e.name} ${e.size}`) });
    return { result, entries };
  } catch (e) {
    if (!(e instanceof ArchiveDamage)) throw e;
    return { damage: e, entries };
  } finally {
    fs.closeSync(fd);
  }
}

/** The tar stream in frames of 128 KiB, each saying its content size, as shoot's writer makes them. */
function zstdFrames(name: string): string {
  const tar = Bun.spawnSync([requireTool("tar"), "-cf", "-", "-C", tree, "."], { stdin: "ignore" }).stdout;
  const frames: Uint8Array[] = [];
  for (let at = 0; at < tar.length; at += 128 << 10) frames.push(Bun.zstdCompressSync(tar.subarray(at, at + (128 << 10))));
  const archive = path.join(root, name);
  fs.writeFileSync(archive, Buffer.concat(frames));
  return archive;
}

describe.each([
  ["gzip", () => gnuTar("-z", "a.tar.gz"), "a.tar.gz"],
  ["zstd, one frame", () => gnuTar("--zstd", "a.tar.zst"), "a.tar.zst"],
  ["zstd, frames of 128 KiB", () => zstdFrames("b.tar.zst"), "b.tar.zst"],
] as const)("%s, hashed alongside the worker", (_c, make, name) => {
  const archive = make();
  const whole = fs.readFileSync(archive);

  test("a whole archive: the same entries and the file's own digests", async () => {
    const alone = await pass(archive, false);
    const alongside = await pass(archive, true);
    expect(alongside.entries.length).toBeGreaterThan(60);
    expect(alongside.entries).toEqual(alone.entries);
    expect(alongside.result).toMatchObject({ ...digests(whole), size: whole.length, tarBytes: alone.result!.tarBytes });
  });

  test.each([
    ["4 KiB of noise in the middle", (b: Buffer) => {
      const c = Buffer.from(b);
      c.set(randomBytes(seeded(7), 4096), c.length >> 1);
      return c;
    }, 0.8],
    ["cut short", (b: Buffer) => b.subarray(0, Math.floor(b.length * 0.6)), 1],
  ] as const)("%s: the same damage, with the whole file's digests", async (_what, spoil, foundBefore) => {
    const bad = spoil(whole);
    const file = path.join(root, `bad-${name}`);
    fs.writeFileSync(file, bad);
    const alone = await pass(file, false);
    const alongside = await pass(file, true);
    // the noise is found where it is, while the worker has read only part of the file
    expect(alone.damage!.fileOffset).toBeLessThanOrEqual(bad.length * foundBefore);
    // how much of the tar stream was parsed when the walk of the frames found the damage depends
    // on how far the decompressor had got: the same damage, said of the same byte, is what counts
    const found = (m: string | undefined) => m?.replace(/whole up to byte \d+/, "whole up to byte …");
    const same = found(alongside.damage?.message) === found(alone.damage!.message);
    // with frames, a damaged frame can decode whole to what is not tar (these frames carry no
    // checksum): whether the worker's decoding or this thread's parse of what a frame decoded to
    // names the damage first is down to the two threads' timing (seen on tmpfs). Either is damage,
    // found before the file's end.
    const parsedFirst = name === "b.tar.zst" && /^the tar stream \(decompressed from zstd\) is damaged at byte \d+/.test(alongside.damage?.message ?? "");
    expect({ same: same || parsedFirst, kind: alongside.damage?.kind, message: alongside.damage?.message }).toMatchObject({ same: true, kind: "damaged" });
    if (parsedFirst) expect(alongside.damage!.fileOffset ?? 0).toBeLessThanOrEqual(bad.length * foundBefore);
    expect(alongside.damage?.digests).toEqual({ size: bad.length, ...digests(bad) });
  });
});

test("a zstd frame whose header says less than it holds is damage, found by both passes", async () => {
  const bytes = Buffer.from(fs.readFileSync(zstdFrames("c.tar.zst")));
  // the third frame's content size field, one less: what it holds no longer fits what it says
  const frames: ZstdFrame[] = [];
  expect(new ZstdFrames({ framed: (f) => frames.push(f) }).push(bytes)).toBeUndefined();
  const at = frames[2]!.start;
  const d = bytes[at + 4]!;
  const sizeField = at + 5 + (d & 0x20 ? 0 : 1) + [0, 1, 2, 4][d & 0x03]!;
  expect([d >> 6, bytes.readUInt32LE(sizeField)]).toEqual([2, 128 << 10]);
  bytes.writeUInt32LE((128 << 10) - 1, sizeField);
  const file = path.join(root, "lies.tar.zst");
  fs.writeFileSync(file, bytes);
  for (const worker of [false, true]) {
    const r = await pass(file, worker);
    expect(r.damage?.message).toMatch(/^the zstd stream does not decode at byte \d+ of the file/);
    expect(r.damage?.digests).toEqual({ size: bytes.length, ...digests(bytes) });
  }
});

/** Where each block header of the first zstd frame in `b` lies (the frame of GNU tar's `--zstd`). */
function blockHeaders(b: Buffer): number[] {
  const d = b[4]!;
  const single = (d & 0x20) !== 0;
  let at = 5 + (single ? 0 : 1) + [0, 1, 2, 4][d & 0x03]! + [single ? 1 : 0, 2, 4, 8][d >> 6]!;
  const out: number[] = [];
  for (let last = false; !last; ) {
    const h = b.readUIntLE(at, 3);
    out.push(at);
    last = (h & 1) === 1;
    // a block of one byte repeated (type 1) holds that byte; the others hold what the header says
    at += 3 + (((h >> 1) & 0x03) === 1 ? 1 : h >>> 3);
  }
  return out;
}

test("one frame, a block header in the middle that claims 1.5 MB: both passes name the block, not where the walk lands", async () => {
  const bytes = Buffer.from(fs.readFileSync(gnuTar("--zstd", "d.tar.zst")));
  const headers = blockHeaders(bytes);
  const at = headers[headers.length >> 1]!;
  const claim = 1_500_000;
  // a raw block larger than any block may be, which the decompressor refuses where it stands; the
  // walk of the frames steps over it and lands on a block of the reserved type, which it refuses
  bytes.writeUIntLE(claim << 3, at, 3);
  bytes.writeUIntLE(3 << 1, at + 3 + claim, 3);
  const file = path.join(root, "long-block.tar.zst");
  fs.writeFileSync(file, bytes);
  const alone = await pass(file, false);
  expect(alone.damage?.message).toMatch(/^the zstd stream does not decode at byte \d+ of the file/);
  const alongside = await pass(file, true);
  // how far the tar stream was parsed by then depends on the threads' pace, as above
  const found = (m: string | undefined) => m?.replace(/whole up to byte \d+/, "whole up to byte …");
  expect(found(alongside.damage?.message)).toBe(found(alone.damage!.message));
  expect(alongside.damage?.digests).toEqual({ size: bytes.length, ...digests(bytes) });
});


test("a zstd frame header of the longest kind (window byte, 8-byte content size) reads, by both passes", async () => {
  const small = path.join(root, "small");
  fs.mkdirSync(small, { recursive: true });
  fs.writeFileSync(path.join(small, "f"), "hello\n");
  const tar = Bun.spawnSync([requireTool("tar"), "-cf", "-", "-C", small, "."], { stdin: "ignore" }).stdout;
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(tar.length));
  // magic; descriptor: 8-byte content size, not single-segment, no checksum; window 1 MiB; one raw last block
  const block = Buffer.alloc(3);
  block.writeUIntLE((tar.length << 3) | 1, 0, 3);
  const frame = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x50]), size, block, tar]);
  const file = path.join(root, "long-header.tar.zst");
  fs.writeFileSync(file, frame);
  expect(Bun.spawnSync([requireTool("zstd"), "-t", "-q", file]).exitCode).toBe(0);
  for (const worker of [false, true]) {
    const r = await pass(file, worker);
    expect(r.damage?.message).toBeUndefined();
    expect(r.entries).toEqual([". 0", "./f 6"]);
  }
});
