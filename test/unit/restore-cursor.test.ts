/**
 * The open path a restore writes through (src/core/restore/cursor.ts), over a tree held in
 * memory: what it opens, makes and refuses, and how many descriptors it holds on a tree
 * thousands of levels deep.
 */
import { expect, test } from "bun:test";
import type { At, DiskKind } from "../../src/core/restore/at.ts";
import { DirCursor } from "../../src/core/restore/cursor.ts";

/** Directories and links by path ("" is the target), descriptors as numbers; counts what is called. */
class TreeAt implements Partial<At> {
  readonly kinds = new Map<string, DiskKind>([["", "dir"]]);
  readonly modes = new Map<string, number>();
  private readonly paths = new Map<number, string>([[3, ""]]);
  private next = 10;
  opens = 0;
  open = 0;
  mostOpen = 0;

  private at(fd: number, name: string): string {
    const dir = this.paths.get(fd);
    if (dir === undefined) throw Object.assign(new Error(`bad descriptor ${fd}`), { code: "EBADF" });
    return dir ? `${dir}/${name}` : name;
  }

  openDir(fd: number, name: string): number {
    const p = this.at(fd, name);
    const k = this.kinds.get(p);
    if (k === undefined) throw Object.assign(new Error("no such"), { code: "ENOENT" });
    if (k === "symlink") throw Object.assign(new Error("a link"), { code: "ELOOP" });
    if (k !== "dir") throw Object.assign(new Error("not a dir"), { code: "ENOTDIR" });
    this.opens++;
    const out = this.next++;
    this.paths.set(out, p);
    this.mostOpen = Math.max(this.mostOpen, ++this.open);
    return out;
  }

  mkdir(fd: number, name: string, mode: number): void {
    const p = this.at(fd, name);
    if (this.kinds.has(p)) throw Object.assign(new Error("exists"), { code: "EEXIST" });
    this.kinds.set(p, "dir");
    this.modes.set(p, mode);
  }

  close(fd: number): void {
    if (!this.paths.delete(fd)) throw new Error(`closed twice: ${fd}`);
    this.open--;
  }
}

const cursor = (t: TreeAt, modeFor = (_k: string) => 0o777) => new DirCursor(t as unknown as At, 3, modeFor);

test("missing directories are made, with the mode the plan gives each; what exists is opened, never made again", () => {
  const t = new TreeAt();
  t.kinds.set("a", "dir");
  const c = cursor(t, (k) => (k === "a/b" ? 0o700 : 0o777));
  c.dir(["a", "b", "c", "f"], 3, true);
  expect([...t.modes]).toEqual([["a/b", 0o700], ["a/b/c", 0o777]]);
  // a sibling under the same parent opens nothing more
  const opens = t.opens;
  c.dir(["a", "b", "c", "g"], 3, true);
  expect(t.opens).toBe(opens);
  c.close();
  expect(t.open).toBe(0);
});

test("a link or a file where a directory belongs stops the walk: nothing is made through it", () => {
  const t = new TreeAt();
  t.kinds.set("l", "symlink");
  t.kinds.set("f", "file");
  expect(() => cursor(t).dir(["l", "x", "y"], 2, true)).toThrow("l is not a directory here (a link or a file is in the way): nothing is made through it");
  expect(() => cursor(t).dir(["f", "x"], 1, true)).toThrow("f is not a directory here");
  expect([...t.kinds.keys()].sort()).toEqual(["", "f", "l"]);
  expect(() => cursor(t).dir(["missing", "x"], 2, false)).toThrow("no such");
});

test("3,000 levels down and back up, a level at a time: about a hundred descriptors at most, each level opened about twice", () => {
  const t = new TreeAt();
  const c = cursor(t);
  const parts = Array.from({ length: 3000 }, () => "d");
  for (let n = 1; n <= parts.length; n++) c.dir(parts, n, true);
  for (let n = parts.length; n >= 0; n--) c.dir(parts, n, false);
  c.close();
  expect(t.open).toBe(0);
  expect(t.mostOpen).toBeLessThanOrEqual(64 + 3000 / 64 + 2);
  expect(t.opens).toBeLessThanOrEqual(2 * 3000 + 64);
});
