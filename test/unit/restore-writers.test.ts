/**
 * The writer threads of a restore (src/core/restore/writers.ts, file-maker.ts, writer-batch.ts):
 * the steps of a batch read back as written; files made on real threads on the disk, across
 * directories and writers, with their content, mode and time; a file whose content ends early
 * removed; a name given twice made as the later entry; every directory descriptor closed by
 * the writer that used it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { tempDir } from "../helpers/fixture.ts";
import { openAt } from "../../src/core/restore/at.ts";
import { BatchWriter, readBatch, type BatchSteps, type FileToMake } from "../../src/core/restore/writer-batch.ts";
import { FileWriters } from "../../src/core/restore/writers.ts";

let dir: string;
beforeAll(() => {
  dir = tempDir("shoot-writers-");
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const file = (key: string, stored: number, more: Partial<FileToMake> = {}): FileToMake => ({
  dirFd: 7, key, mode: 0o640, uid: 1000, gid: 100, mtimeNs: 1_700_000_000_123_456_789n, size: stored, stored, ...more,
});

/** Every step read back, data joined per file as it comes. */
function stepsOf(buffers: Uint8Array[]): unknown[] {
  const out: unknown[] = [];
  const to: BatchSteps = {
    open: (f) => out.push({ open: f }),
    data: (b) => out.push({ data: Buffer.from(b).toString() }),
    abandon: () => out.push("abandon"),
    closeDir: (fd) => out.push({ closeDir: fd }),
  };
  for (const b of buffers) readBatch(b, to);
  return out;
}

test.each([
  ["a plain file", file("d/a", 5), "hello"],
  ["a key in several scripts", file("dir é/ファイル 🎉", 3), "abc"],
  ["a sparse file", file("s", 4, { size: 1 << 40, sparse: [{ offset: 0, length: 2 }, { offset: 2 ** 39, length: 2 }] }), "wxyz"],
  ["an empty file whose time is before 1970", file("e", 0, { mtimeNs: -1_500_000_000n }), ""],
])("batch steps read back as written: %s", (_what, f, content) => {
  const batch = new BatchWriter(new Uint8Array(4096));
  batch.open(f);
  if (content) batch.data(Buffer.from(content));
  batch.abandon();
  batch.closeDir(12);
  expect(batch.used).toBeLessThanOrEqual(BatchWriter.openBytes(f) + content.length + 5 + 1 + 5);
  const back = stepsOf([batch.buf.subarray(0, batch.used)]);
  expect(back).toEqual([{ open: f }, ...(content ? [{ data: content }] : []), "abandon", { closeDir: 12 }]);
});

test("content larger than the room left goes on in the next batch, as many pieces as it takes", () => {
  const sent: Uint8Array[] = [];
  const batch = new BatchWriter(new Uint8Array(64));
  const text = "0123456789".repeat(20);
  let at = 0;
  while (at < text.length) {
    if (batch.room < 6) {
      sent.push(batch.buf.slice(0, batch.used));
      batch.reset(new Uint8Array(64));
    }
    at += batch.data(Buffer.from(text.slice(at)));
  }
  sent.push(batch.buf.slice(0, batch.used));
  expect(sent.length).toBeGreaterThan(3);
  const back = stepsOf(sent) as { data: string }[];
  expect(back.map((s) => s.data).join("")).toBe(text);
});

test("a step the batch does not know is an error that names it", () => {
  expect(() => readBatch(new Uint8Array([9]), { open() {}, data() {}, abandon() {}, closeDir() {} })).toThrow(/unknown step 9 at byte 0/);
});

/** Descriptors this process has open. */
const openFds = () => fs.readdirSync("/proc/self/fd").length;

