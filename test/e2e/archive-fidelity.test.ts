/**
 * The archive writer against real GNU tar, gzip, zstd and rsync: everything that goes in comes
 * back out exactly, the output is deterministic, and a small change stays a small change.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeArchive, type ArchiveEntry, type ArchiveOptions, type ArchiveResult, type ArchiveWarning } from "../../src/core/archive/writer.ts";
import { readEntries } from "../../src/core/restore/read.ts";
import type { TarListing } from "../../src/core/archive/tar.ts";
import type { Compression } from "../../src/core/common/config.ts";
import { spawner, describeResult } from "../../src/io/process.ts";
import { requireTool } from "../helpers/tools.ts";
import { walkTree } from "../../bench/walk.ts";
import { makeRng, randomBytes, textLike } from "../../bench/gen.ts";

const TAR = requireTool("tar");
const GZIP = requireTool("gzip");
const ZSTD = requireTool("zstd");
const RSYNC = requireTool("rsync");
const SETPRIV = requireTool("setpriv");

const COMPRESSIONS: Compression[] = ["gzip", "zstd", "none"];
const LEVEL: Record<Compression, number> = { gzip: 6, zstd: 3, none: 0 };
const TAR_FLAG: Record<Compression, string[]> = { gzip: ["-z"], zstd: ["--zstd"], none: [] };

let base: string;
let src: string;

async function run(argv: string[], timeoutMs = 60_000): Promise<string> {
  const r = await spawner.run(argv, { timeoutMs, captureStdout: true });
  if (r.exitCode !== 0) throw new Error(describeResult(r));
  return r.stdout;
}

/** Every entry of an archive as shoot's reader gives it, with its mtime in ms (fraction kept). */
async function listArchive(file: string): Promise<Array<TarListing & { mtime: number }>> {
  const out: Array<TarListing & { mtime: number }> = [];
  await readEntries(file, (batch) => {
    for (const t of batch) out.push({ ...t, mtime: Number(t.mtimeNs / 1_000_000n) + Number(t.mtimeNs % 1_000_000n) / 1e6 });
  });
  return out;
}

async function archive(
  entries: Iterable<ArchiveEntry> | AsyncIterable<ArchiveEntry>,
  file: string,
  compression: Compression,
  extra: Partial<ArchiveOptions> = {},
): Promise<{ result: ArchiveResult; warnings: ArchiveWarning[] }> {
  const warnings: ArchiveWarning[] = [];
  const fd = fs.openSync(file, "w+");
  try {
    const result = await writeArchive(entries, fd, { compression, level: LEVEL[compression] || 1, onWarning: (w) => warnings.push(w), ...extra });
    return { result, warnings };
  } finally {
    fs.closeSync(fd);
  }
}

async function extract(file: string, compression: Compression, dest: string): Promise<void> {
  fs.mkdirSync(dest, { recursive: true });
  await run([TAR, "-x", "-p", "--numeric-owner", ...TAR_FLAG[compression], "-f", file, "-C", dest]);
}

interface Seen {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  sha?: string;
  link?: string;
  ino: bigint;
}

/** Everything tar should restore, per path relative to `root`. */
function snapshot(root: string): Map<string, Seen> {
  const out = new Map<string, Seen>();
  const visit = (p: string, rel: string) => {
    const st = fs.lstatSync(p, { bigint: true });
    const type = st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other";
    out.set(rel, {
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === "file" ? Number(st.size) : 0,
      mtimeNs: st.mtimeNs,
      sha: type === "file" ? crypto.createHash("sha256").update(fs.readFileSync(p)).digest("hex") : undefined,
      link: type === "symlink" ? fs.readlinkSync(p) : undefined,
      ino: st.ino,
    });
    if (type === "dir") for (const n of fs.readdirSync(p)) visit(path.join(p, n), rel ? `${rel}/${n}` : n);
  };
  visit(root, "");
  return out;
}

function expectSameTree(original: string, restored: string): void {
  const a = snapshot(original);
  const b = snapshot(restored);
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [rel, want] of a) {
    const got = b.get(rel)!;
    const { ino: _a, ...w } = want;
    const { ino: _b, ...g } = got;
    expect({ rel, ...g }).toEqual({ rel, ...w });
  }
  // hard links: names sharing an inode in the original share one after extraction
  for (const [x, wx] of a) {
    for (const [y, wy] of a) {
      if (x < y && wx.type === "file") expect(b.get(x)!.ino === b.get(y)!.ino).toBe(wx.ino === wy.ino);
    }
  }
}

