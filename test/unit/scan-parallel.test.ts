import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { compileExcludes } from "../../src/core/scan/exclude.ts";
import { quickCompare } from "../../src/core/scan/scan-parallel.ts";
import { entryLine, LIST_FORMAT, LIST_VERSION, scanSources } from "../../src/core/scan/scan.ts";
import { tempDir } from "../helpers/fixture.ts";
import { compressedList, writeListText } from "../helpers/lists.ts";
import { requireTool } from "../helpers/tools.ts";

const T = 30_000;
let root: string;
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const EXCLUDES = ["*.tmp", "cache/"];

/** A tree with everything the file list distinguishes, spread over enough directories to give workers tasks. */
function makeTree(): { src: string; other: string; backup: string } {
  root = tempDir();
  const src = path.join(root, "src");
  const other = path.join(root, "other");
  const backup = path.join(src, "backup");
  for (let d = 0; d < 30; d++) {
    const dir = path.join(src, `d${String(d).padStart(2, "0")}`);
    fs.mkdirSync(path.join(dir, "sub", "deeper"), { recursive: true });
    for (let f = 0; f < 5; f++) fs.writeFileSync(path.join(dir, `f${f}.txt`), `file ${d}/${f}\n`.repeat(f + 1));
    fs.writeFileSync(path.join(dir, "sub", "deeper", "x"), "x");
  }
  // hard links whose first name lies in another subtree, and a third name in a third one
  fs.linkSync(path.join(src, "d03", "f1.txt"), path.join(src, "d17", "link-to-d03"));
  fs.linkSync(path.join(src, "d03", "f1.txt"), path.join(src, "d29", "sub", "also-d03"));
  fs.symlinkSync("../d00/f0.txt", path.join(src, "d01", "sym"));
  fs.writeFileSync(path.join(src, "d02", "name with spaces, ünïcode\nand a newline"), "odd");
  fs.writeFileSync(path.join(src, "d04", "scratch.tmp"), "excluded");
  fs.mkdirSync(path.join(src, "d05", "cache"));
  fs.writeFileSync(path.join(src, "d05", "cache", "big"), "excluded too");
  fs.mkdirSync(path.join(src, "empty"));
  fs.mkdirSync(backup);
  fs.writeFileSync(path.join(backup, "old.tar.gz"), "skipped: the backup directory is never walked");
  requireTool("mkfifo");
  expect(Bun.spawnSync(["mkfifo", path.join(src, "d06", "pipe")]).exitCode).toBe(0);
  fs.mkdirSync(other);
  fs.writeFileSync(path.join(other, "second-source"), "2");
  return { src, other, backup };
}

function recordedList(sources: string[], backup: string): { text: string; entries: number; bytes: number } {
  const lines: string[] = [];
  const scan = scanSources(sources, { matcher: compileExcludes(EXCLUDES), skip: [backup] }, (e) => lines.push(`${entryLine(e)}\n`));
  const header = { format: LIST_FORMAT, v: LIST_VERSION, archive: "a.tar.gz", entries: scan.entries, bytes: scan.bytes, size: 1, md5: "0", sha256: "0" };
  return { text: `${JSON.stringify(header)}\n${lines.join("")}`, entries: scan.entries, bytes: scan.bytes };
}

/** Compare with a list of `text`, written compressed as the server writes it, or plain as earlier versions did. */
function check(sources: string[], backup: string, text: string, threads: number, plain = false) {
  const file = path.join(root, "a.tar.gz.list");
  writeListText(file, text, plain);
  return quickCompare(sources, { excludes: EXCLUDES, skip: [backup] }, file, threads);
}

