/**
 * Streamed entries (database dumps) in real archives: content of unknown length written after
 * the files, its header filled in afterwards. Every compression × sizes at and around the
 * writer's boundaries × kinds of content × one or two streams, each archive checked by gzip or
 * zstd, extracted by GNU tar and compared with its sources byte for byte, its MD5 and SHA-256
 * recomputed from the file. A stream that ends unwhole fails the archive.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeArchive, type StreamedEntry } from "../../src/core/archive/writer.ts";
import { RESERVED, frameHeader, streamedHeader } from "../../src/core/archive/streamed.ts";
import { TarParser } from "../../src/core/archive/tar.ts";
import type { Compression } from "../../src/core/common/config.ts";
import { describeResult, spawner } from "../../src/io/process.ts";
import { walkTree } from "../../bench/walk.ts";
import { makeRng, randomBytes, textLike } from "../../bench/gen.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";

const TAR = requireTool("tar");
const GZIP = requireTool("gzip");
const ZSTD = requireTool("zstd");
const COMPRESSIONS: Compression[] = ["gzip", "zstd", "none"];
const KiB = 1024;
const MiB = 1024 * KiB;
const SIZES = [0, 1, 511, 512, 513, 32 * KiB + 1, 128 * KiB - 1, 256 * KiB, 512 * KiB + 1, MiB + 7, 3 * MiB + 333];

let base: string;
let tree: string;
beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-streamed-"));
  fs.chmodSync(base, 0o755);
  tree = path.join(base, "tree");
  const rng = makeRng(7);
  fs.mkdirSync(path.join(tree, "etc"), { recursive: true });
  fs.writeFileSync(path.join(tree, "etc/app.conf"), textLike(rng, 3000));
  fs.writeFileSync(path.join(tree, "etc/blob"), randomBytes(rng, 300 * KiB));
});
afterAll(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

/** A stream of `data` in chunks of random sizes (as a pipe delivers them), with a pause now and then. */
function streamOf(name: string, data: Uint8Array, seed: number, fail?: Error): StreamedEntry {
  const rng = makeRng(seed);
  return {
    name, mode: 0o600, uid: 0, gid: 0, uname: "root", gname: "root", mtimeMs: Date.parse("2024-05-01T12:00:00Z"),
    content: (async function* () {
      for (let at = 0; at < data.length; ) {
        const n = Math.min(data.length - at, 1 + Math.floor(rng() * 300 * KiB));
        yield data.subarray(at, at + n);
        at += n;
        if (rng() < 0.05) await Bun.sleep(1);
      }
    })(),
    ended: async () => {
      if (fail) throw fail;
    },
  };
}

function dumpData(kind: "text" | "random" | "zeros", size: number, seed: number): Uint8Array {
  const rng = makeRng(seed);
  return kind === "text" ? textLike(rng, size) : kind === "zeros" ? new Uint8Array(size) : randomBytes(rng, size);
}

async function write(file: string, compression: Compression, streams: StreamedEntry[], threads = 2) {
  const fd = fs.openSync(file, "w+");
  try {
    return await writeArchive(walkTree(tree), fd, { compression, level: compression === "zstd" ? 3 : 6, threads, streams });
  } finally {
    fs.closeSync(fd);
  }
}

async function run(argv: string[]): Promise<string> {
  const r = await spawner.run(argv, { timeoutMs: 60_000, captureStdout: true });
  if (r.exitCode !== 0) throw new Error(describeResult(r));
  return r.stdout;
}

