/**
 * A backup leaves the access times of what it reads as they were: a real `shoot server` run
 * over files whose atime is older than their mtime, the case in which Linux's relatime updates
 * the atime on the next read (a mail client's "new mail" test looks at exactly this).
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { archivesIn, serverFixture, statusRecords } from "../helpers/fixture.ts";

const fx = serverFixture("", {
  "var/mail/ann": "From ann@example.org Thu Nov 26 10:00:00 2026\n\nnew mail\n",
  "home/ann/notes.txt": "hello\n".repeat(1000),
  "home/bob/other-owner.txt": "owned by another user\n",
  "control/read-by-the-test.txt": "read with an ordinary open\n",
});
afterAll(() => fx.cleanup());

const DAY_MS = 86_400_000;
/** Files whose atime is set three days before their mtime. */
function ageAtimes(files: string[]): Map<string, number> {
  const now = Date.now();
  const set = new Map<string, number>();
  for (const f of files) {
    const atime = new Date(now - 3 * DAY_MS);
    fs.utimesSync(f, atime, new Date(now - DAY_MS));
    set.set(f, fs.statSync(f).atimeMs);
  }
  return set;
}

describe("access times", () => {
  test("a server run reads every file without changing its atime", async () => {
    const archived = ["var/mail/ann", "home/ann/notes.txt", "home/bob/other-owner.txt"].map((f) => path.join(fx.src, f));
    const control = path.join(fx.src, "control/read-by-the-test.txt");
    if (process.getuid?.() === 0) fs.chownSync(archived[2]!, 4242, 4242);
    const before = ageAtimes([...archived, control]);

    // the file system must update atimes on an ordinary read, or this test could not fail
    fs.readFileSync(control);
    const controlAfter = fs.statSync(control).atimeMs;
    if (controlAfter === before.get(control)) {
      throw new Error(`${fx.src}: this file system did not update an atime on read (mounted noatime?); the test needs relatime or strictatime`);
    }

    const r = await runShoot(["server", "--config", fx.config]);
    expect(r.code).toBe(0);
    expect(statusRecords(path.join(fx.backup, "server.status")).at(-1)?.code).toBe(30);
    expect(archivesIn(fx.backup).length).toBe(1);
    for (const f of archived) expect({ file: f, atimeMs: fs.statSync(f).atimeMs }).toEqual({ file: f, atimeMs: before.get(f)! });
  }, 60_000);
});
