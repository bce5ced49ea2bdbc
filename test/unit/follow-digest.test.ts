/**
 * followDigest on real files, written the way rsync's receiver writes them: a temporary
 * `.NAME.XXXXXX` beside the final name, filled front to back in pieces, renamed when whole.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { followDigest, followedDigest, type DigestAlgorithm } from "../../src/core/transfer/follow-digest.ts";
import { tempDir } from "../helpers/fixture.ts";

const T = 30_000;
const NAME = "web-20261127-030000.tar.zst";
let root: string;
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

function sum(b: Uint8Array, algorithm: DigestAlgorithm = "sha256"): string {
  return createHash(algorithm).update(b).digest("hex");
}

/** Write `bytes` into `dir/name` in `pieces` appends with a pause between them. */
async function writeSlowly(file: string, bytes: Uint8Array, pieces: number, pauseMs: number): Promise<void> {
  const fd = fs.openSync(file, "wx", 0o600);
  try {
    const step = Math.ceil(bytes.length / pieces);
    for (let at = 0; at < bytes.length; at += step) {
      fs.writeSync(fd, bytes.subarray(at, Math.min(bytes.length, at + step)));
      await Bun.sleep(pauseMs);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** How many descriptors of this process have `file` open, once that is `want` or 5 s have passed. */
async function holdersOf(file: string, want: number): Promise<number> {
  const count = () => fs.readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false; // closed since the listing
    }
  }).length;
  const deadline = Date.now() + 5_000;
  while (count() !== want && Date.now() < deadline) await Bun.sleep(10);
  return count();
}

/**
 * Follow a transfer of `bytes` as rsync makes it: written slowly under a temporary name while
 * both workers hold the file (one hashing, one starting write-back), then renamed.
 */
async function followTransfer(bytes: Uint8Array, algorithm: DigestAlgorithm, suffix: string, pieces: number, pauseMs: number) {
  const follower = followDigest(root, NAME, algorithm);
  const temp = path.join(root, `.${NAME}.${suffix}`);
  await writeSlowly(temp, bytes, pieces, pauseMs);
  expect(await holdersOf(temp, 2)).toBe(2);
  fs.renameSync(temp, path.join(root, NAME));
  return follower.finish();
}

describe("followDigest", () => {
  test("the SHA-256 of a file hashed while it is written, then renamed, is that of the finished file", async () => {
    root = tempDir();
    const bytes = randomBytes((9 << 20) + 4321);
    const followed = await followTransfer(bytes, "sha256", "Ab3dE9", 12, 25);
    expect(followed.why).toBeUndefined();
    expect(followed.read!.bytes).toBe(bytes.length);
    expect(followedDigest(path.join(root, NAME), followed)).toBe(sum(bytes));
  }, T);

  test("MD5, for a status record without SHA-256", async () => {
    root = tempDir();
    const bytes = randomBytes(300_000);
    const followed = await followTransfer(bytes, "md5", "q1W2e3", 3, 20);
    expect(followedDigest(path.join(root, NAME), followed)).toBe(sum(bytes, "md5"));
  }, T);

  test("a file redone after a failed check (another temporary file, another inode) is not taken for the one read", async () => {
    root = tempDir();
    const first = randomBytes(2 << 20);
    const second = randomBytes(2 << 20);
    const follower = followDigest(root, NAME, "sha256");
    const a = path.join(root, `.${NAME}.aaaaaa`);
    await writeSlowly(a, first, 4, 20);
    expect(await holdersOf(a, 2)).toBe(2);
    await Bun.sleep(100); // the workers have read it
    fs.rmSync(a);
    const b = path.join(root, `.${NAME}.bbbbbb`);
    await writeSlowly(b, second, 4, 10);
    fs.renameSync(b, path.join(root, NAME));
    const followed = await follower.finish();
    expect(followed.read?.digest).toBe(sum(first));
    expect(followedDigest(path.join(root, NAME), followed)).toBeUndefined();
  }, T);

  test("a file longer than what was read, or gone, is hashed again", async () => {
    root = tempDir();
    const bytes = randomBytes(1 << 20);
    const followed = await followTransfer(bytes, "sha256", "zzzzzz", 2, 20);
    const final = path.join(root, NAME);
    expect(followedDigest(final, followed)).toBe(sum(bytes));
    fs.appendFileSync(final, "x");
    expect(followedDigest(final, followed)).toBeUndefined();
    fs.rmSync(final);
    expect(followedDigest(final, followed)).toBeUndefined();
  }, T);

  test("a transfer that ended before its temporary file was seen leaves nothing to take; the checksum file's temporary file is not the archive's", async () => {
    root = tempDir();
    const follower = followDigest(root, NAME, "sha256");
    // rsync's temporary file of NAME.md5 starts with the archive's prefix too
    await writeSlowly(path.join(root, `.${NAME}.md5.Xy12Zw`), new TextEncoder().encode("0".repeat(32)), 1, 60);
    const followed = await follower.finish();
    expect(followed.why).toBe("the transfer ended before its temporary file was seen");
    expect(followedDigest(path.join(root, NAME), followed)).toBeUndefined();
  }, T);

  test("cancel: the workers close the file they follow and answer", async () => {
    root = tempDir();
    const temp = path.join(root, `.${NAME}.Cc4Dd5`);
    fs.writeFileSync(temp, randomBytes(1000));
    const follower = followDigest(root, NAME, "sha256");
    expect(await holdersOf(temp, 2)).toBe(2); // one hashing and one starting write-back, waiting for more
    follower.cancel();
    expect(await holdersOf(temp, 0)).toBe(0);
  }, T);

  test("while the transfer lasts the hashing thread is idle-class (SCHED_IDLE): the transfer comes first", async () => {
    root = tempDir();
    const idleThreads = () => fs.readdirSync("/proc/self/task").filter((tid) => {
      try {
        // field 41 of stat is the scheduling policy; fields are counted after the command's closing parenthesis
        const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
        return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[41 - 3] === "5";
      } catch {
        return false; // the thread ended since the listing
      }
    }).length;
    // the workers of the tests before wait for the next pull, back to the normal policy once they answered
    for (const deadline = Date.now() + 5_000; idleThreads() > 0 && Date.now() < deadline;) await Bun.sleep(10);
    expect(idleThreads()).toBe(0);
    const follower = followDigest(root, NAME, "sha256");
    const temp = path.join(root, `.${NAME}.Id1e00`);
    fs.writeFileSync(temp, randomBytes(1 << 20));
    expect(await holdersOf(temp, 2)).toBe(2);
    expect(idleThreads()).toBe(1); // the hashing thread; the write-back thread keeps the normal policy
    fs.renameSync(temp, path.join(root, NAME));
    expect(followedDigest(path.join(root, NAME), await follower.finish())).toBeDefined();
  }, T);
});
