import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { compileExcludes } from "../../src/core/scan/exclude.ts";
import { flushToDisk, LineWriter, readChunks, readLines } from "../../src/core/state/fsutil.ts";
import { devicesOfType, entryFromLine, entryLine, ListComparer, normaliseSources, scanSources, walkOrder, type ScanEntry } from "../../src/core/scan/scan.ts";
import { devNumber } from "../../src/core/scan/statx.ts";
import { tempDir } from "../helpers/fixture.ts";

let root: string | undefined;
afterEach(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
  root = undefined;
});

function walk(sources: string[]): ScanEntry[] {
  const seen: ScanEntry[] = [];
  scanSources(sources, { matcher: compileExcludes([]), skip: [] }, (e) => seen.push(e));
  return seen;
}

describe("walk order", () => {
  const cases: Array<[string, string, "<" | ">" | "="]> = [
    ["a", "a", "="],
    ["", "etc", "<"],
    ["a", "a/b", "<"],
    // a directory's contents come before a sibling whose name goes on with a character below "/"
    ["a/z", "a b", "<"],
    ["a/z", "a-b", "<"],
    ["a/z", "a0", "<"],
    ["a b", "a", ">"],
    ["B", "a", "<"],
    ["x/ä", "x/z", ">"],
    ["x/y/z", "x/y", ">"],
    ["srv/data", "etc/hosts", ">"],
  ];
  for (const [a, b, want] of cases) {
    test(`${JSON.stringify(a)} ${want} ${JSON.stringify(b)}`, () => {
      const got = walkOrder(a, b);
      expect(got < 0 ? "<" : got > 0 ? ">" : "=").toBe(want);
      const back = walkOrder(b, a);
      expect(back < 0 ? "<" : back > 0 ? ">" : "=").toBe(want === "<" ? ">" : want === ">" ? "<" : "=");
    });
  }

  test("the walk meets every name in walk order, across sources too", () => {
    root = tempDir();
    for (const d of ["a/inner/deep", "a b/x", "a-b", "a.b/y", "B", "ä/ö", "z", "a0"]) fs.mkdirSync(path.join(root, d), { recursive: true });
    for (const f of ["a/file", "a/inner/f", "a b/x/f", "B/f", "ä/ö/f", "z/f"]) fs.writeFileSync(path.join(root, f), f);
    const names = walk([root]).map((e) => e.name);
    expect(names.length).toBe(20); // the source, 13 directories, 6 files
    expect(names).toEqual([...names].sort(walkOrder));

    // "a b" sorts before "a/…" as a string, after it in the walk: sources follow the walk
    const sources = normaliseSources([path.join(root, "a b"), path.join(root, "a")]);
    expect(sources).toEqual([path.join(root, "a"), path.join(root, "a b")]);
    const both = walk(sources).map((e) => e.name);
    expect(both).toEqual([...both].sort(walkOrder));
  });
});

/** A file-list line for a name, with `v` standing for its metadata. */
const line = (name: string, v = 1, ctime = 0) => `[${JSON.stringify(name)},"file",420,0,0,1,${v},${ctime},${ctime + 1},null]`;

function compare(recorded: Array<[string, number?, number?]>, walked: Array<[string, number?, number?]>) {
  const c = new ListComparer(recorded.map(([n, v, t]) => line(n, v, t))[Symbol.iterator]());
  for (const [n, v, t] of walked) c.next(n, JSON.stringify(n), line(n, v, t));
  return c.finish();
}

