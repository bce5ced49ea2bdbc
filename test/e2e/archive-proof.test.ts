/**
 * No golden code without proof: the archive writer proves every archive restorable before it
 * returns (archive/pieces.ts), and each of the three checks catches what it is there for.
 * Damage is made for real: bytes of the written file changed or swapped, pieces that do not
 * decompress, tar streams that do not hold what was read.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeArchive, type ArchiveOptions } from "../../src/core/archive/writer.ts";
import { ArchiveUnprovenError } from "../../src/core/archive/pipeline.ts";
import { PieceCompressor } from "../../src/core/archive/compress.ts";
import { StreamProof } from "../../src/core/archive/stream-proof.ts";
import { encodeHeader, paddingAfter, RECORD, BLOCK } from "../../src/core/archive/tar.ts";
import type { Expectation } from "../../src/core/archive/pieces.ts";
import type { Compression } from "../../src/core/common/config.ts";
import { loadConfig, requireServer } from "../../src/core/common/config.ts";
import { realDeps, silentLog } from "../../src/core/common/deps.ts";
import { runServer } from "../../src/core/server/server.ts";
import { spawner } from "../../src/io/process.ts";
import { walkTree } from "../../bench/walk.ts";
import { makeRng, randomBytes, textLike } from "../../bench/gen.ts";
import { archivesIn, serverFixture, statusRecords } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";

const TAR = requireTool("tar");
const MD5SUM = requireTool("md5sum");
const COMPRESSIONS: Compression[] = ["gzip", "zstd", "none"];

let base: string;
let tree: string;

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-proof-"));
  tree = path.join(base, "tree");
  const rng = makeRng(11);
  for (let i = 0; i < 12; i++) {
    const p = path.join(tree, `d${i % 3}`, `f${i}`);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, i % 2 ? randomBytes(rng, 200_000 + i * 9_000) : textLike(rng, 150_000 + i * 7_000));
  }
});

afterAll(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

async function write(file: string, compression: Compression, extra: Partial<ArchiveOptions> = {}) {
  const fd = fs.openSync(file, "w+");
  try {
    return await writeArchive(walkTree(tree), fd, { compression, level: compression === "zstd" ? 3 : 6, threads: 2, ...extra });
  } finally {
    fs.closeSync(fd);
  }
}

function flipByte(fd: number, at: number): void {
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, at);
  b[0] = b[0]! ^ 0x40;
  fs.writeSync(fd, b, 0, 1, at);
}

describe("the writer proves what it wrote", () => {
  for (const compression of COMPRESSIONS) {
    test(`${compression}: a sound archive is proven, and GNU tar restores it`, async () => {
      const file = path.join(base, `ok.${compression}`);
      const r = await write(file, compression);
      expect(r.proven).toBe(true);
      const dest = path.join(base, `ok-x-${compression}`);
      fs.mkdirSync(dest);
      const x = await spawner.run([TAR, "-xpf", file, "-C", dest], { timeoutMs: 60_000 });
      expect(x.exitCode).toBe(0);
      expect(treeDifferences(tree, path.join(dest, tree))).toEqual([]);
    }, 60_000);

    test(`${compression}: a byte changed in the written file is found when it is read back`, async () => {
      const file = path.join(base, `flip.${compression}`);
      const done = write(file, compression, { onWritten: (fd) => flipByte(fd, Math.floor(fs.fstatSync(fd).size / 2)) });
      await expect(done).rejects.toBeInstanceOf(ArchiveUnprovenError);
      await expect(done).rejects.toThrow(/piece \d+ of \d+ \(bytes \d+-\d+ of the file\) is not what its compression worker made/);
    }, 60_000);

    test(`${compression}: a byte changed near either end is found (each half of the file is read back on its own thread)`, async () => {
      for (const [where, at] of [["first", (size: number) => Math.min(10, size - 1)], ["last", (size: number) => size - 1]] as const) {
        const file = path.join(base, `flip-${where}.${compression}`);
        const done = write(file, compression, { onWritten: (fd) => flipByte(fd, at(fs.fstatSync(fd).size)) });
        await expect(done).rejects.toThrow(/piece \d+ of \d+ \(bytes \d+-\d+ of the file\) is not what its compression worker made/);
      }
    }, 60_000);

    test(`${compression}: two pieces of the file swapped (the bug that once shipped) are found`, async () => {
      const file = path.join(base, `swap.${compression}`);
      const done = write(file, compression, {
        onWritten: (fd) => {
          // the file's first 64 KiB and the next 64 KiB change places: same bytes, wrong order
          const a = Buffer.alloc(65536);
          const b = Buffer.alloc(65536);
          fs.readSync(fd, a, 0, a.length, 0);
          fs.readSync(fd, b, 0, b.length, 65536);
          fs.writeSync(fd, b, 0, b.length, 0);
          fs.writeSync(fd, a, 0, a.length, 65536);
        },
      });
      await expect(done).rejects.toBeInstanceOf(ArchiveUnprovenError);
    }, 60_000);

    test(`${compression}: bytes appended after the last piece are found`, async () => {
      const file = path.join(base, `long.${compression}`);
      const done = write(file, compression, { onWritten: (fd) => fs.writeSync(fd, Buffer.from("trailing"), 0, 8, fs.fstatSync(fd).size) });
      await expect(done).rejects.toThrow(/the file holds \d+ bytes, its \d+ pieces \d+/);
    }, 60_000);
  }
});

describe("a piece that does not decompress to what went in is refused", () => {
  const rng = makeRng(3);
  const input = new Uint8Array([...textLike(rng, 100_000), ...randomBytes(rng, 50_000)]);
  const kinds: Array<[string, PieceCompressor]> = [
    ["gzip (libdeflate)", new PieceCompressor("gzip", 6, 1 << 20, false)],
    ["zstd (libzstd)", new PieceCompressor("zstd", 3, 1 << 20, true)],
    ["zstd (Bun's own)", new PieceCompressor("zstd", 3, 1 << 20, false)],
  ];
  for (const [what, c] of kinds) {
    test(`${what}: sound pieces pass; a changed byte, a cut piece, another piece's bytes fail`, () => {
      if (what === "zstd (libzstd)") expect(c.zstd).toBeDefined();
      const made = c.compress(input);
      const bytes = new Uint8Array(made.out.slice(0, made.len));
      c.checkRoundTrip(bytes, input);
      const changed = bytes.slice();
      changed[Math.floor(changed.length / 2)]! ^= 0x01;
      expect(() => c.checkRoundTrip(changed, input)).toThrow(/piece does not decompress/);
      expect(() => c.checkRoundTrip(bytes.subarray(0, bytes.length - 9), input)).toThrow(/piece does not decompress/);
      const other = c.compress(input.subarray(1));
      expect(() => c.checkRoundTrip(new Uint8Array(other.out, 0, other.len), input)).toThrow(/piece does not decompress to what went in/);
    });
  }
});

/** A tar stream of files, with what a writer would have expected of each. */
function tarOf(files: Array<[string, Uint8Array]>): { bytes: Uint8Array; expected: Expectation[] } {
  const parts: Uint8Array[] = [];
  const expected: Expectation[] = [];
  for (const [name, content] of files) {
    parts.push(encodeHeader({ name, type: "file", mode: 0o644, uid: 0, gid: 0, size: content.length, mtimeNs: 1_700_000_000_000_000_000n }));
    parts.push(content, new Uint8Array(paddingAfter(content.length)));
    expected.push({ name, type: "file", size: content.length, crc: Bun.hash.crc32(content) });
  }
  const body = parts.reduce((n, p) => n + p.length, 0);
  const end = 2 * BLOCK + ((RECORD - ((body + 2 * BLOCK) % RECORD)) % RECORD);
  const bytes = new Uint8Array(body + end);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, expected };
}