function setTime(p: string, seconds: number): void {
  // bun takes a negative number of seconds as "now"; a Date before 1970 works
  const t = seconds < 0 ? new Date(seconds * 1000) : seconds;
  fs.lutimesSync(p, t, t);
}

function buildTree(root: string): void {
  const rng = makeRng(7);
  fs.mkdirSync(root, { recursive: true });
  const file = (rel: string, data: Uint8Array | string, mode = 0o644) => {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
    fs.chmodSync(p, mode);
    return p;
  };
  file("plain.txt", "hello\n");
  file("empty-file", "");
  file("setuid", "#!/bin/sh\n", 0o4755);
  file("setgid", "x", 0o2750);
  file("no-perms", "secret", 0o000);
  file("private", "mine", 0o600);
  file("text.log", textLike(rng, 700_000));
  file("random.bin", randomBytes(rng, 1_500_000));
  file("exact-block", new Uint8Array(1024).fill(0x41));
  file("name with spaces.txt", "spaces");
  file("unicodé 日本.txt", "unicode");
  file("new\nline", "newline in the name");
  file("tab\tname", "tab");
  const deep = ["d".repeat(60), "e".repeat(60), "f".repeat(60), "g".repeat(60), "h".repeat(60)].join("/");
  file(`${deep}/${"n".repeat(120)}`, "deep and long");
  file(`${"p".repeat(150)}/${"q".repeat(90)}`, "ustar prefix split");
  fs.mkdirSync(path.join(root, "empty-dir"));
  fs.mkdirSync(path.join(root, "sticky"));
  fs.chmodSync(path.join(root, "sticky"), 0o1777);
  fs.symlinkSync("plain.txt", path.join(root, "link"));
  fs.symlinkSync("nowhere/at/all", path.join(root, "dangling"));
  fs.symlinkSync("../".repeat(40) + "long-target", path.join(root, "long-link"));
  fs.symlinkSync("ünïcode target", path.join(root, "unicode-link"));
  file("hard1", "shared inode");
  fs.linkSync(path.join(root, "hard1"), path.join(root, "sticky/hard2"));
  fs.linkSync(path.join(root, "hard1"), path.join(root, "hard3"));

  // owners other than root, one of them beyond what the octal header field holds
  fs.chownSync(path.join(root, "plain.txt"), 1234, 5678);
  fs.chownSync(path.join(root, "empty-dir"), 4321, 8765);
  fs.chownSync(path.join(root, "private"), 3_000_000, 3_000_001);
  fs.lchownSync(path.join(root, "link"), 1111, 2222);

  // mtimes: fractions, whole seconds, before 1970; directories last, after their contents
  setTime(path.join(root, "plain.txt"), 1_600_000_000.123456);
  setTime(path.join(root, "text.log"), 1_600_000_001);
  setTime(path.join(root, "setuid"), -86_400.5);
  setTime(path.join(root, "link"), 1_500_000_000.25);
  setTime(path.join(root, "empty-dir"), 1_400_000_000.75);
  setTime(path.join(root, "sticky"), 1_400_000_001);
}

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-archive-"));
  fs.chmodSync(base, 0o755);
  src = path.join(base, "src");
  buildTree(src);
});

