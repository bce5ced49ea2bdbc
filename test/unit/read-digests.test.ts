/**
 * The two digests of a pass (src/core/restore/pass-digests.ts): for a file of LARGE bytes or more the
 * SHA-256 is taken on a thread of its own, which reads the file again (and the MD5 too when a
 * worker decompresses; the SHA-256 alone when asked). What it gives must be what md5sum and
 * sha256sum say, for a whole archive and for a damaged one (whose digests tell a changed
 * archive from a damaged one), and a thread that hashed other bytes than the pass must be caught.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { LARGE, passDigests, sha256Here } from "../../src/core/restore/pass-digests.ts";
import { ArchiveDamage, archivePass } from "../../src/core/restore/read.ts";
import { tempDir } from "../helpers/fixture.ts";
import { randomBytes, seeded } from "../helpers/random.ts";
import { requireTool } from "../helpers/tools.ts";

const T = 60_000;
const root = tempDir("shoot-read-digests-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function coreutils(file: string): { md5: string; sha256: string } {
  const sum = (tool: "md5sum" | "sha256sum") => {
    const r = Bun.spawnSync([requireTool(tool), file], { stdin: "ignore" });
    expect(r.exitCode).toBe(0);
    return r.stdout.toString().split(" ")[0]!;
  };
  return { md5: sum("md5sum"), sha256: sum("sha256sum") };
}

/** A tar of GNU tar (no compression) larger than LARGE: three files of random bytes. */
function largeTar(): string {
  const rand = seeded(20261204);
  const tree = path.join(root, "tree");
  fs.mkdirSync(tree, { recursive: true });
  for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(tree, `f${i}`), randomBytes(rand, Math.ceil(LARGE / 3) + 4096 * i + 7));
  const archive = path.join(root, "large.tar");
  const r = Bun.spawnSync([requireTool("tar"), "-cf", archive, "-C", tree, "."], { stdin: "ignore" });
  expect(r.exitCode).toBe(0);
  expect(fs.statSync(archive).size).toBeGreaterThan(LARGE);
  return archive;
}

const archive = largeTar();

async function digestsOf(file: string, feedSize?: number): Promise<unknown> {
  const fd = fs.openSync(file, "r");
  const d = passDigests(fd);
  try {
    const bytes = fs.readFileSync(file);
    d.update(bytes);
    return await d.finish(feedSize ?? bytes.length);
  } finally {
    d.stop();
    fs.closeSync(fd);
  }
}

describe("passDigests", () => {
  test("a large file (SHA-256 on its own thread) and a small one: what md5sum and sha256sum say", async () => {
    const small = path.join(root, "small");
    fs.writeFileSync(small, randomBytes(seeded(7), 100_000));
    expect(await digestsOf(archive)).toEqual(coreutils(archive));
    expect(await digestsOf(small)).toEqual(coreutils(small));
  }, T);

  test("bytes the thread hashed that the pass did not are a problem, not digests", async () => {
    const got = (await digestsOf(archive, fs.statSync(archive).size - 1)) as { problem?: string };
    expect(got.problem).toMatch(/changed while it was being read/);
  }, T);
});

describe("sha256Here (what the thread runs, and this thread when the thread cannot)", () => {
  test("sha256sum's digest and the bytes read; a descriptor that cannot be read gives its error", () => {
    const fd = fs.openSync(archive, "r");
    try {
      expect(sha256Here(fd)).toEqual({ size: fs.statSync(archive).size, sha256: coreutils(archive).sha256 });
    } finally {
      fs.closeSync(fd);
    }
    const dir = fs.openSync(root, "r");
    try {
      const got = sha256Here(dir) as { size: number; error?: string };
      expect(got.size).toBe(0);
      expect(got.error).toMatch(/EISDIR|directory/i);
    } finally {
      fs.closeSync(dir);
    }
  }, T);
});

/** What a pass gives: both of coreutils' digests, or (`sha256Only`) sha256sum's alone. */
function expected(file: string, sha256Only: boolean): { md5?: string; sha256: string } {
  const { md5, sha256 } = coreutils(file);
  return sha256Only ? { sha256 } : { md5, sha256 };
}

