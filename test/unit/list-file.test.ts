/**
 * The stored file list (src/core/state/list-file.ts): gzip members of whole lines, read one at
 * a time; `gzip -dc` prints the plain list; plain lists of earlier versions still read; a list
 * cut short or damaged is an error that names the file, never lines made up or memory without
 * bound.
 */
import { afterEach, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { LIST_FORMAT, LIST_VERSION, openList } from "../../src/core/scan/scan.ts";
import { compressList, listChunks, listFirstLine, listLines, listMember, LIST_BLOCK } from "../../src/core/state/list-file.ts";
import { tempDir } from "../helpers/fixture.ts";
import { compressedList, readListText, writeListText } from "../helpers/lists.ts";
import { requireTool } from "../helpers/tools.ts";

let root: string;
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const HEADER = JSON.stringify({ format: LIST_FORMAT, v: LIST_VERSION, archive: "a.tar.gz", entries: 3, bytes: 0 });

/** A list of `n` entry lines, some with multi-byte names, one longer than a whole block. */
function sampleLines(n: number): string[] {
  const lines = Array.from({ length: n }, (_, i) => `["d${i % 97}/f${i} ✓ ${"é".repeat(i % 40)}","file",33188,0,0,${i},${i * 7},${i * 9},${i},null]`);
  lines.splice(n >> 1, 0, `["long","symlink",41471,0,0,0,1,2,3,${JSON.stringify("x".repeat(LIST_BLOCK + 5000))}]`);
  return [HEADER, ...lines];
}

/** The list's text in pieces cut at odd places, as the server hands over a walk's list (bytes in 1 MiB reads). */
function* oddPieces(text: string): Generator<string | Uint8Array> {
  const bytes = Buffer.from(text);
  yield text.slice(0, HEADER.length + 1);
  for (let at = Buffer.byteLength(text.slice(0, HEADER.length + 1)), n = 1; at < bytes.length; at += n, n = (n * 7919) % 300_000 + 1) {
    yield bytes.subarray(at, at + n);
  }
}

function listFile(name = "a.tar.gz.list"): string {
  return path.join(root, name);
}

test("a list written in members reads back line for line, its header first and alone, each member whole lines", () => {
  root = tempDir();
  const lines = sampleLines(40_000);
  const text = `${lines.join("\n")}\n`;
  const file = listFile();
  fs.writeFileSync(file, Buffer.concat([...compressList(oddPieces(text))]));
  expect(fs.statSync(file).size).toBeLessThan(Buffer.byteLength(text) / 4);
  expect([...listLines(file)]).toEqual(lines);
  expect(listFirstLine(file)).toBe(HEADER);
  const pieces = [...listChunks(file)].map((c) => Buffer.from(c).toString("utf8"));
  expect(pieces.length).toBeGreaterThan(3);
  expect(pieces[0]).toBe(`${HEADER}\n`);
  for (const p of pieces) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(LIST_BLOCK);
  // the one line longer than a block is the one member that does not end a line
  expect(pieces.filter((p) => !p.endsWith("\n")).map((p) => [Buffer.byteLength(p), p.slice(0, 8)])).toEqual([[LIST_BLOCK, '["long",']]);
  expect(pieces.join("")).toBe(text);
  expect(openList(file).header.archive).toBe("a.tar.gz");
});

test("where members end depends on the lines alone: lists that differ in a few lines share their other members", () => {
  const lines = sampleLines(40_000);
  const next = [...lines];
  next[0] = next[0]!.replace('"entries":3', '"entries":4');
  next[1000] = next[1000]!.replace("null]", '"changed"]');
  next.splice(20_000, 1);
  next.splice(30_000, 0, '["new","file",33188,0,0,1,2,3,4,null]');
  const members = (text: string) => new Set([...compressList(oddPieces(text))].map((m) => Buffer.from(m).toString("base64")));
  const before = members(`${lines.join("\n")}\n`);
  const after = members(`${next.join("\n")}\n`);
  // a member about every 256 lines: what a changed line costs on the next pull stays small
  expect(before.size).toBeGreaterThan(40_000 / 256 - 40);
  expect(before.size).toBeLessThan(40_000 / 256 + 40);
  const shared = [...after].filter((m) => before.has(m)).length;
  // the header's member, and about one member for each of the three changes, differ
  expect(after.size - shared).toBeGreaterThanOrEqual(4);
  expect(after.size - shared).toBeLessThanOrEqual(8);
});

test("gzip -dc and zcat print the plain list of a compressed one", () => {
  root = tempDir();
  const text = `${sampleLines(20_000).join("\n")}\n`;
  const file = listFile();
  writeListText(file, text);
  for (const argv of [[requireTool("gzip"), "-dc", file], [requireTool("zcat"), file]]) {
    const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
    expect({ code: r.exitCode, stderr: r.stderr.toString() }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout.toString("utf8") === text).toBe(true);
  }
  expect(readListText(file) === text).toBe(true);
});

test("a plain list of an earlier version still reads, header and lines", () => {
  root = tempDir();
  const lines = sampleLines(5000);
  const file = listFile();
  writeListText(file, lines.join("\n"), true);
  expect([...listLines(file)]).toEqual(lines);
  expect(listFirstLine(file)).toBe(HEADER);
  expect(openList(file).header.entries).toBe(3);
  const copies: Buffer[] = [];
  for (const c of listChunks(file)) copies.push(Buffer.from(c)); // one buffer, reused: copied before the next
  expect(Buffer.concat(copies).toString("utf8") === lines.join("\n")).toBe(true);
  fs.writeFileSync(file, "");
  expect([...listLines(file)]).toEqual([]);
  expect(listFirstLine(file)).toBeUndefined();
});

/** The offsets at which the members of a compressed list start. */
function memberStarts(bytes: Buffer): number[] {
  const starts: number[] = [];
  for (let at = 0; at < bytes.length; at += bytes.readUInt32LE(at + 16)) starts.push(at);
  return starts;
}

test("a list cut short is an error naming the file and where, at any cut; its header still reads", () => {
  root = tempDir();
  const good = compressedList(`${sampleLines(30_000).join("\n")}\n`);
  const starts = memberStarts(good);
  expect(starts.length).toBeGreaterThan(3);
  const file = listFile();
  for (const cut of [starts[2]! + 5, starts[2]! + 100, good.length - 1, starts[1]! + 19]) {
    fs.writeFileSync(file, good.subarray(0, cut));
    expect(listFirstLine(file)).toBe(HEADER);
    expect(() => [...listLines(file)]).toThrow(`${file}: the compressed block at byte`);
    expect(() => [...listLines(file)]).toThrow("is cut short");
  }
});

test("a damaged member is an error naming the file: its data, its CRC-32, its length field, garbage after it", () => {
  root = tempDir();
  const good = compressedList(`${sampleLines(30_000).join("\n")}\n`);
  const second = memberStarts(good)[1]!;
  const file = listFile();
  const cases: Array<[string, (b: Buffer) => Buffer]> = [
    ["CRC-32", (b) => (b[b.readUInt32LE(second + 16) + second - 8]! ^= 1, b)],
    ["", (b) => (b[second + 200]! ^= 0x55, b)],
    ["impossible length", (b) => (b.writeUInt32LE(7, second + 16), b)],
    ["does not name its length", (b) => (b[second + 12] = 0x42, b)],
    ["is not gzip", (b) => Buffer.concat([b, Buffer.from("trailing garbage here\n")])],
  ];
  for (const [why, damage] of cases) {
    fs.writeFileSync(file, damage(Buffer.from(good)));
    expect(() => [...listLines(file)]).toThrow(`${file}: the compressed block at byte`);
    if (why) expect(() => [...listLines(file)]).toThrow(why);
  }
});

test("a member that would decompress to more than a block's bound is refused, not held", () => {
  root = tempDir();
  const file = listFile();
  const bomb = listMember(Buffer.alloc(64 << 20, 0x61));
  expect(bomb.length).toBeLessThan(1 << 20);
  fs.writeFileSync(file, Buffer.concat([compressedList(`${HEADER}\n`), bomb]));
  expect(() => [...listLines(file)]).toThrow(/says it holds 67108864 bytes/);
  // the same, lying in its trailer
  const liar = Buffer.from(bomb);
  liar.writeUInt32LE(100, liar.length - 4);
  fs.writeFileSync(file, Buffer.concat([compressedList(`${HEADER}\n`), liar]));
  expect(() => [...listLines(file)]).toThrow(/does not decompress/);
});

test("a list that cannot be opened keeps its errno code", () => {
  root = tempDir();
  const file = listFile("missing.list");
  expect(() => listFirstLine(file)).toThrow(expect.objectContaining({ code: "ENOENT" }));
  expect(() => [...listLines(file)]).toThrow(expect.objectContaining({ code: "ENOENT" }));
});
