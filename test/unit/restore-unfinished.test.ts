/**
 * The note of an unfinished restore (src/core/restore/unfinished.ts), with a stand-in for the
 * restore itself: when it is written and removed, what the outcome says of an earlier one, and
 * that nothing else by its name is ever removed or followed.
 */
import { afterEach, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { code, type CodeName } from "../../src/core/common/codes.ts";
import { ShootError } from "../../src/core/common/errors.ts";
import type { RestoreOptions, RestoreResult } from "../../src/core/restore/restore.ts";
import { earlierUnfinished, restoreNoting, UNFINISHED_NOTE } from "../../src/core/restore/unfinished.ts";
import { tempDir } from "../helpers/fixture.ts";

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
});

function target(): string {
  const root = fs.realpathSync(tempDir());
  roots.push(root);
  return root;
}

const at = () => new Date("2026-12-05T03:00:00Z");

/** A restore that begins to write (or not) and ends with `name`. */
function fakeRun(name: CodeName | "OK", writes: boolean, seen: string[] = []) {
  return async (o: RestoreOptions): Promise<RestoreResult> => {
    if (writes) o.beforeWriting?.(o.to);
    seen.push(fs.existsSync(path.join(o.to, UNFINISHED_NOTE)) ? "note" : "none");
    const c = name === "OK" ? 0 : code(name);
    return { code: c, message: "done", archive: "a.tar.gz", to: o.to, restored: 0, bytes: 0, refused: [], clashes: [], skipped: [], conflicts: [], failed: [], alsoRestored: [], ms: 0 };
  };
}

test.each([
  ["OK", true, false],
  ["RESTORE_UNSAFE", true, false],
  ["RESTORE_CONFLICT", true, false],
  ["ARCHIVE_UNSUPPORTED", true, false],
  ["RESTORE_FAILED", true, true],
  ["RESTORE_NO_SPACE", true, true],
  ["RESTORE_NO_SPACE", false, false],
  ["RESTORE_EXISTS", false, false],
] as const)("ends %s, wrote %p: the note stays %p", async (name, writes, stays) => {
  const to = target();
  const seen: string[] = [];
  const r = await restoreNoting("a.tar.gz", { to }, fakeRun(name, writes, seen), at);
  expect(seen).toEqual([writes ? "note" : "none"]);
  expect(fs.existsSync(path.join(to, UNFINISHED_NOTE))).toBe(stays);
  if (stays) {
    expect(earlierUnfinished(to)).toMatchObject({ archive: "a.tar.gz", started: "2026-12-05T03:00:00.000Z", pid: process.pid });
    expect(r.message).toContain(`${path.join(to, UNFINISHED_NOTE)} says so until a restore into ${to} finishes`);
  } else expect(r.message).toBe("done");
});

test("an earlier note: named beside a refusal, replaced and removed by a restore that finishes", async () => {
  const to = target();
  await restoreNoting("a.tar.gz", { to }, fakeRun("RESTORE_FAILED", true), at);
  const refused = await restoreNoting("a.tar.gz", { to }, fakeRun("RESTORE_EXISTS", false), at);
  expect(refused.message).toContain(`a restore of a.tar.gz into ${to} begun 2026-12-05T03:00:00.000Z (process ${process.pid}`);
  expect(refused.message).toContain("run the same command again with --force to finish it");
  expect(refused.earlierUnfinished).toMatchObject({ archive: "a.tar.gz" });
  const thrown = await restoreNoting("a.tar.gz", { to }, async () => {
    throw new ShootError("RESTORE_EXISTS", "3 entries exist");
  }, at).catch((e: ShootError) => e);
  expect((thrown as ShootError).message).toMatch(/^3 entries exist; a restore of a\.tar\.gz .* did not finish: run the same command again with --force/);
  const other = await restoreNoting("b.tar.gz", { to }, fakeRun("OK", true), at);
  expect(other.message).toContain("what that wrote and b.tar.gz does not hold is still there");
  expect(fs.existsSync(path.join(to, UNFINISHED_NOTE))).toBe(false);
  await restoreNoting("a.tar.gz", { to }, fakeRun("RESTORE_FAILED", true), at);
  const same = await restoreNoting("a.tar.gz", { to }, fakeRun("OK", true), at);
  expect(same.message).toBe("done; it finished the restore of a.tar.gz begun 2026-12-05T03:00:00.000Z, which had stopped part way");
});

test("a signal: INTERRUPTED, before writing or part way", async () => {
  const to = target();
  const ac = new AbortController();
  ac.abort("SIGINT");
  const aborted = (writes: boolean) => async (o: RestoreOptions): Promise<RestoreResult> => {
    if (writes) o.beforeWriting?.(o.to);
    throw new Error("The operation was aborted");
  };
  const before = await restoreNoting("a.tar.gz", { to, signal: ac.signal }, aborted(false), at).catch((e: ShootError) => e);
  expect({ code: (before as ShootError).code, message: (before as ShootError).message }).toEqual({
    code: code("INTERRUPTED"), message: "interrupted by SIGINT before anything was written; nothing was restored",
  });
  const during = await restoreNoting("a.tar.gz", { to, signal: ac.signal }, aborted(true), at).catch((e: ShootError) => e);
  expect((during as ShootError).code).toBe(code("INTERRUPTED"));
  expect((during as ShootError).message).toContain("interrupted by SIGINT part way: what was written stays");
  expect(fs.existsSync(path.join(to, UNFINISHED_NOTE))).toBe(true);
});

test("what stands by the note's name and is not one is never removed, replaced or followed", async () => {
  const to = target();
  const outside = target();
  fs.writeFileSync(path.join(outside, "precious"), "keep me");
  fs.symlinkSync(path.join(outside, "precious"), path.join(to, UNFINISHED_NOTE));
  expect(earlierUnfinished(to)).toBe("unreadable");
  // a note an archive wrote there, with escape sequences for the terminal that reads the message
  const planted = target();
  fs.writeFileSync(path.join(planted, UNFINISHED_NOTE), JSON.stringify({ archive: "x\u001b[2J", started: "now", host: "h", pid: 1 }));
  expect(earlierUnfinished(planted)).toBe("unreadable");
  const r = await restoreNoting("a.tar.gz", { to }, fakeRun("OK", true), at);
  expect(r.message).toBe(`done; ${path.join(to, UNFINISHED_NOTE)} is there but is not a note shoot can read (left alone)`);
  expect(fs.readlinkSync(path.join(to, UNFINISHED_NOTE))).toBe(path.join(outside, "precious"));
  expect(fs.readFileSync(path.join(outside, "precious"), "utf8")).toBe("keep me");
  // a file restored over the note while it was there is the archive's: left alone
  fs.rmSync(path.join(to, UNFINISHED_NOTE));
  await restoreNoting("a.tar.gz", { to }, async (o) => {
    o.beforeWriting?.(o.to);
    fs.rmSync(path.join(o.to, UNFINISHED_NOTE));
    fs.writeFileSync(path.join(o.to, UNFINISHED_NOTE), "from the archive");
    return fakeRun("OK", false)(o);
  }, at);
  expect(fs.readFileSync(path.join(to, UNFINISHED_NOTE), "utf8")).toBe("from the archive");
});
