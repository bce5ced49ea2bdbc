/**
 * The readers on damaged archives and full disks, case by case: a header byte changed in an
 * uncompressed archive whose .md5 matches (once an internal error, EBADF on close); verify
 * --deep over several archives with a damaged one among them; a restore that does not fit the
 * target, and one whose target fills up while it writes; an archive changed between a restore's
 * passes.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fixture.ts";
import { mountTmpfs, type Mount } from "../helpers/tmpfs.ts";
import * as B from "../helpers/tar-builder.ts";
import { runRestore } from "../../src/core/restore/restore.ts";
import { describeArchive } from "../../src/core/restore/verify.ts";
import type { Progress } from "../../src/core/report/progress.ts";

let dir: string;
const mounts: Mount[] = [];

beforeAll(() => {
  dir = tempDir("shoot-readers-");
});
afterAll(() => {
  for (const m of mounts) m.unmount();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** An archive file with a .md5 that matches it. */
function write(name: string, bytes: Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  fs.writeFileSync(`${file}.md5`, `${new Bun.CryptoHasher("md5").update(bytes).digest("hex")}  ${name}\n`);
  return file;
}

const plain = () => B.tar(B.dir("d"), B.file("d/a", "alpha\n"), B.file("d/b", "x".repeat(3000)), B.file("d/c", "charlie\n"));

test("one header byte changed in an uncompressed archive whose .md5 matches: restore, list and verify --deep name the damage and its byte", async () => {
  const t = plain();
  t[512 + 3]! ^= 0x01; // in the name of d/a's header, the block at byte 512 (its checksum no longer matches)
  const file = write("header.tar", t);
  const to = path.join(dir, "header-out");
  const r = await runShoot(["restore", file, "--to", to]);
  expect({ code: r.code, internal: /internal error|EBADF/.test(r.stderr) }).toEqual({ code: 95, internal: false });
  expect(r.stderr).toContain("the tar stream (the file itself) is damaged at byte 512: header checksum mismatch; nothing was restored");
  expect(fs.existsSync(to)).toBe(false);
  const l = await runShoot(["list", file]);
  expect({ code: l.code, out: l.stdout }).toEqual({ code: 95, out: "" });
  expect(l.stderr).toContain("at byte 512");
  const v = await runShoot(["verify", "--deep", file]);
  expect(v.code).toBe(95);
  expect(v.stdout).toContain("damaged at byte 512: header checksum mismatch (after 1 entry)");
}, 60_000);

test("verify --deep over several archives checks and reports each one, a damaged one among them", async () => {
  const good = plain();
  const zstd = B.compress(good, "zstd");
  const zstdCut = zstd.subarray(0, zstd.length - 9);
  const files = [
    write("one.tar.gz", B.compress(good, "gzip")),
    write("two.tar.zst", zstdCut),
    write("three.tar", B.concat([good.subarray(0, 1536), good.subarray(2048)])),
    write("four.tar.gz", B.compress(good, "gzip")),
  ];
  const flipped = B.compress(good, "gzip");
  flipped[flipped.length - 5]! ^= 0xff; // in its length trailer
  files.push(write("five.tar.gz", flipped));
  const v = await runShoot(["verify", "--deep", ...files]);
  expect(v.code).toBe(95);
  const lines = v.stdout.split("\n");
  const verdict = (name: string) => lines.find((l) => l.includes(`: ${name} (`))?.split(" ")[0];
  expect(["one.tar.gz", "two.tar.zst", "three.tar", "four.tar.gz", "five.tar.gz"].map(verdict)).toEqual(["OK", "FAILED", "FAILED", "OK", "FAILED"]);
  expect(v.stdout).toContain(`the archive is truncated: the zstd frame that starts at byte 0 ends early, at byte ${zstdCut.length} of the file (its end)`);
  expect(v.stdout).toMatch(/the tar stream \(the file itself\) is damaged at byte 1536: header checksum mismatch/);
  expect(v.stdout).toMatch(/the gzip stream does not decode at byte \d+ of the file \(in the 32 bytes from there\): incorrect data check/);
  expect(v.stdout).toContain("3 of 5 archive(s) failed verification: two.tar.zst, three.tar, five.tar.gz");
}, 60_000);

test("a restore that does not fit the target's free space is refused before anything is written", async () => {
  const m = mountTmpfs("2m");
  mounts.push(m);
  const big = new Uint8Array(1024 * 1024);
  const file = write("too-big.tar.gz", B.compress(B.tar(B.file("a", big), B.file("b", big), B.file("c", big)), "gzip"));
  const held = describeArchive(file, "file", "")!;
  const r = await runRestore(held, { to: path.join(m.dir, "t") }).catch((e: unknown) => e as Error & { code: number });
  expect((r as { code: number }).code).toBe(98);
  expect((r as Error).message).toMatch(/restoring it would take 3\.0 MiB by \/c, more than the [\d.]+ [KM]iB free on the file system of .*; nothing was restored/);
  expect(fs.readdirSync(m.dir)).toEqual([]);
}, 60_000);

/** Progress for a restore that fills the mount as the write pass starts, leaving `leave` bytes free. */
function fillWhenWriting(m: Mount, leave: number): (label: string) => Progress {
  const quiet: Progress = { update() {}, finish() {} } as unknown as Progress;
  return (label) => {
    if (label === "restoring") {
      const free = fs.statfsSync(m.dir).bavail * fs.statfsSync(m.dir).bsize;
      fs.writeFileSync(path.join(m.dir, "filler"), new Uint8Array(free - leave));
    }
    return quiet;
  };
}