/** gzip/zstd test it, GNU tar extracts it; the tree and every dump compared byte for byte; the digests recomputed. */
async function check(file: string, compression: Compression, dumps: Record<string, Uint8Array>, result: { md5: string; sha256: string; size: number }): Promise<void> {
  if (compression === "gzip") await run([GZIP, "-t", file]);
  if (compression === "zstd") await run([ZSTD, "-tq", file]);
  const dest = fs.mkdtempSync(path.join(base, "x-"));
  const r = await spawner.run([TAR, "-x", "-p", "--numeric-owner", "-f", file, "-C", dest], { timeoutMs: 60_000 });
  expect({ file, tar: r.exitCode, err: r.stderrTail.join("\n") }).toEqual({ file, tar: 0, err: "" });
  expect(treeDifferences(tree, path.join(dest, tree))).toEqual([]);
  for (const [name, data] of Object.entries(dumps)) {
    const got = fs.readFileSync(path.join(dest, name));
    expect({ name, size: got.length, same: Buffer.from(data).equals(got) }).toEqual({ name, size: data.length, same: true });
    const st = fs.statSync(path.join(dest, name));
    expect({ name, mode: st.mode & 0o777, mtime: st.mtimeMs }).toEqual({ name, mode: 0o600, mtime: Date.parse("2024-05-01T12:00:00Z") });
  }
  const bytes = fs.readFileSync(file);
  expect({ size: bytes.length, md5: new Bun.CryptoHasher("md5").update(bytes).digest("hex"), sha256: new Bun.CryptoHasher("sha256").update(bytes).digest("hex") })
    .toEqual({ size: result.size, md5: result.md5, sha256: result.sha256 });
  fs.rmSync(dest, { recursive: true, force: true });
}

describe("streamed entries round-trip through GNU tar", () => {
  for (const compression of COMPRESSIONS) {
    test(`${compression}: every size, text, random and zeros, one stream or two`, async () => {
      let n = 0;
      for (const size of SIZES) {
        // zeros: whole pieces of them travel without their bytes (the pipeline proves them as zeros)
        for (const kind of ["text", "random", "zeros"] as const) {
          const a = dumpData(kind, size, size + 1);
          const b = dumpData(kind === "text" ? "random" : "text", (size * 7) % (MiB + 3), size + 2);
          const two = n % 2 === 1;
          const file = path.join(base, `${compression}-${size}-${kind}.tar`);
          const streams = [streamOf("dumps/a.sql", a, n), ...(two ? [streamOf("dumps/b.dump", b, n + 100)] : [])];
          const result = await write(file, compression, streams, 1 + (n % 2));
          expect(result.proven).toBe(true);
          expect(result.streamed).toEqual([{ name: "dumps/a.sql", size: a.length }, ...(two ? [{ name: "dumps/b.dump", size: b.length }] : [])]);
          await check(file, compression, two ? { "dumps/a.sql": a, "dumps/b.dump": b } : { "dumps/a.sql": a }, result);
          fs.rmSync(file);
          n++;
        }
      }
      console.log(`streamed ${compression}: ${n} archives with ${SIZES.length} stream sizes extracted by GNU tar and compared`);
    }, 240_000);
  }

  test("a stream that ends unwhole fails the archive with its own error; nothing is proven", async () => {
    for (const compression of COMPRESSIONS) {
      const file = path.join(base, `fail-${compression}.tar`);
      const err = new Error("pg_dump was killed by SIGKILL");
      await expect(write(file, compression, [streamOf("dumps/a.sql", dumpData("text", 700 * KiB, 3), 1, err)])).rejects.toThrow("pg_dump was killed by SIGKILL");
      fs.rmSync(file, { force: true });
    }
  }, 60_000);

  test("framed headers: one stored gzip member, one raw zstd frame, one block; sizes of 8 GiB and more in base-256", async () => {
    const e = { name: "dumps/huge.sql", mode: 0o600, uid: 0, gid: 0, uname: "root", gname: "root", mtimeMs: 1_700_000_000_000 };
    for (const size of [0, 12345, 8 ** 11 - 1, 8 ** 11, 9 * 1024 ** 3 + 5, 2 ** 50]) {
      const h = streamedHeader(e, size);
      expect(h.length).toBe(512);
      let got: number | undefined;
      new TarParser().push(h, (t) => (got = t.size));
      expect({ size, parsed: got }).toEqual({ size, parsed: size });
      for (const c of COMPRESSIONS) expect(frameHeader(c, h).length).toBe(RESERVED[c]);
    }
    // GNU tar lists the base-256 size (and then finds the content missing)
    const file = path.join(base, "huge.tar");
    fs.writeFileSync(file, streamedHeader(e, 9 * 1024 ** 3 + 5));
    const r = await spawner.run([TAR, "-tvf", file], { timeoutMs: 10_000, captureStdout: true });
    expect(r.stdout).toContain(`${9 * 1024 ** 3 + 5} 2023-11-14`);
    expect(r.stdout).toContain("dumps/huge.sql");
    expect(() => streamedHeader({ ...e, name: `dumps/${"x".repeat(120)}` }, 1)).toThrow("does not fit one block");
  }, 30_000);
});
