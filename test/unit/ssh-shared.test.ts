/**
 * The socket directories a killed client leaves behind are removed by a later run, on real
 * directories: only empty ones of this user, old enough that no connection is still being made.
 */
import { afterEach, expect, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { removeStaleSocketDirs } from "../../src/core/transfer/ssh-shared.ts";
import { tempDir } from "../helpers/fixture.ts";

let root: string;
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

test("empty socket directories older than ten minutes go; live, young and other entries stay", async () => {
  root = tempDir();
  const now = Date.now();
  const make = (name: string) => {
    const p = path.join(root, name);
    fs.mkdirSync(p, { mode: 0o700 });
    return p;
  };
  const old = new Date(now - 11 * 60_000);
  make("shoot-ssh-killed1");
  make("shoot-ssh-killed2");
  make("shoot-ssh-young");
  make("other-dir");
  fs.writeFileSync(path.join(root, "shoot-ssh-file"), "not a directory");
  // a live connection: its socket is in the directory
  const live = make("shoot-ssh-live");
  const server = net.createServer().listen(path.join(live, "s"));
  await new Promise((r) => server.once("listening", r));
  try {
    for (const n of ["shoot-ssh-killed1", "shoot-ssh-killed2", "shoot-ssh-live", "other-dir", "shoot-ssh-file"]) fs.utimesSync(path.join(root, n), old, old);
    expect(removeStaleSocketDirs(root, now).sort()).toEqual(["shoot-ssh-killed1", "shoot-ssh-killed2"]);
    expect(fs.readdirSync(root).sort()).toEqual(["other-dir", "shoot-ssh-file", "shoot-ssh-live", "shoot-ssh-young"]);
    expect(fs.readdirSync(live)).toEqual(["s"]);
  } finally {
    server.close();
  }
});

test("a directory that cannot be read removes nothing and does not throw", () => {
  root = tempDir();
  expect(removeStaleSocketDirs(path.join(root, "missing"), Date.now())).toEqual([]);
});