describe("the unchanged check on every core", () => {
  test("an unchanged tree gives exactly the recorded lines, whatever the number of threads", async () => {
    const { src, other, backup } = makeTree();
    const list = recordedList([src, other], backup);
    for (const [threads, plain] of [[1, false], [2, false], [3, true], [4, false], [4, true]] as const) {
      const r = await check([src, other], backup, list.text, threads, plain);
      expect({ threads, same: r.same, entries: r.entries, bytes: r.bytes, failure: r.failure }).toEqual({ threads, same: true, entries: list.entries, bytes: list.bytes, failure: undefined });
      expect(r.threads).toBe(threads);
      expect(r.warnings.map((w) => w.code)).toEqual(["SPECIAL_SKIPPED"]);
    }
  }, T);

  const changes: Array<[string, (src: string) => void]> = [
    ["content", (s) => fs.appendFileSync(path.join(s, "d12", "f2.txt"), "more")],
    ["same size, mtime set back", (s) => {
      const p = path.join(s, "d20", "f3.txt");
      const st = fs.statSync(p);
      fs.writeFileSync(p, fs.readFileSync(p, "utf8").toUpperCase());
      fs.utimesSync(p, st.atime, st.mtime);
    }],
    ["new file deep down", (s) => fs.writeFileSync(path.join(s, "d29", "sub", "deeper", "new"), "")],
    ["deleted file", (s) => fs.rmSync(path.join(s, "d00", "f4.txt"))],
    ["mode", (s) => fs.chmodSync(path.join(s, "d08", "f0.txt"), 0o600)],
    ["symlink target", (s) => {
      fs.rmSync(path.join(s, "d01", "sym"));
      fs.symlinkSync("../d00/f1.txt", path.join(s, "d01", "sym"));
    }],
    ["one name of a hard link removed", (s) => fs.rmSync(path.join(s, "d17", "link-to-d03"))],
    ["first name of a hard link removed", (s) => fs.rmSync(path.join(s, "d03", "f1.txt"))],
    ["excluded directory no longer excluded by name", (s) => fs.renameSync(path.join(s, "d05", "cache"), path.join(s, "d05", "kept"))],
    ["last entry of the walk", (s) => fs.writeFileSync(path.join(s, "empty", "z"), "")],
  ];
  for (const [what, change] of changes) {
    test(`notices: ${what}`, async () => {
      const { src, other, backup } = makeTree();
      const list = recordedList([src, other], backup);
      change(src);
      for (const threads of [1, 3]) expect({ threads, same: (await check([src, other], backup, list.text, threads)).same }).toEqual({ threads, same: false });
    }, T);
  }

  test("a change in what is excluded or skipped is not a change", async () => {
    const { src, other, backup } = makeTree();
    const list = recordedList([src, other], backup);
    fs.writeFileSync(path.join(src, "d04", "scratch.tmp"), "rewritten");
    fs.writeFileSync(path.join(src, "d05", "cache", "more"), "new");
    fs.writeFileSync(path.join(backup, "new.tar.gz"), "a new archive");
    expect((await check([src, other], backup, list.text, 2)).same).toBe(true);
  }, T);

  test("a list of several MiB, read in pieces, is compared to its last byte", async () => {
    root = tempDir();
    const src = path.join(root, "src");
    // long names make a list of ~3 MiB out of 12k files, several refills of the 1 MiB buffer
    const long = "n".repeat(180);
    for (let d = 0; d < 40; d++) {
      fs.mkdirSync(path.join(src, `d${d}`), { recursive: true });
      for (let f = 0; f < 300; f++) fs.writeFileSync(path.join(src, `d${d}`, `${long}-${f}`), "");
    }
    const list = recordedList([src], path.join(root, "backup"));
    expect(list.text.length).toBeGreaterThan(3 << 20);
    expect((await check([src], path.join(root, "backup"), list.text, 2)).same).toBe(true);
    expect((await check([src], path.join(root, "backup"), list.text, 2, true)).same).toBe(true);
    fs.writeFileSync(path.join(src, "d39", `${long}-299`), "x");
    expect((await check([src], path.join(root, "backup"), list.text, 2)).same).toBe(false);
    expect((await check([src], path.join(root, "backup"), `${list.text}[]\n`, 2)).same).toBe(false);
  }, T);

  test("a list of another format or a truncated list is never the same", async () => {
    const { src, other, backup } = makeTree();
    const list = recordedList([src, other], backup);
    const lines = list.text.split("\n");
    const truncated = lines.slice(0, -3).join("\n") + "\n";
    const otherVersion = list.text.replace('"v":1', '"v":2');
    for (const text of [truncated, otherVersion, "", "not json\n"]) expect((await check([src, other], backup, text, 2)).same).toBe(false);
  }, T);

  test("a compressed list damaged after its header is an error for the caller that names the file", async () => {
    const { src, other, backup } = makeTree();
    const bytes = compressedList(recordedList([src, other], backup).text);
    const entries = bytes.readUInt32LE(16); // where the member after the header starts
    bytes[entries + 40]! ^= 0xff;
    const file = path.join(root, "a.tar.gz.list");
    fs.writeFileSync(file, bytes);
    const r = quickCompare([src, other], { excludes: EXCLUDES, skip: [backup] }, file, 2);
    await expect(r).rejects.toThrow(`${file}: the compressed block at byte ${entries}`);
  }, T);

  test("a walk that gets further ahead of its comparison than it may hold gives up and says so", async () => {
    const { src, other, backup } = makeTree();
    const list = recordedList([src, other], backup);
    const file = path.join(root, "a.tar.gz.list");
    fs.writeFileSync(file, list.text);
    const r = await quickCompare([src, other], { excludes: EXCLUDES, skip: [backup] }, file, 2, 0);
    expect({ same: r.same, ahead: r.ahead, failure: r.failure }).toEqual({ same: false, ahead: true, failure: undefined });
    expect((await quickCompare([src, other], { excludes: EXCLUDES, skip: [backup] }, file, 2, list.text.length)).same).toBe(true);
  }, T);

  test("a subtree of many thousand files streams to the comparison: what is held stays far below the list", async () => {
    root = tempDir();
    const src = path.join(root, "src");
    // enough directories to be tasks of their own (none opened further), one of them a task
    // far longer than a chunk
    for (let d = 0; d < 9; d++) {
      const dir = path.join(src, d === 4 ? "big" : `d${d}`);
      fs.mkdirSync(dir, { recursive: true });
      for (let f = 0; f < (d === 4 ? 12_000 : 10); f++) fs.writeFileSync(path.join(dir, `file-with-a-longish-name-${f}`), "");
    }
    const list = recordedList([src], path.join(root, "backup"));
    const file = path.join(root, "a.tar.gz.list");
    writeListText(file, list.text);
    // a quarter of the list may wait: the big task must be compared while it is walked
    const hold = Math.floor(list.text.length / 4);
    const r = await quickCompare([src], { excludes: EXCLUDES, skip: [path.join(root, "backup")] }, file, 2, hold);
    expect({ same: r.same, ahead: r.ahead, entries: r.entries }).toEqual({ same: true, ahead: undefined, entries: list.entries });
    fs.writeFileSync(path.join(src, "big", "file-with-a-longish-name-6000"), "changed");
    expect((await quickCompare([src], { excludes: EXCLUDES, skip: [path.join(root, "backup")] }, file, 2, hold)).same).toBe(false);
  }, T);

  test("a directory of very many entries is not opened while planning: it is one task, streamed like the others", async () => {
    root = tempDir();
    const src = path.join(root, "src");
    // a few small directories, and one flat directory of thousands of files, which planning
    // would open for subtrees (there are too few tasks) and hold a line per file
    for (const d of ["a", "b", "flat"]) fs.mkdirSync(path.join(src, d), { recursive: true });
    for (const d of ["a", "b"]) fs.writeFileSync(path.join(src, d, "x"), "");
    for (let f = 0; f < 3000; f++) fs.writeFileSync(path.join(src, "flat", `a-file-with-a-longish-name-${f}`), "");
    expect(fs.statSync(path.join(src, "flat")).size).toBeGreaterThan(4096);
    const list = recordedList([src], path.join(root, "backup"));
    const file = path.join(root, "a.tar.gz.list");
    writeListText(file, list.text);
    // less may wait than the flat directory's lines, more than a chunk of them
    const hold = 128 << 10;
    expect(list.text.length).toBeGreaterThan(2 * hold);
    const r = await quickCompare([src], { excludes: EXCLUDES, skip: [path.join(root, "backup")] }, file, 2, hold);
    expect({ same: r.same, ahead: r.ahead, entries: r.entries }).toEqual({ same: true, ahead: undefined, entries: list.entries });
  }, T);

  test("a list that cannot be read is an error for the caller, and no thread is left running", async () => {
    const { src, other, backup } = makeTree();
    const failing = quickCompare([src, other], { excludes: EXCLUDES, skip: [backup] }, path.join(root, "missing.list"), 3);
    await expect(failing).rejects.toThrow(/ENOENT|no such file/);
  }, T);
});