describe("comparing a walk with the recorded list in one pass", () => {
  const tree: Array<[string, number?]> = [["srv"], ["srv/a"], ["srv/a/1"], ["srv/a/2"], ["srv/a b"], ["srv/b"], ["srv/b/x"], ["srv/c"]];
  const cases: Array<[string, Array<[string, number?]>, { added: number; changed: number; removed: number; places: number; examples: string[] }]> = [
    ["the same", tree, { added: 0, changed: 0, removed: 0, places: 0, examples: [] }],
    ["one changed", tree.map(([n]) => [n, n === "srv/a/2" ? 2 : 1]), { added: 0, changed: 1, removed: 0, places: 1, examples: ["changed /srv/a/2"] }],
    ["one new inside a subtree", [...tree.slice(0, 4), ["srv/a/3"], ...tree.slice(4)], { added: 1, changed: 0, removed: 0, places: 1, examples: ["new /srv/a/3"] }],
    ["one new first and one last", [["etc"], ...tree, ["srv/d"]], { added: 2, changed: 0, removed: 0, places: 2, examples: ["new /etc", "new /srv/d"] }],
    ["a directory deleted with what it held", tree.filter(([n]) => !n.startsWith("srv/a/") && n !== "srv/a"), { added: 0, changed: 0, removed: 3, places: 1, examples: ["deleted /srv/a", "deleted /srv/a/1", "deleted /srv/a/2"] }],
    ["a rename", tree.map(([n]) => [n === "srv/c" ? "srv/d" : n]), { added: 1, changed: 0, removed: 1, places: 1, examples: ["deleted /srv/c", "new /srv/d"] }],
    ["everything new", [["home"], ["home/ann"]], { added: 2, changed: 0, removed: 8, places: 1, examples: ["new /home", "new /home/ann", "deleted /srv", "deleted /srv/a", "deleted /srv/a/1", "deleted /srv/a/2", "deleted /srv/a b", "deleted /srv/b", "deleted /srv/b/x", "deleted /srv/c"] }],
  ];
  for (const [what, walked, want] of cases) {
    test(what, () => expect(compare(tree, walked)).toEqual(want));
  }

  test("names that need escaping are matched by their JSON key", () => {
    const odd = "srv/new\nline \"quoted\" \\ back";
    expect(compare([["srv"], [odd, 1]], [["srv"], [odd, 2]])).toEqual({ added: 0, changed: 1, removed: 0, places: 1, examples: [`changed /${odd}`] });
  });

  test("places: a change next to another is one place; a new ctime or inode alone is none", () => {
    const files: Array<[string, number?, number?]> = Array.from({ length: 10 }, (_, i) => [`srv/f${i}`, 1, 0]);
    const restamped = files.map(([n]): [string, number, number] => [n, 1, 5]);
    const r = compare(files, restamped);
    expect([r.changed, r.places]).toEqual([10, 0]);
    // f1, f2 and f3 changed together; f5 alone; f8 deleted and f9 changed after it
    const walked = files.filter(([n]) => n !== "srv/f8").map(([n]): [string, number, number] => [n, ["srv/f1", "srv/f2", "srv/f3", "srv/f5", "srv/f9"].includes(n) ? 2 : 1, n === "srv/f4" ? 7 : 0]);
    const mixed = compare(files, walked);
    expect([mixed.changed, mixed.removed, mixed.places]).toEqual([6, 1, 3]);
  });

  test("no more than ten examples are kept", () => {
    const many: Array<[string, number?]> = Array.from({ length: 30 }, (_, i) => [`f${String(i).padStart(2, "0")}`]);
    const r = compare([], many);
    expect(r.added).toBe(30);
    expect(r.examples).toHaveLength(10);
  });

  test("a recorded line that is not an entry stops the comparison with an error that quotes it", () => {
    expect(() => compare([["srv"], ["x"]], []).removed).not.toThrow();
    const c = () => new ListComparer(["garbage here"][Symbol.iterator]());
    expect(c).toThrow(/not an entry: garbage here/);
  });
});