afterAll(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

describe("GNU tar restores everything", () => {
  for (const compression of COMPRESSIONS) {
    test(`${compression}: contents, modes, owners, mtimes, links, odd names`, async () => {
      const file = path.join(base, `round.${compression}`);
      const { result, warnings } = await archive(walkTree(src), file, compression);
      expect(warnings).toEqual([]);
      expect(result.skipped).toEqual([]);
      expect(result.size).toBe(fs.statSync(file).size);
      const bytes = fs.readFileSync(file);
      expect(result.md5).toBe(crypto.createHash("md5").update(bytes).digest("hex"));
      expect(result.sha256).toBe(crypto.createHash("sha256").update(bytes).digest("hex"));
      if (compression === "gzip") await run([GZIP, "-t", file]);
      if (compression === "zstd") await run([ZSTD, "-q", "-t", file]);
      if (compression === "none") expect(result.size % 10240).toBe(0);
      const dest = path.join(base, `out-${compression}`);
      await extract(file, compression, dest);
      expectSameTree(src, path.join(dest, src));

      const listed = await listArchive(file);
      expect(listed.length).toBe(result.entries);
      const byName = new Map(listed.map((e) => [e.name, e]));
      const rel = src.slice(1);
      expect(byName.get(`${rel}/private`)).toMatchObject({ type: "file", uid: 3_000_000, gid: 3_000_001, mode: 0o600, size: 4 });
      expect(byName.get(`${rel}/sticky/hard2`)).toMatchObject({ type: "hardlink", linkTarget: `${rel}/hard1` });
      expect(byName.get(`${rel}/dangling`)).toMatchObject({ type: "symlink", linkTarget: "nowhere/at/all" });
      expect(byName.get(`${rel}/empty-dir`)).toMatchObject({ type: "dir", mode: 0o755, mtime: 1_400_000_000_750 });
    }, 60_000);
  }

  test("zstd through the system's libzstd and through Bun's own zstd: the same tar stream, both restored by GNU tar", async () => {
    const viaLib = path.join(base, "engine-lib.tar.zst");
    const viaBun = path.join(base, "engine-bun.tar.zst");
    const lib = await archive(walkTree(src), viaLib, "zstd");
    const own = await archive(walkTree(src), viaBun, "zstd", { systemZstd: false });
    expect(lib.result.engine).toMatch(/^libzstd 1\.\d+\.\d+$/);
    expect(own.result.engine).toBe("Bun's zstd");
    const tarOf = async (file: string) => Bun.spawnSync([ZSTD, "-q", "-dc", file], { stdout: "pipe" }).stdout;
    const [a, b] = [await tarOf(viaLib), await tarOf(viaBun)];
    expect(a.length).toBe(lib.result.inputBytes);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const dest = path.join(base, "out-engine-bun");
    await extract(viaBun, "zstd", dest);
    expectSameTree(src, path.join(dest, src));
  }, 60_000);

  test("listing a truncated archive fails instead of listing part of it", async () => {
    const file = path.join(base, "truncated.tar.zst");
    await archive(walkTree(src), file, "zstd");
    const whole = fs.readFileSync(file);
    for (const keep of [whole.length - 50, Math.floor(whole.length / 2)]) {
      fs.writeFileSync(file, whole.subarray(0, keep));
      await expect(listArchive(file)).rejects.toThrow();
    }
  }, 30_000);

  test("tar -tv shows the names and sizes we wrote", async () => {
    const file = path.join(base, "listing.tar");
    await archive(walkTree(src), file, "none");
    const out = await run([TAR, "-tv", "--numeric-owner", "-f", file]);
    expect(out).toContain("3000000/3000001");
    expect(out).toMatch(/-rwsr-xr-x 0\/0\s+10 1969-12-3/);
    expect(out).toContain(`${src.slice(1)}/link -> plain.txt`);
    expect(out).toContain(`${src.slice(1)}/sticky/hard2 link to ${src.slice(1)}/hard1`);
  }, 30_000);
});

describe("determinism and locality", () => {
  for (const compression of COMPRESSIONS) {
    test(`${compression}: the same tree gives identical bytes`, async () => {
      const a = path.join(base, `det-a.${compression}`);
      const b = path.join(base, `det-b.${compression}`);
      const ra = await archive(walkTree(src), a, compression);
      // written to disk as it goes (as the server does): the same bytes
      const rb = await archive(walkTree(src), b, compression, { flushBehind: true });
      expect(rb.result.md5).toBe(ra.result.md5);
      expect(fs.readFileSync(a).equals(fs.readFileSync(b))).toBe(true);
    }, 60_000);
  }

  test("an archive written to disk as it goes (several 8 MiB flushes) has the same bytes", async () => {
    const tree = path.join(base, "flush-behind");
    const rng = makeRng(5);
    for (let i = 0; i < 6; i++) {
      fs.mkdirSync(tree, { recursive: true });
      fs.writeFileSync(path.join(tree, `r${i}.bin`), randomBytes(rng, 5 << 20));
    }
    const a = path.join(base, "flush-a.tar.zst");
    const b = path.join(base, "flush-b.tar.zst");
    const ra = await archive(walkTree(tree), a, "zstd");
    const rb = await archive(walkTree(tree), b, "zstd", { flushBehind: true });
    expect(rb.result.size).toBeGreaterThan(3 * 8 * 1024 * 1024);
    expect(rb.result.sha256).toBe(ra.result.sha256);
    expect(fs.readFileSync(a).equals(fs.readFileSync(b))).toBe(true);
  }, 60_000);

  /** rsync's "Literal data" when updating `oldFile`'s bytes to `newFile` with the old as basis. */
  async function literalBytes(oldFile: string, newFile: string): Promise<number> {
    const dir = fs.mkdtempSync(path.join(base, "rsync-"));
    const target = path.join(dir, "archive");
    fs.copyFileSync(oldFile, target);
    const out = await run([RSYNC, "--no-whole-file", "--stats", "-I", newFile, target]);
    const m = /Literal data: ([\d,.]+)/.exec(out);
    if (!m) throw new Error(`no literal data in rsync output:\n${out}`);
    expect(fs.readFileSync(target).equals(fs.readFileSync(newFile))).toBe(true);
    return Number(m[1]!.replace(/[,.]/g, ""));
  }

  for (const compression of ["gzip", "zstd"] as const) {
    test(`${compression}: one changed file changes a small part of the archive`, async () => {
      const tree = path.join(base, `loc-${compression}`);
      const rng = makeRng(99);
      // big enough that one zstd piece (~320 KiB of tar) is a small part of the archive
      for (let i = 0; i < 1200; i++) {
        const p = path.join(tree, `d${i % 20}`, `f${i}.txt`);
        fs.mkdirSync(path.dirname(p), { recursive: true });
        fs.writeFileSync(p, textLike(rng, 2000 + (rng() % 30000)));
        setTime(p, 1_700_000_000 + i);
      }
      const day1 = path.join(base, `loc1.${compression}`);
      const day2 = path.join(base, `loc2.${compression}`);
      await archive(walkTree(tree), day1, compression);
      // one file in the middle grows by a line: every later tar offset shifts
      const changed = path.join(tree, "d10", "f610.txt");
      fs.appendFileSync(changed, "one more line of text\n");
      setTime(changed, 1_700_100_000);
      const { result } = await archive(walkTree(tree), day2, compression);
      const literal = await literalBytes(day1, day2);
      const share = literal / result.size;
      console.log(`${compression}: archive ${result.size} bytes, rsync literal ${literal} (${(share * 100).toFixed(2)} %)`);
      expect(result.size).toBeGreaterThan(5_000_000);
      expect(share).toBeLessThan(0.06);
    }, 60_000);
  }
});

describe("files that change under the writer", () => {
  test("vanished file: warning, left out, the rest restored", async () => {
    const tree = path.join(base, "vanish");
    fs.mkdirSync(tree);
    fs.writeFileSync(path.join(tree, "a"), "stays");
    fs.writeFileSync(path.join(tree, "b"), "goes");
    fs.writeFileSync(path.join(tree, "c"), "stays too");
    fs.linkSync(path.join(tree, "b"), path.join(tree, "b-link"));
    setTime(tree, 1_700_000_000);
    const entries = [...walkTree(tree)];
    fs.rmSync(path.join(tree, "b"));
    setTime(tree, 1_700_000_000); // as it was when scanned
    const file = path.join(base, "vanish.tgz");
    const { result, warnings } = await archive(entries, file, "gzip");
    expect(warnings.map((w) => [w.code, w.path])).toEqual([["FILE_VANISHED", path.join(tree, "b")]]);
    expect(result.skipped).toEqual([path.join(tree, "b").slice(1)]);
    const dest = path.join(base, "out-vanish");
    await extract(file, "gzip", dest);
    // the hard link whose first name vanished now carries the content itself
    expectSameTree(tree, path.join(dest, tree));
  }, 30_000);

  test("unreadable file (as an unprivileged user): warning, left out, the rest restored", async () => {
    const tree = path.join(base, "unreadable");
    fs.mkdirSync(tree);
    fs.writeFileSync(path.join(tree, "ok"), "readable");
    fs.writeFileSync(path.join(tree, "locked"), "not for you");
    fs.chmodSync(path.join(tree, "locked"), 0o000);
    const outDir = path.join(base, "nobody-out");
    fs.mkdirSync(outDir, { mode: 0o777 });
    fs.chmodSync(outDir, 0o777);
    const file = path.join(outDir, "a.tgz");
    const script = path.resolve(import.meta.dir, "../../bench/archive-one.ts");
    const r = await spawner.run(
      [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, script, "--src", tree, "--out", file],
      { timeoutMs: 30_000, captureStdout: true, env: { PATH: process.env.PATH, HOME: outDir, TMPDIR: outDir } },
    );
    if (r.exitCode !== 0) throw new Error(describeResult(r));
    const report = JSON.parse(r.stdout) as { warnings: ArchiveWarning[]; result: ArchiveResult };
    expect(report.warnings.map((w) => [w.code, w.path])).toEqual([["FILE_UNREADABLE", path.join(tree, "locked")]]);
    expect(report.result.skipped).toEqual([path.join(tree, "locked").slice(1)]);
    const dest = path.join(base, "out-unreadable");
    await extract(file, "gzip", dest);
    expect(fs.readFileSync(path.join(dest, tree, "ok"), "utf8")).toBe("readable");
    expect(fs.existsSync(path.join(dest, tree, "locked"))).toBe(false);
  }, 30_000);

  test("file that shrinks while read is zero-filled to its header size", async () => {
    // sysfs reports 4096 bytes for an attribute and then returns only a few
    const sys = "/sys/kernel/address_bits";
    const st = fs.statSync(sys);
    const content = fs.readFileSync(sys);
    expect(content.length).toBeLessThan(st.size);
    const name = path.join(base, "shrunk").slice(1);
    const entry: ArchiveEntry = { source: sys, name, type: "file", mode: 0o644, uid: 0, gid: 0, size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
    const file = path.join(base, "shrunk.tar");
    const { warnings } = await archive([entry], file, "none");
    expect(warnings.map((w) => w.code)).toEqual(["FILE_CHANGED"]);
    const out = await spawner.run([TAR, "-xOf", file, name], { timeoutMs: 10_000, captureStdout: true });
    const expected = Buffer.concat([content, Buffer.alloc(st.size - content.length)]);
    expect(out.stdout).toBe(expected.toString("utf8"));
  }, 30_000);

  test("file that grew since the scan is archived as found, with a warning", async () => {
    const tree = path.join(base, "grown");
    fs.mkdirSync(tree);
    fs.writeFileSync(path.join(tree, "log"), "first line\n");
    const entries = [...walkTree(tree)];
    fs.appendFileSync(path.join(tree, "log"), "second line\n");
    const file = path.join(base, "grown.tar");
    const { warnings } = await archive(entries, file, "none");
    expect(warnings.map((w) => w.code)).toEqual(["FILE_CHANGED"]);
    const out = await run([TAR, "-xOf", file, path.join(tree, "log").slice(1)]);
    expect(out).toBe("first line\nsecond line\n");
  }, 30_000);

  test("abort rejects promptly", async () => {
    const ac = new AbortController();
    ac.abort(new Error("stop now"));
    const file = path.join(base, "aborted.tgz");
    await expect(archive(walkTree(src), file, "gzip", { signal: ac.signal })).rejects.toThrow("stop now");
  }, 30_000);

  for (const [compression, flushBehind] of [["none", false], ["zstd", true]] as const) {
    test(`a write error rejects with the errno error (${compression}${flushBehind ? ", written to disk as it goes" : ""})`, async () => {
      const fd = fs.openSync("/dev/full", "w+");
      try {
        await expect(writeArchive(walkTree(src), fd, { compression, level: 1, flushBehind })).rejects.toMatchObject({ code: "ENOSPC" });
      } finally {
        fs.closeSync(fd);
      }
    }, 30_000);
  }
});

describe("files of 8 GiB and more", () => {
  test("a sparse 8 GiB + 16 byte file round-trips through GNU tar", async () => {
    const tree = path.join(base, "sparse");
    fs.mkdirSync(tree);
    const big = path.join(tree, "big");
    const size = 8 * 1024 ** 3 + 16;
    const tail = Buffer.from("END-OF-BIG-FILE!");
    fs.writeFileSync(big, "");
    fs.truncateSync(big, size - 16);
    fs.appendFileSync(big, tail);
    const file = path.join(base, "sparse.tar.zst");
    // zstd: GNU gzip needs well over a minute just to inflate 8 GiB of zeros again
    const { result } = await archive(walkTree(tree), file, "zstd");
    expect(result.size).toBeLessThan(20 * 1024 * 1024);
    // one pass of GNU tar over the archive: count what it extracts and keep the last bytes
    // (spawned directly: the spawn helper keeps text output, not 8 GiB of binary)
    const child = Bun.spawn([TAR, "--zstd", "-xOf", file, big.slice(1)], { stdout: "pipe", stderr: "inherit", stdin: "ignore", timeout: 170_000 });
    let count = 0;
    let last = Buffer.alloc(0);
    for await (const chunk of child.stdout) {
      count += chunk.length;
      last = Buffer.concat([last, Buffer.from(chunk)]).subarray(-16);
    }
    expect(await child.exited).toBe(0);
    expect(count).toBe(size);
    expect(last.equals(tail)).toBe(true);
    // 8 GiB through the writer and through GNU tar: about a minute on a busy two-core machine
  }, 180_000);
});