test("a target that fills up while the restore writes: it stops there with RESTORE_NO_SPACE, the file it was writing removed, nothing after it tried", async () => {
  const m = mountTmpfs("4m");
  mounts.push(m);
  const mib = new Uint8Array(1024 * 1024).fill(7);
  const file = write("fills.tar", B.tar(B.file("first", "first\n"), B.file("big", mib), ...Array.from({ length: 20 }, (_, i) => B.file(`after${i}`, "after\n"))));
  const held = describeArchive(file, "file", "")!;
  const to = path.join(m.dir, "t");
  // the archive fits when it is checked; just before the writing starts, something else takes the space
  const r = await runRestore(held, { to, progressFor: fillWhenWriting(m, 256 * 1024) });
  expect(r.code).toBe(98);
  expect(r.message).toMatch(/is full \(ENOSPC\) at \/big, after 1 entries: the restore stopped there; big was removed/);
  expect(fs.readdirSync(to).sort()).toEqual(["first"]);
  expect(r.failed).toEqual([]);
}, 60_000);

test("a target that fills up while two writer threads make files in 20 directories: every writer stops, no file is left part written", async () => {
  const m = mountTmpfs("8m");
  mounts.push(m);
  const content = (d: number, f: number) => new Uint8Array(64 * 1024).fill(d * 8 + f + 1);
  const entries = Array.from({ length: 20 }, (_, d) => [B.dir(`d${d}`), ...Array.from({ length: 5 }, (_, f) => B.file(`d${d}/f${f}`, content(d, f)))]).flat();
  const file = write("fills-many.tar", B.tar(...entries));
  const held = describeArchive(file, "file", "")!;
  const to = path.join(m.dir, "t");
  const r = await runRestore(held, { to, progressFor: fillWhenWriting(m, 1024 * 1024) });
  expect(r.code).toBe(98);
  const at = /is full \(ENOSPC\) at \/(d\d+\/f\d), after (\d+) entries: the restore stopped there; \1 was removed/.exec(r.message);
  expect(at).not.toBeNull();
  expect(r.failed).toEqual([]);
  // what is on the disk is whole: each file as the archive holds it, the one named not there
  let files = 0;
  for (let d = 0; d < 20; d++) {
    for (let f = 0; f < 5; f++) {
      const p = path.join(to, `d${d}`, `f${f}`);
      if (!fs.existsSync(p)) continue;
      files++;
      expect(fs.readFileSync(p).equals(Buffer.from(content(d, f)))).toBe(true);
    }
  }
  expect(fs.existsSync(path.join(to, at![1]!))).toBe(false);
  expect(files).toBeGreaterThan(0);
  expect(files).toBeLessThan(100);
  // the count names every entry made: the files on the disk and the directories made before the stop
  expect(Number(at![2])).toBeGreaterThanOrEqual(files);
}, 60_000);

/**
 * A restore whose archive gets one content byte changed (same size, headers intact): once the
 * check has read it ("checked"), or as the write pass starts ("writing").
 */
async function changedAt(when: "checked" | "writing", name: string, asStream = false) {
  const file = write(name, B.tar(B.file("a", "alpha\n"), B.file("b", "bravo\n")));
  const held = describeArchive(file, "file", "")!;
  const source = asStream ? { ...held, open: async () => fs.createReadStream(file) } : held;
  const change = () => {
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, "A", 512);
    fs.closeSync(fd);
  };
  const progressFor = (label: string): Progress => {
    if (label === "restoring" && when === "writing") change();
    const finish = label === "checking" && when === "checked" ? change : () => {};
    return { update() {}, finish } as unknown as Progress;
  };
  const to = path.join(dir, `to-${name}`);
  const r = await runRestore(source, { to, progressFor }).catch((e: unknown) => e as Error & { code: number });
  return { r, to };
}

for (const asStream of [false, true]) {
  const what = asStream ? "read as a stream" : "a file";
  test(`an archive (${what}) changed once it was checked: refused, nothing restored`, async () => {
    const { r, to } = await changedAt("checked", `changed-plan-${asStream}.tar`, asStream);
    expect((r as { code: number }).code).toBe(90);
    expect((r as Error).message).toMatch(/the archive changed while it was being read; nothing was restored/);
    expect(fs.existsSync(to) ? fs.readdirSync(to) : []).toEqual([]);
  }, 60_000);

  test(`an archive (${what}) changed before the write pass: the restore fails and says so`, async () => {
    const { r } = await changedAt("writing", `changed-write-${asStream}.tar`, asStream);
    expect((r as { code: number }).code).not.toBe(0);
    const whys = (r as { failed: { why: string }[] }).failed.map((f) => f.why);
    expect(whys).toContain("the archive changed while it was being restored");
  }, 60_000);
}

for (const c of ["gzip", "zstd"] as const) {
  test(`a ${c} archive whose compressed bytes change before the write pass (on a thread): it stops, says so`, async () => {
    const noise = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * i * 7919 + (i >> 3) * 31) & 0xff);
    const files = Array.from({ length: 40 }, (_, i) => B.file(`f${i}`, noise(20_000 + i)));
    const bytes = B.compress(B.tar(...files), c);
    const file = write(`changed-${c}.tar.${c === "gzip" ? "gz" : "zst"}`, bytes);
    const progressFor = (label: string): Progress => {
      if (label === "restoring") {
        const fd = fs.openSync(file, "r+");
        const at = Math.floor(bytes.length / 2);
        fs.writeSync(fd, new Uint8Array(1024).fill(0x55), 0, 1024, at);
        fs.closeSync(fd);
      }
      return { update() {}, finish() {} } as unknown as Progress;
    };
    const held = describeArchive(file, "file", "")!;
    const r = await runRestore(held, { to: path.join(dir, `to-changed-${c}`), progressFor });
    expect(r.code).toBe(94);
    expect(r.message).toMatch(/failed part way|changed while it was being restored/);
  }, 60_000);
}
