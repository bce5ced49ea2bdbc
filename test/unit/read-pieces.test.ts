/**
 * A pass over an uncompressed archive reads into the same few pieces of memory again
 * (src/core/restore/read.ts, PiecePool): what it reads is still every entry and every file's
 * content, with the file's own checksums, and the pieces it makes are a small share of what
 * it reads.
 */
import { afterAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import type { TarListing } from "../../src/core/archive/tar.ts";
import { archivePass } from "../../src/core/restore/read.ts";
import { tempDir } from "../helpers/fixture.ts";
import { randomBytes, seeded } from "../helpers/random.ts";
import { requireTool } from "../helpers/tools.ts";

const root = tempDir("shoot-read-pieces-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A tree of `n` files of 0 to 20 KiB of random bytes, archived by GNU tar without compression. */
function gnuTarArchive(n: number): { archive: string; sizes: Map<string, number> } {
  const rand = seeded(20261202);
  const tree = path.join(root, "tree");
  const sizes = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const name = `d${i % 7}/f${i}`;
    const bytes = randomBytes(rand, Math.floor(rand() * 20_000));
    fs.mkdirSync(path.join(tree, path.dirname(name)), { recursive: true });
    fs.writeFileSync(path.join(tree, name), bytes);
    sizes.set(name, bytes.length);
  }
  const archive = path.join(root, "a.tar");
  const r = Bun.spawnSync([requireTool("tar"), "-cf", archive, "-C", tree, "."], { stdin: "ignore" });
  if (r.exitCode !== 0) throw new Error(`tar -cf: ${r.stderr.toString()}`);
  return { archive, sizes };
}

const cases = [
  ["entries one by one", (seen: Map<string, number>) => ({ onEntry: (e: TarListing) => note(seen, e) })],
  // a slow reader: pieces wait in the stages' queues while it is given each batch
  ["entries by the batch, waited for", (seen: Map<string, number>) => ({
    onEntries: async (batch: TarListing[]) => {
      for (const e of batch) note(seen, e);
      await new Promise((r) => setTimeout(r, 0));
    },
  })],
] as const;

/** Each file's content as read by the pass, hashed piece by piece during each call. */
function contents(): { onEntry: (e: TarListing) => void; onData: (piece: Uint8Array) => void; md5: Map<string, string> } {
  const md5 = new Map<string, string>();
  let current: { name: string; h: Bun.CryptoHasher; left: number } | undefined;
  const done = () => {
    if (current && current.left === 0) md5.set(current.name, current.h.digest("hex"));
  };
  return {
    md5,
    onEntry: (e) => {
      current = e.type === "file" ? { name: e.name.replace(/^\.\//, ""), h: new Bun.CryptoHasher("md5"), left: e.size } : undefined;
      done();
    },
    onData: (piece) => {
      if (!current) return;
      current.h.update(piece);
      current.left -= piece.length;
      done();
    },
  };
}

function note(seen: Map<string, number>, e: TarListing): void {
  if (e.type === "file") seen.set(e.name.replace(/^\.\//, ""), e.size);
}

const made = gnuTarArchive(400);

test.each(cases)("an uncompressed archive read in small pieces, %s: every entry and both checksums right, a few pieces made", async (_name, reader) => {
  const { archive, sizes } = made;
  const fd = fs.openSync(archive, "r");
  const seen = new Map<string, number>();
  // an odd piece size: headers and contents straddle pieces everywhere
  const pieceBytes = 3001;
  const pass = await archivePass(fd, { pieceBytes, ...reader(seen) }).finally(() => fs.closeSync(fd));
  expect(seen).toEqual(sizes);
  const bytes = fs.readFileSync(archive);
  expect(pass.size).toBe(bytes.length);
  expect(pass.md5).toBe(new Bun.CryptoHasher("md5").update(bytes).digest("hex"));
  expect(pass.sha256).toBe(new Bun.CryptoHasher("sha256").update(bytes).digest("hex"));
  // the stages' queues bound the pieces in flight by their bytes, not by the archive's size
  expect(pass.size / pieceBytes).toBeGreaterThan(1000);
  expect(pass.piecesMade).toBeGreaterThan(0);
  expect(pass.piecesMade! * pieceBytes).toBeLessThan(pass.size / 8);
});

test("an uncompressed archive read in small pieces with the content: every file's bytes as on disk, a few pieces made", async () => {
  const { archive, sizes } = made;
  const fd = fs.openSync(archive, "r");
  const c = contents();
  const pieceBytes = 3001;
  const pass = await archivePass(fd, { pieceBytes, onEntry: c.onEntry, onData: c.onData }).finally(() => fs.closeSync(fd));
  expect([...c.md5.keys()].sort()).toEqual([...sizes.keys()].sort());
  for (const [name, md5] of c.md5) {
    expect({ name, md5 }).toEqual({ name, md5: new Bun.CryptoHasher("md5").update(fs.readFileSync(path.join(root, "tree", name))).digest("hex") });
  }
  expect(pass.piecesMade! * pieceBytes).toBeLessThan(pass.size / 8);
});
