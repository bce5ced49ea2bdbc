/**
 * Temporary files are created O_CREAT|O_EXCL|O_NOFOLLOW: a link put under a temporary's name
 * is never written through, and the temporary is gone however the write ends.
 */
import { afterAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { LineWriter, createExclusive, writeFileAtomic } from "../../src/core/state/fsutil.ts";
import { replaceFileAtomic } from "../../src/core/report/metrics.ts";
import { TEMP_PREFIX } from "../../src/core/state/naming.ts";
import { tempDir } from "../helpers/fixture.ts";

const root = tempDir("shoot-temps-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function place(name: string): { dir: string; canary: string } {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { mode: 0o700 });
  const canary = path.join(root, `${name}-canary`);
  fs.writeFileSync(canary, "untouched");
  return { dir, canary };
}

test("createExclusive refuses an existing file and a link, and follows neither", () => {
  const { dir, canary } = place("exclusive");
  fs.symlinkSync(canary, path.join(dir, "link"));
  fs.writeFileSync(path.join(dir, "file"), "there");
  expect(() => createExclusive(path.join(dir, "link"))).toThrow(expect.objectContaining({ code: "EEXIST" }));
  expect(() => createExclusive(path.join(dir, "file"))).toThrow(expect.objectContaining({ code: "EEXIST" }));
  // a dangling link too: O_EXCL never creates its target
  fs.symlinkSync(path.join(root, "exclusive-target"), path.join(dir, "dangling"));
  expect(() => createExclusive(path.join(dir, "dangling"))).toThrow(expect.objectContaining({ code: "EEXIST" }));
  expect(fs.existsSync(path.join(root, "exclusive-target"))).toBe(false);
  expect(fs.readFileSync(canary, "utf8")).toBe("untouched");
  const fd = createExclusive(path.join(dir, "new"), 0o600);
  fs.closeSync(fd);
  expect(fs.statSync(path.join(dir, "new")).mode & 0o777).toBe(0o600);
});

test("writeFileAtomic: a link planted under the temporary's name is removed, not written through", () => {
  const { dir, canary } = place("planted");
  fs.symlinkSync(canary, path.join(dir, `${TEMP_PREFIX}x.md5`));
  writeFileAtomic(dir, "x.md5", "sum\n");
  expect(fs.readFileSync(canary, "utf8")).toBe("untouched");
  expect(fs.readFileSync(path.join(dir, "x.md5"), "utf8")).toBe("sum\n");
  expect(fs.readdirSync(dir)).toEqual(["x.md5"]);
});

test("writeFileAtomic: the temporary is removed when the write or the rename fails", () => {
  const { dir } = place("fails");
  // the final name is a directory that is not empty: the rename fails after the data was written
  fs.mkdirSync(path.join(dir, "x.list", "inside"), { recursive: true });
  expect(() => writeFileAtomic(dir, "x.list", "a\n")).toThrow();
  // the content cannot be read: the write fails part way
  const failing = (function* () {
    yield "first\n";
    throw new Error("reading the list failed");
  })();
  expect(() => writeFileAtomic(dir, "y.list", failing)).toThrow("reading the list failed");
  expect(fs.readdirSync(dir).sort()).toEqual(["x.list"]);
});

test("LineWriter and the metrics file never write through a link under their names", () => {
  const { dir, canary } = place("lines");
  fs.symlinkSync(canary, path.join(dir, `${TEMP_PREFIX}scan.list`));
  expect(() => new LineWriter(path.join(dir, `${TEMP_PREFIX}scan.list`))).toThrow();
  const prom = path.join(dir, "shoot.prom");
  fs.symlinkSync(canary, path.join(dir, `.shoot.prom.${process.pid}.tmp`));
  replaceFileAtomic(prom, "m 1\n");
  expect(fs.readFileSync(canary, "utf8")).toBe("untouched");
  expect(fs.readFileSync(prom, "utf8")).toBe("m 1\n");
  expect(fs.readdirSync(dir).sort()).toEqual([`${TEMP_PREFIX}scan.list`, "shoot.prom"]);
});
