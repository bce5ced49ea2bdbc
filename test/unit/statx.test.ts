import { afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { compileExcludes } from "../../src/core/scan/exclude.ts";
import { scanSources, TreeWalker, type LineSink, type ScanEntry } from "../../src/core/scan/scan.ts";
import { devNumber, openStatx, type StatFields } from "../../src/core/scan/statx.ts";
import { tempDir } from "../helpers/fixture.ts";

let root: string | undefined;
afterEach(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
  root = undefined;
});

const FIELDS: ReadonlyArray<keyof StatFields> = ["mode", "uid", "gid", "size", "nlink", "dev", "ino", "mtimeMs", "ctimeMs"];

/** Set a path's mtime to the nanosecond (touch takes what fs.utimesSync rounds away). */
function touchNs(p: string, sec: number, ns: number): void {
  const r = spawnSync("touch", ["-h", "-d", `@${sec}.${String(ns).padStart(9, "0")}`, p]);
  if (r.status !== 0) throw new Error(`touch failed: ${r.stderr}`);
}

/** A tree with every kind of entry the walk meets, and mtimes with every kind of fraction. */
function variedTree(): string {
  root = tempDir("statx-");
  const t = path.join(root, "tree");
  fs.mkdirSync(path.join(t, "sub dir", "deeper"), { recursive: true });
  fs.mkdirSync(path.join(t, "empty"));
  fs.writeFileSync(path.join(t, "plain.txt"), "hello\n");
  fs.writeFileSync(path.join(t, "sub dir", "ünïcødé ✓.txt"), "x");
  fs.writeFileSync(path.join(t, "sub dir", "new\nline"), "y");
  fs.writeFileSync(path.join(t, "sub dir", "deeper", "z"), "z".repeat(5000));
  fs.chmodSync(path.join(t, "plain.txt"), 0o4751);
  fs.symlinkSync("plain.txt", path.join(t, "link"));
  fs.symlinkSync("nowhere", path.join(t, "dangling"));
  fs.linkSync(path.join(t, "plain.txt"), path.join(t, "sub dir", "hard"));
  spawnSync("mkfifo", [path.join(t, "fifo")]);
  // over 4 GiB: the size's upper 32 bits count
  const big = fs.openSync(path.join(t, "sparse"), "w");
  fs.ftruncateSync(big, 5 * 2 ** 30 + 12345);
  fs.closeSync(big);
  const fractions = [0, 1, 499, 500, 999, 999_999, 123_456_789, 500_000_000, 999_999_999];
  fs.mkdirSync(path.join(t, "times"));
  fractions.forEach((ns, i) => {
    const f = path.join(t, "times", `f${i}`);
    fs.writeFileSync(f, String(i));
    touchNs(f, 1_700_000_000 + i * 7919, ns);
  });
  touchNs(path.join(t, "times"), 86_400 * 365 * 80, 999_999_999); // 2050
  touchNs(path.join(t, "empty"), 1, 1); // 1970
  return t;
}

describe("statx", () => {
  test("loads on this Linux machine: the unchanged check's fast path is the one under test", () => {
    expect(process.platform).toBe("linux");
    expect(openStatx()).toBeDefined();
  });

  test("gives exactly what fs.lstatSync gives, field by field, for every kind of entry", () => {
    const t = variedTree();
    const statter = openStatx()!;
    let compared = 0;
    const check = (dir: string): void => {
      const names = fs.readdirSync(dir).sort();
      const got = statter.statNames(dir, names);
      expect(got).toBeDefined();
      names.forEach((n, i) => {
        const want = fs.lstatSync(path.join(dir, n));
        const mine = got![i];
        expect(mine, n).toBeDefined();
        for (const f of FIELDS) expect([n, f, mine![f]]).toEqual([n, f, want[f]]);
        compared++;
        if (want.isDirectory()) check(path.join(dir, n));
      });
    };
    check(t);
    expect(compared).toBe(22);
  });

  test("a name that is gone, and a directory that cannot be opened, are left to lstat", () => {
    const t = variedTree();
    const statter = openStatx()!;
    const got = statter.statNames(t, ["plain.txt", "no such file", "link"]);
    expect(got?.map((s) => s !== undefined)).toEqual([true, false, true]);
    // a symbolic link to a directory is not followed; neither is a missing directory opened
    fs.symlinkSync("sub dir", path.join(t, "dirlink"));
    expect(statter.statNames(path.join(t, "dirlink"), ["deeper"])).toBeUndefined();
    expect(statter.statNames(path.join(t, "missing"), ["x"])).toBeUndefined();
    expect(statter.statNames(path.join(t, "plain.txt"), ["x"])).toBeUndefined();
  });
});