function verdict(bytes: Uint8Array, expected: Expectation[], chunk = 3000): string | undefined {
  const p = new StreamProof();
  p.expect(expected);
  for (let at = 0; at < bytes.length; at += chunk) p.push(bytes.subarray(at, at + chunk));
  return p.finish();
}

describe("the tar stream must hold exactly what was read", () => {
  const rng = makeRng(5);
  const files: Array<[string, Uint8Array]> = [["a", textLike(rng, 5000)], ["b", randomBytes(rng, 7000)], ["c", textLike(rng, 100)]];
  const { bytes, expected } = tarOf(files);

  test("a sound stream is proven, whatever the chunk sizes", () => {
    for (const chunk of [1, 511, 512, 4096, bytes.length]) expect(verdict(bytes, expected, chunk)).toBeUndefined();
  });

  test("content changed, two 512-byte blocks swapped, an entry missing, a name changed, no end marker, garbage after the end", () => {
    const changed = bytes.slice();
    changed[512 + 100]! ^= 0x20;
    expect(verdict(changed, expected)).toMatch(/"a": its content reads back with CRC-32 [0-9a-f]{8}, what was read from the source has [0-9a-f]{8}/);

    const swapped = bytes.slice();
    swapped.set(bytes.subarray(1024, 1536), 1536);
    swapped.set(bytes.subarray(1536, 2048), 1024);
    expect(verdict(swapped, expected)).toMatch(/CRC-32/);

    expect(verdict(bytes, [...expected, { name: "d", type: "file", size: 1, crc: 0 }])).toMatch(/1 entries read from the sources are not in the tar stream, the first "d"/);
    expect(verdict(bytes, expected.slice(0, 2))).toMatch(/holds 1 entries nothing was read for, the first "c"/);
    expect(verdict(bytes, [{ ...expected[0]!, name: "z" }, ...expected.slice(1)])).toMatch(/is "a", "z" was written there/);
    expect(verdict(bytes, [{ ...expected[0]!, size: 4999 }, ...expected.slice(1)])).toMatch(/"a" reads back with 5000 bytes, 4999 were read/);
    expect(verdict(bytes.subarray(0, bytes.length - 10240), expected)).toMatch(/without its end-of-archive marker/);

    const tail = bytes.slice();
    tail[tail.length - 1] = 7;
    expect(verdict(tail, expected)).toMatch(/after its end-of-archive marker, is not zero/);

    const header = bytes.slice();
    header[5]! ^= 0x01;
    expect(verdict(header, expected)).toMatch(/does not parse at byte \d+/);
  });
});

