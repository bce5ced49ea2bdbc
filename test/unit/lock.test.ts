/**
 * The lock file (state/lock.ts) on real files: it appears whole or not at all (written to a
 * temporary file and linked under its name), a second run is refused while it is held, and
 * the temporaries of runs killed before they linked theirs are removed by the next one.
 */
import { afterEach, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { LOCK_FILE, LockedError, acquireLock } from "../../src/core/state/lock.ts";
import { TEMP_PREFIX } from "../../src/core/state/naming.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
const tempDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-lock-"));
  dirs.push(d);
  return d;
};

/** A pid that no process has now: one of a child that has exited. */
async function deadPid(): Promise<number> {
  const p = Bun.spawn(["true"]);
  await p.exited;
  return p.pid;
}

test("the lock holds the owner's record from the moment it exists; nothing else is left beside it", () => {
  const dir = tempDir();
  const lock = acquireLock(dir, "server");
  expect(JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), "utf8"))).toMatchObject({ pid: process.pid, role: "server", token: lock.info.token });
  expect(fs.readdirSync(dir)).toEqual([LOCK_FILE]);
  expect(() => acquireLock(dir, "client")).toThrow(LockedError);
  lock.release();
  expect(fs.readdirSync(dir)).toEqual([]);
});

test("temporaries of a killed run are removed by the next run that takes the lock; a live one's stay", async () => {
  const dir = tempDir();
  const dead = `${TEMP_PREFIX}lock-${await deadPid()}-x`;
  const alive = `${TEMP_PREFIX}lock-${process.pid}-y`;
  for (const n of [dead, alive]) fs.writeFileSync(path.join(dir, n), "");
  const lock = acquireLock(dir, "server");
  expect(fs.readdirSync(dir).sort()).toEqual([LOCK_FILE, alive].sort());
  lock.release();
});

test("a lock that cannot be written leaves nothing behind", () => {
  if (process.getuid?.() === 0) {
    // root writes into a read-only directory: a file in its place stands for a directory that cannot be used
    const dir = tempDir();
    const notDir = path.join(dir, "file");
    fs.writeFileSync(notDir, "");
    expect(() => acquireLock(notDir, "server")).toThrow(/ENOTDIR/);
    expect(fs.readdirSync(dir)).toEqual(["file"]);
    return;
  }
  const dir = tempDir();
  fs.chmodSync(dir, 0o500);
  expect(() => acquireLock(dir, "server")).toThrow(/EACCES/);
  fs.chmodSync(dir, 0o700);
  expect(fs.readdirSync(dir)).toEqual([]);
});