test("files across 40 directories made by two writer threads: content, mode and time as sent, every directory descriptor closed", async () => {
  const at = openAt();
  const root = path.join(dir, "many");
  fs.mkdirSync(root);
  const rootFd = at.openRoot(root);
  const before = openFds();
  const writers = new FileWriters(2);
  const made = new Map<string, Buffer>();
  const dirs = Array.from({ length: 40 }, (_, i) => `d${i}`);
  const fds = new Map<string, number>();
  for (const d of dirs) {
    at.mkdir(rootFd, d, 0o755);
    fds.set(d, at.openDir(rootFd, d));
  }
  // files in turn across the directories, as an archive of a changing tree could hold them
  for (let i = 0; i < 2000; i++) {
    const d = dirs[(i * 7) % dirs.length]!;
    const size = i === 5 ? (1 << 20) + 3 : (i * 37) % 700;
    const content = Buffer.alloc(size, `${i}:`);
    const key = `${d}/f${i}`;
    made.set(key, content);
    writers.open(d, file(key, size, { dirFd: fds.get(d)!, mode: 0o600 + (i % 64), uid: 0, gid: 0 }));
    // in pieces, as the tar stream gives them
    for (let p = 0; p < size; p += 300_000) writers.data(content.subarray(p, p + 300_000));
  }
  for (const d of dirs) writers.closeDir(d, fds.get(d)!);
  const reports = await writers.finish();
  at.close(rootFd);
  expect(reports.length).toBe(2);
  expect(reports.every((r) => r.restored > 0)).toBe(true);
  expect(reports.reduce((n, r) => n + r.restored, 0)).toBe(2000);
  expect(reports.reduce((n, r) => n + r.bytes, 0)).toBe([...made.values()].reduce((n, b) => n + b.length, 0));
  expect(reports.flatMap((r) => r.failed)).toEqual([]);
  for (const [key, content] of made) {
    const p = path.join(root, key);
    expect(fs.readFileSync(p).equals(content)).toBe(true);
    const st = fs.statSync(p, { bigint: true });
    expect(st.mtimeNs).toBe(1_700_000_000_123_456_789n);
    expect(Number(st.mode & 0o7777n)).toBe(0o600 + (Number(key.slice(key.indexOf("f") + 1)) % 64));
  }
  // the target's descriptor is the only one closed here: each directory's was closed by its writer
  expect(openFds()).toBe(before - 1);
});

/** One directory with its descriptor, and writers to make files in it. */
function oneDir(name: string) {
  const at = openAt();
  const root = path.join(dir, name);
  fs.mkdirSync(root);
  const fd = at.openRoot(root);
  return { at, root, fd, writers: new FileWriters(2) };
}

test("a file whose content ends early is removed; a name given twice is made as the later entry; a directory in the way is a failure that names it", async () => {
  const { at, root, fd, writers } = oneDir("cases");
  fs.mkdirSync(path.join(root, "taken"));
  writers.open("", file("cut", 10, { dirFd: fd }));
  writers.data(Buffer.from("four"));
  writers.abandon();
  writers.open("", file("twice", 5, { dirFd: fd }));
  writers.data(Buffer.from("first"));
  writers.open("", file("twice", 6, { dirFd: fd }));
  writers.data(Buffer.from("second"));
  writers.open("", file("taken", 3, { dirFd: fd }));
  writers.data(Buffer.from("abc"));
  writers.open("", file("after", 2, { dirFd: fd }));
  writers.data(Buffer.from("ok"));
  const reports = await writers.finish();
  at.close(fd);
  expect(reports.reduce((n, r) => n + r.restored, 0)).toBe(3);
  expect(reports.flatMap((r) => r.failed)).toEqual([{ name: "taken", why: "a directory of that name is in the way" }]);
  expect(fs.readdirSync(root).sort()).toEqual(["after", "taken", "twice"]);
  expect(fs.readFileSync(path.join(root, "twice"), "utf8")).toBe("second");
  expect(fs.statSync(path.join(root, "taken")).isDirectory()).toBe(true);
});

test("drain waits until every writer has made what it was sent", () => {
  const { at, root, fd, writers } = oneDir("drain");
  for (let i = 0; i < 300; i++) {
    writers.open(`k${i % 5}`, file(`f${i}`, 3, { dirFd: fd }));
    writers.data(Buffer.from("abc"));
  }
  writers.drain();
  expect(fs.readdirSync(root).length).toBe(300);
  return writers.finish().then(() => at.close(fd));
});