describe("devNumber is the C library's makedev", () => {
  const cases: Array<[number, number, number]> = [
    [0, 0, 0],
    [8, 1, 0x801],
    [259, 3, 0x10303],
    [0, 0x100, 0x100000],
    [1, 0x12345, 0x12300145],
    [0xfff, 0xff, 0xfffff],
    [0x1000, 0, 2 ** 44],
    [0x12345, 0x6789a, 0x12 * 2 ** 44 + 0x678 * 2 ** 20 + 0x345 * 0x100 + 0x9a],
  ];
  for (const [major, minor, want] of cases) test(`${major}:${minor}`, () => expect(devNumber(major, minor)).toBe(want));

  test("matches st_dev of the file systems this machine has", () => {
    const seen = new Set<number>();
    for (const dir of ["/", "/tmp", "/proc", "/dev", "/dev/shm", "/sys", "/run"]) {
      if (!fs.existsSync(dir)) continue;
      const names = fs.readdirSync(dir).slice(0, 3);
      const got = openStatx()!.statNames(dir, names)!;
      names.forEach((n, i) => {
        const want = fs.lstatSync(path.join(dir, n)).dev;
        if (got[i]) expect(got[i]!.dev).toBe(want);
        seen.add(want);
      });
    }
    expect(seen.size).toBeGreaterThan(2);
  });
});

/** Every line a walk gives, in order, linked files as both of their lines. */
function walkLines(walker: TreeWalker, dir: string): string[] {
  const out: string[] = [];
  const sink: LineSink = {
    line: (l) => out.push(l),
    linked: (key, name, _bytes, first, later) => out.push(`${key} ${name} ${first} ${later}`),
  };
  walker.lines(dir, JSON.stringify(dir.replace(/^\/+/, "")), sink, fs.lstatSync(dir).dev);
  return out;
}

test("the unchanged check's lines are the same with statx as with lstat", () => {
  const t = variedTree();
  const plain = new TreeWalker(compileExcludes([]), []);
  const fast = new TreeWalker(compileExcludes([]), [], undefined, undefined, openStatx());
  const want = walkLines(plain, t);
  expect(want.length).toBe(21); // the FIFO is skipped
  expect(walkLines(fast, t)).toEqual(want);
  expect(fast.warnings).toEqual(plain.warnings);
  expect(fast.warnings.map((w) => w.code)).toEqual(["SPECIAL_SKIPPED"]);
});

test("a directory of more names than one batch of lookups: the same lines, in order", () => {
  root = tempDir("statx-");
  const big = path.join(root, "big");
  fs.mkdirSync(big);
  // 2,500 names: past two batch boundaries, with a subdirectory walked between them
  for (let i = 0; i < 2500; i++) fs.writeFileSync(path.join(big, `f${String(i).padStart(4, "0")}`), String(i));
  fs.mkdirSync(path.join(big, "f1500.d"));
  fs.writeFileSync(path.join(big, "f1500.d", "inner"), "x");
  const plain = walkLines(new TreeWalker(compileExcludes([]), []), big);
  expect(plain.length).toBe(2502);
  expect(walkLines(new TreeWalker(compileExcludes([]), [], undefined, undefined, openStatx()), big)).toEqual(plain);
  // looked up out of order too (the walker asks in order, but the answer must not depend on it)
  const names = fs.readdirSync(big).sort();
  expect(names.length).toBe(2501);
  const statOf = openStatx()!.children(big, names);
  for (const i of [2500, 0, 1023, 1024, 2047, 2048, 5]) expect(statOf(i)!.ino).toBe(fs.lstatSync(path.join(big, names[i]!)).ino);
});

test("the archive's walk (scanSources) records what lstat says of every entry", () => {
  const t = variedTree();
  const seen: ScanEntry[] = [];
  scanSources([t], { matcher: compileExcludes([]), skip: [] }, (e) => seen.push(e));
  expect(seen.length).toBe(22); // the tree itself and every entry but the FIFO
  for (const e of seen) {
    const st = fs.lstatSync(e.source);
    const size = e.type === "file" ? st.size : 0;
    expect([e.name, e.mode, e.uid, e.gid, e.size, e.mtimeMs, e.ctimeMs, e.ino]).toEqual([e.name, st.mode & 0o7777, st.uid, st.gid, size, st.mtimeMs, st.ctimeMs, st.ino]);
  }
  expect(seen.filter((e) => e.type === "hardlink").map((e) => e.linkTarget)).toEqual([path.join(t, "plain.txt").slice(1)]);
});
