/**
 * The entries a restore's check keeps for its plan (listings.ts): read back as they were
 * added, from memory and, past what is held, from a file that no one else can open and that
 * no directory lists.
 */
import { expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import type { TarListing } from "../../src/core/archive/tar.ts";
import { ListingLog } from "../../src/core/restore/listings.ts";

function listing(i: number): TarListing {
  const l: TarListing = {
    name: `dir ${i % 97}/é ${"n".repeat(i % 300)} ${i}`,
    type: (["file", "dir", "symlink", "hardlink", "other"] as const)[i % 5]!,
    size: i * 4096 + (i % 3 === 0 ? 2 ** 40 : 0),
    mode: 0o644 + (i % 8),
    uid: i % 7 === 0 ? 2 ** 32 + i : i,
    gid: i,
    uname: "",
    gname: "",
    mtimeNs: BigInt(i) * 1_000_000_007n - (i % 2 === 0 ? 10n ** 20n : 0n),
  };
  if (i % 5 === 2 || i % 5 === 3) l.linkTarget = i % 10 === 2 ? "" : `../t ${i}`;
  if (i % 5 === 4) l.kind = "a FIFO";
  if (i % 11 === 0) l.unrestorable = "its name is not UTF-8";
  return l;
}

function readBack(n: number): TarListing[] {
  const log = new ListingLog();
  try {
    for (let i = 0; i < n; i++) log.add(listing(i));
    expect(log.count).toBe(n);
    return [...log.replay()];
  } finally {
    log.close();
  }
}

test("a few entries are read back as added, every field the plan reads", () => {
  expect(readBack(50)).toEqual(Array.from({ length: 50 }, (_, i) => listing(i)));
});

/** Files this process holds open that were made for a restore's entries. */
function spillFiles(): { target: string; mode: number }[] {
  const out: { target: string; mode: number }[] = [];
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the descriptor readdir itself held
    }
    if (target.includes("shoot-restore-")) out.push({ target, mode: fs.statSync(`/proc/self/fd/${fd}`).mode & 0o777 });
  }
  return out;
}

test("entries past what is held in memory go to a file of mode 0600 no directory lists, and come back in order", () => {
  const made = () => fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith("shoot-restore-"));
  const before = made();
  const n = 60_000;
  const log = new ListingLog();
  try {
    for (let i = 0; i < n; i++) log.add(listing(i));
    const open = spillFiles();
    expect(open.length).toBe(1);
    expect(open[0]!.target).toEndWith("(deleted)");
    expect(open[0]!.mode).toBe(0o600);
    expect(made()).toEqual(before);
    const got = [...log.replay()];
    expect(got.length).toBe(n);
    for (const i of [0, 1, 2, 3, 4, 11, 29_999, n - 1]) expect(got[i]).toEqual(listing(i));
    expect(got.every((l, i) => l.name === listing(i).name)).toBe(true);
  } finally {
    log.close();
  }
  expect(spillFiles()).toEqual([]);
});

test("an entry larger than a chunk is read back whole", () => {
  const log = new ListingLog();
  const big = { ...listing(1), name: "x".repeat(3 << 20) };
  log.add(listing(0));
  log.add(big);
  log.add(listing(2));
  expect([...log.replay()]).toEqual([listing(0), big, listing(2)]);
  log.close();
});