describe("the server never names an archive that did not prove restorable", () => {
  for (const compression of COMPRESSIONS) {
    test(`${compression}: ARCHIVE_UNPROVEN (28), nothing named, the previous archive stays the newest and verifies`, async () => {
      const fx = serverFixture(`compression = "${compression}"\nkeep = 1`);
      try {
        const cfg = requireServer(loadConfig(fx.config));
        expect((await runServer(cfg, realDeps(silentLog))).code).toBe(30);
        const before = archivesIn(fx.backup);
        fs.appendFileSync(path.join(fx.src, "etc/hosts"), "changed\n");
        const o = await runServer(cfg, realDeps(silentLog), { onArchiveWritten: (fd) => flipByte(fd, 0) });
        expect(o.code).toBe(28);
        const recs = statusRecords(path.join(fx.backup, "server.status"));
        expect(recs.at(-1)).toMatchObject({ code: 28, name: "ARCHIVE_UNPROVEN" });
        expect(recs.at(-1)!.msg).toMatch(/does not prove restorable, so it was removed and the previous archive stays the newest/);
        expect(archivesIn(fx.backup)).toEqual(before);
        expect(fs.readdirSync(fx.backup).filter((n) => n.startsWith(".shoot-tmp-"))).toEqual([]);
        const check = Bun.spawnSync([MD5SUM, "-c", `${before[0]}.md5`], { cwd: fx.backup });
        expect(check.exitCode).toBe(0);
        // the next run, undisturbed, makes and proves the new archive
        expect((await runServer(cfg, realDeps(silentLog))).code).toBe(4);
        const written = statusRecords(path.join(fx.backup, "server.status")).find((r) => r.name === "ARCHIVE_WRITTEN")!;
        expect(written.msg).toMatch(/proven restorable/);
        expect(written.data).toMatchObject({ proven: true });
      } finally {
        fx.cleanup();
      }
    }, 60_000);
  }
});
