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

describe.each([["gzip", "-z", "a.tar.gz"], ["zstd", "--zstd", "a.tar.zst"]] as const)("%s, hashed alongside the worker", (_c, flag, name) => {
  const archive = gnuTar(flag, name);
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
    expect(alongside.damage?.message).toBe(alone.damage!.message);
    expect(alongside.damage?.digests).toEqual({ size: bad.length, ...digests(bad) });
  });
});