/** A whole pass over `file`: its digests must be the file's, its three files listed. */
async function wholePass(file: string, worker: boolean, sha256Only = false): Promise<void> {
  const fd = fs.openSync(file, "r");
  try {
    const entries: string[] = [];
    const r = await archivePass(fd, { worker, sha256Only, onEntry: (e) => entries.push(e.name) });
    const { md5, sha256, size } = r;
    expect({ ...(md5 === undefined ? {} : { md5 }), sha256, size }).toEqual({ ...expected(file, sha256Only), size: fs.statSync(file).size });
    expect(entries.filter((n) => /f\d$/.test(n)).length).toBe(3);
  } finally {
    fs.closeSync(fd);
  }
}

/** `file` cut at LARGE + 12,345 bytes: damaged, with the digests of the bytes the cut file holds. */
async function cutPass(file: string, worker: boolean, sha256Only = false): Promise<ArchiveDamage> {
  const cut = path.join(root, `cut-${path.basename(file)}`);
  fs.writeFileSync(cut, fs.readFileSync(file).subarray(0, LARGE + 12_345));
  const fd = fs.openSync(cut, "r");
  try {
    const e = await archivePass(fd, { worker, sha256Only, onEntry: () => {} }).then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(ArchiveDamage);
    expect((e as ArchiveDamage).digests).toEqual({ size: LARGE + 12_345, ...expected(cut, sha256Only) });
    return e as ArchiveDamage;
  } finally {
    fs.closeSync(fd);
  }
}

describe("archivePass of a large uncompressed archive", () => {
  test("whole: the digests are the file's", () => wholePass(archive, false), T);

  test("cut short: damaged, with the digests of the bytes the file holds", async () => {
    expect((await cutPass(archive, false)).message).toMatch(/truncated/);
  }, T);
});

describe("archivePass of a large gzip archive decompressed on a worker (both digests on the other thread)", () => {
  /** The large tar through gzip: random bytes, so the archive stays larger than LARGE. */
  const gz = path.join(root, "large.tar.gz");
  const made = Bun.spawnSync(["sh", "-c", 'exec "$0" -1 -c "$1" > "$2"', requireTool("gzip"), archive, gz], { stdin: "ignore" });

  test("the digests need nothing of this thread and are md5sum's and sha256sum's", async () => {
    expect({ exit: made.exitCode, large: fs.statSync(gz).size > LARGE }).toEqual({ exit: 0, large: true });
    const fd = fs.openSync(gz, "r");
    const d = passDigests(fd, true);
    try {
      expect(d.readsItself).toBe(true);
    } finally {
      d.stop();
      fs.closeSync(fd);
    }
    await wholePass(gz, true);
  }, T);

  test("cut short: damaged, with the digests of the bytes the file holds", () => cutPass(gz, true), T);

  test("the SHA-256 alone when asked (a restore whose file list vouches for the MD5): sha256sum's, no MD5", async () => {
    await wholePass(gz, true, true);
    await cutPass(gz, true, true);
  }, T);
});

describe("the SHA-256 alone of an archive this thread reads", () => {
  test("large (on the other thread, which reads the file itself) and small: sha256sum's, no MD5", async () => {
    const fd = fs.openSync(archive, "r");
    const d = passDigests(fd, false, false);
    try {
      expect(d.readsItself).toBe(true);
    } finally {
      d.stop();
      fs.closeSync(fd);
    }
    await wholePass(archive, false, true);
    await cutPass(archive, false, true);
    const small = path.join(root, "small.tar");
    fs.writeFileSync(path.join(root, "one"), randomBytes(seeded(8), 50_000));
    const r = Bun.spawnSync([requireTool("tar"), "-cf", small, "-C", root, "one"], { stdin: "ignore" });
    expect(r.exitCode).toBe(0);
    const sfd = fs.openSync(small, "r");
    try {
      const got = await archivePass(sfd, { sha256Only: true, onEntry: () => {} });
      expect({ md5: got.md5, sha256: got.sha256 }).toEqual({ md5: undefined, sha256: coreutils(small).sha256 });
    } finally {
      fs.closeSync(sfd);
    }
  }, T);
});