describe("lists on disk", () => {
  test("readLines gives every line across 1 MiB reads, multi-byte characters and a missing last newline", () => {
    root = tempDir();
    const lines = ["first", "é".repeat(700_000), "", "x".repeat(1_500_000), ...Array.from({ length: 5000 }, (_, i) => `line ${i} ✓ ${"é".repeat(i % 300)}`), "last without newline"];
    const file = path.join(root, "list");
    fs.writeFileSync(file, lines.join("\n"));
    expect([...readLines(file)]).toEqual(lines);
    // a read that ends inside a character, whatever its width: 2, 3 and 4 bytes, shifted
    for (const ch of ["é", "✓", "😀"]) {
      for (let shift = 0; shift < 4; shift++) {
        const odd = ["x".repeat(shift), ch.repeat(600_000), `${ch}end`, "y"];
        fs.writeFileSync(file, `${odd.join("\n")}\n`);
        expect([...readLines(file)].map((l) => l.length)).toEqual(odd.map((l) => l.length));
        expect([...readLines(file)]).toEqual(odd);
      }
    }
    fs.writeFileSync(file, lines.join("\n"));
    let bytes = 0;
    for (const c of readChunks(file)) bytes += c.length;
    expect(bytes).toBe(fs.statSync(file).size);
  });

  test("a list that cannot be written says which file, and keeps the errno code", () => {
    root = tempDir();
    const file = path.join(root, "list");
    fs.writeFileSync(file, "already here");
    let err: (Error & { code?: string }) | undefined;
    try {
      new LineWriter(file);
    } catch (e) {
      err = e as Error & { code?: string };
    }
    expect(err?.message).toStartWith(`writing ${file}: `);
    expect(err?.code).toBe("EEXIST");
    const w = new LineWriter(path.join(root, "fresh"));
    w.line("one");
    w.close();
    w.close(); // a second close does nothing
    expect(fs.readFileSync(path.join(root, "fresh"), "utf8")).toBe("one\n");
  });

  test("an entry read back from its list line is the entry the walk found", () => {
    root = tempDir();
    fs.mkdirSync(path.join(root, "d"));
    fs.writeFileSync(path.join(root, "d", "f"), "12345");
    fs.chmodSync(path.join(root, "d", "f"), 0o640);
    fs.symlinkSync("../elsewhere", path.join(root, "d", "l"));
    fs.linkSync(path.join(root, "d", "f"), path.join(root, "d", "h"));
    fs.utimesSync(path.join(root, "d", "f"), 1_600_000_000.123456, 1_600_000_000.123456);
    const entries = walk([root]);
    expect(entries.map((e) => e.type)).toEqual(["dir", "dir", "file", "hardlink", "symlink"]);
    for (const e of entries) {
      const back = entryFromLine(entryLine(e));
      expect(back).toMatchObject({ source: e.source, name: e.name, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, size: e.size, linkTarget: e.linkTarget });
      expect(back.mtimeNs).toBe(BigInt(Math.round(e.mtimeMs * 1000)) * 1000n);
    }
    expect(entryFromLine(entryLine(entries[2]!)).mtimeNs).toBe(1_600_000_000_123_456_000n);
  });
});

describe("devices of a file system type in a mount table", () => {
  // lines as /proc/self/mountinfo gives them: optional fields (shared:N) before the "-", a
  // mount point with an escaped space, a mount whose source is itself named devtmpfs
  const table = [
    "23 26 0:6 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=12334416k,mode=755",
    "24 23 0:22 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw",
    "26 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
    "70 26 0:6 / /srv/dev\\040copy ro,relatime - devtmpfs devtmpfs ro",
    "71 26 0:45 / /mnt/x rw - tmpfs devtmpfs rw",
    "72 26 259:300 / /mnt/big rw shared:9 master:4 - devtmpfs devtmpfs rw",
    "",
    "garbage",
  ].join("\n");
  const cases: Array<[string, number[]]> = [
    ["devtmpfs", [devNumber(0, 6), devNumber(259, 300)]],
    ["tmpfs", [devNumber(0, 22), devNumber(0, 45)]],
    ["ext4", [devNumber(254, 0)]],
    ["proc", []],
  ];
  for (const [type, devs] of cases) {
    test(type, () => {
      expect([...devicesOfType(table, type)].sort()).toEqual(devs.sort());
    });
  }

  test("st_dev of this machine's root is found under its file system's type", () => {
    const root = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[4] === "/")!;
    const type = root.split(" ")[root.split(" ").indexOf("-", 6) + 1]!;
    expect(devicesOfType(fs.readFileSync("/proc/self/mountinfo", "utf8"), type).has(fs.statSync("/").dev)).toBe(true);
  });
});

describe("flushToDisk", () => {
  test("resolves once the file is on disk, and with the error instead of rejecting", async () => {
    root = tempDir("flush-");
    const f = path.join(root, "archive.tar");
    fs.writeFileSync(f, Buffer.alloc(4 << 20, 1));
    expect(await flushToDisk(f)).toBeUndefined();
    const missing = await flushToDisk(path.join(root, "gone.tar"));
    expect((missing as NodeJS.ErrnoException).code).toBe("ENOENT");
  });
});
