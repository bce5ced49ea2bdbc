/**
 * The socket directories a killed client leaves behind are removed by a later run, on real
 * directories: only empty ones of this user, old enough that no connection is still being made.
 */
import { afterEach, expect, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { ownerPid, removeStaleSocketDirs } from "../../src/core/transfer/ssh-shared.ts";
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

test("a directory named for its client's pid goes at once when its client no longer runs and its socket is gone (ssh's log may stay); with a socket, once old", () => {
  root = tempDir();
  const now = Date.now();
  const old = new Date(now - 11 * 60_000);
  // a pid that ran and ended
  const dead = Bun.spawnSync(["true"]).pid;
  const make = (name: string, opts: { old?: boolean; socket?: boolean } = {}) => {
    const p = path.join(root, name);
    fs.mkdirSync(p, { mode: 0o700 });
    if (opts.socket) fs.writeFileSync(path.join(p, "s"), "");
    if (opts.old) fs.utimesSync(p, old, old);
  };
  make(`shoot-ssh-${dead}-aaaaaa`);
  make(`shoot-ssh-${dead}-ffffff`);
  fs.writeFileSync(path.join(root, `shoot-ssh-${dead}-ffffff`, "log"), "ssh: connect to host x port 22: Connection refused\n");
  make(`shoot-ssh-${dead}-bbbbbb`, { socket: true });
  make(`shoot-ssh-${dead}-cccccc`, { socket: true, old: true });
  make(`shoot-ssh-${process.ppid}-dddddd`, { old: true });
  make(`shoot-ssh-${process.pid}-eeeeee`, { old: true });
  expect(removeStaleSocketDirs(root, now).sort()).toEqual([`shoot-ssh-${dead}-aaaaaa`, `shoot-ssh-${dead}-cccccc`, `shoot-ssh-${dead}-ffffff`]);
  expect(fs.readdirSync(root).sort()).toEqual([`shoot-ssh-${dead}-bbbbbb`, `shoot-ssh-${process.ppid}-dddddd`, `shoot-ssh-${process.pid}-eeeeee`].sort());
});

test("ownerPid", () => {
  expect(ownerPid("shoot-ssh-1234-AbC12z")).toBe(1234);
  expect(ownerPid("shoot-ssh-AbC12z")).toBeUndefined();
  expect(ownerPid("shoot-ssh-12-34-x")).toBeUndefined();
});
