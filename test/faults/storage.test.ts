/**
 * Storage faults, for real: the backup directory and the client's destination on tiny tmpfs
 * mounts filled to the last byte before, during and after the archive is written or pulled;
 * the same file systems remounted read-only; source files that vanish, turn into a FIFO or a
 * directory, or become unreadable while the archive is written; sources that are a FIFO or a
 * device node. Every failure must end with a code of its own, the good copy must survive, and
 * once the fault is gone the next run ends golden and leaves nothing behind.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { ROOT, shootArgv, startShoot } from "../helpers/cli.ts";
import { serverFixture, statusRecords, tempDir, type ServerFixture } from "../helpers/fixture.ts";
import {
  PullLane, bounded, boundedExit, caseSeed, checkArchives, checkGoodKept, expectNamed, faultFile, faultTmpfs,
  goldenWrapper, injected, mutateTree, rsyncPulling, scaled, seedTree, serverLife, serverPidOf, snapshotGood,
  tempsUnder, waitFor, watchFile, type FaultMount,
} from "../helpers/faults.ts";
import { seeded } from "../helpers/random.ts";
import { requireTool } from "../helpers/tools.ts";
import type { CodeName } from "../../src/core/common/codes.ts";

faultFile(import.meta.path);

/** A server run on a full or read-only file system may only end like this. */
const SERVER_STORAGE: CodeName[] = ["NO_SPACE", "BACKUP_DIR_UNUSABLE", "ARCHIVE_FAILED", "CHECKSUM_FAILED", "ROTATION_FAILED"];
const CLIENT_STORAGE: CodeName[] = ["CLIENT_NO_SPACE", "DEST_UNUSABLE", "PULL_FAILED", "STATUS_PULL_FAILED"];

const mounts: FaultMount[] = [];
const fixtures: ServerFixture[] = [];
let base: string;
beforeAll(() => {
  base = tempDir("shoot-fault-storage-");
});
afterAll(() => {
  for (const m of mounts.splice(0)) m.unmount();
  for (const fx of fixtures.splice(0)) fx.cleanup();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

function mount(size: string, at?: string): FaultMount {
  const m = faultTmpfs(size, at);
  mounts.push(m);
  return m;
}

/** A server whose backup_dir is a tmpfs of `size`. */
function serverOnTmpfs(size: string, rand: () => number): { fx: ServerFixture; fs: FaultMount } {
  const fx0 = serverFixture();
  fixtures.push(fx0);
  const m = mount(size);
  const fx = { ...fx0, backup: m.dir };
  fs.writeFileSync(fx.config, `[server]\nname = "test"\nsources = [${JSON.stringify(fx.src)}]\nbackup_dir = ${JSON.stringify(m.dir)}\nreserve = "0"\nkeep = 2\n`);
  seedTree(fx.src, rand, 60, 600 * 1024);
  return { fx, fs: m };
}

function fillers(m: FaultMount): string[] {
  return fs.readdirSync(m.dir).filter((n) => n.startsWith("filler-")).map((n) => path.join(m.dir, n));
}

function freeSpace(m: FaultMount): void {
  for (const f of fillers(m)) fs.rmSync(f);
}

/** A wrapper run that must fail with a storage code; returns its exit code. */
async function failingWrapper(fx: ServerFixture, context: string): Promise<number> {
  const r = await bounded(["wrapper", "--config", fx.config, "--quiet"]);
  expectNamed(r.code, SERVER_STORAGE, context);
  expect({ context, failed: r.code !== 0 }).toEqual({ context, failed: true });
  return r.code;
}

describe("the backup directory's file system", () => {
  test("full before the run: almost full is NO_SPACE; full to the last byte is a storage code too; the archive held survives", async () => {
    const rand = seeded(caseSeed("server disk full before"));
    const { fx, fs: m } = serverOnTmpfs("3m", rand);
    await goldenWrapper(fx, "first run");
    mutateTree(fx.src, rand, "change");
    const good = snapshotGood(fx.backup);
    // room for the status file and the lock, not for the archive
    const filler = m.fill();
    fs.truncateSync(filler, fs.statSync(filler).size - 64 * 1024);
    injected("disk full (server, before)");
    expect(await failingWrapper(fx, "almost full")).toBe(23);
    expect(statusRecords(path.join(fx.backup, "server.status")).at(-1)!.name).toBe("NO_SPACE");
    checkGoodKept(good, "almost full");
    m.fill();
    injected("disk full (server, before)");
    const last = await bounded(["wrapper", "--config", fx.config, "--quiet"]);
    expectNamed(last.code, SERVER_STORAGE, "full to the last byte");
    console.log(`backup_dir full to the last byte: exit ${last.code}: ${last.stdout.split("\n").find((l) => l.startsWith("What happened")) ?? last.stderr}`);
    expect(last.stdout + last.stderr).toMatch(/ENOSPC|no space/i);
    checkGoodKept(good, "full to the last byte");
    checkArchives(fx.backup, "full to the last byte");
    freeSpace(m);
    await goldenWrapper(fx, "space freed");
  }, 60_000);

  test(`filled at ${scaled(6)} random moments of a run (during and after the archive is written)`, async () => {
    const rand = seeded(caseSeed("server disk full during"));
    const { fx, fs: m } = serverOnTmpfs("4m", rand);
    await goldenWrapper(fx, "first run");
    const window = await serverLife(fx, rand);
    const codes: Record<string, number> = {};
    for (let i = 0; i < scaled(6); i++) {
      const context = `disk full moment ${i}`;
      mutateTree(fx.src, rand, context);
      const good = snapshotGood(fx.backup);
      const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
      await serverPidOf(fx.backup, w.pid);
      await Bun.sleep(rand() * window);
      m.fill();
      injected("disk full (server, during/after)");
      const code = await boundedExit(w, context);
      codes[code] = (codes[code] ?? 0) + 1;
      expectNamed(code, SERVER_STORAGE, context);
      checkGoodKept(good, context);
      checkArchives(fx.backup, context);
      freeSpace(m);
      await goldenWrapper(fx, `${context}: space freed`);
    }
    console.log(`backup_dir filled mid-run: exit codes ${JSON.stringify(codes)}`);
  }, 120_000);

  test("filled the moment the new archive is in place: it stands, verified, and the run ends with a code", async () => {
    const rand = seeded(caseSeed("server disk full after"));
    const { fx, fs: m } = serverOnTmpfs("4m", rand);
    await goldenWrapper(fx, "first run");
    const statusFile = path.join(fx.backup, "server.status");
    for (let i = 0; i < scaled(2); i++) {
      const context = `full after the archive ${i}`;
      mutateTree(fx.src, rand, context);
      const good = snapshotGood(fx.backup);
      const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
      const written = await watchFile(statusFile, (text) => (text.includes('"ARCHIVE_WRITTEN"') && text.includes(`"pid":${w.pid},`) ? true : undefined), () => w.exitCode !== null, 20_000, 1);
      expect({ context, written }).toEqual({ context, written: true });
      m.fill();
      injected("disk full (server, after the archive)");
      const code = await boundedExit(w, context);
      expectNamed(code, SERVER_STORAGE, context);
      console.log(`${context}: exit ${code}, ${statusRecords(statusFile).at(-1)?.name}`);
      checkGoodKept(good, context);
      checkArchives(fx.backup, context);
      freeSpace(m);
      await goldenWrapper(fx, `${context}: space freed`);
    }
  }, 60_000);

  test("read-only: before the run, and remounted read-only while it runs", async () => {
    const rand = seeded(caseSeed("server read-only"));
    const { fx, fs: m } = serverOnTmpfs("4m", rand);
    await goldenWrapper(fx, "first run");
    const good = snapshotGood(fx.backup);
    mutateTree(fx.src, rand, "change");
    m.remount("ro");
    injected("read-only file system (server)");
    expect(await failingWrapper(fx, "read-only before")).toBe(22);
    checkGoodKept(good, "read-only before");
    m.remount("rw");
    await goldenWrapper(fx, "writable again");

    // mid-run: the kernel refuses to remount while a file is open for writing, so keep trying
    const window = await serverLife(fx, rand);
    let remounted = 0;
    for (let i = 0; i < scaled(3); i++) {
      const context = `read-only mid-run ${i}`;
      mutateTree(fx.src, rand, context);
      const before = snapshotGood(fx.backup);
      const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
      await serverPidOf(fx.backup, w.pid);
      await Bun.sleep(rand() * window);
      let done = false;
      const exited = w.exited.then(() => (done = true));
      while (!done) {
        if (Bun.spawnSync(["mount", "-o", "remount,ro", m.dir]).exitCode === 0) {
          remounted++;
          injected("read-only file system (server)");
          break;
        }
        await Bun.sleep(5);
      }
      await exited;
      const code = await boundedExit(w, context);
      expectNamed(code, SERVER_STORAGE, context);
      checkGoodKept(before, context);
      checkArchives(fx.backup, context, {});
      m.remount("rw");
      await goldenWrapper(fx, `${context}: writable again`);
    }
    console.log(`read-only mid-run: remounted ${remounted} of ${scaled(3)} times before the run ended`);

    // read-only the moment no file is open any more, just before a run lets go of its lock: the
    // run ends as it ended (here a process that holds the lock as a run does, then exits)
    const holder = path.join(fx.root, "hold-lock.ts");
    fs.writeFileSync(holder, [
      `import { acquireLock } from ${JSON.stringify(path.join(ROOT, "src/core/state/lock.ts"))};`,
      "const lock = acquireLock(process.argv[2]!, \"wrapper\");",
      "console.log(\"held\");",
      "for await (const _ of Bun.stdin.stream()) break;",
      "lock.release();",
      "console.log(\"released\");",
    ].join("\n"));
    const p = Bun.spawn([process.execPath, holder, fx.backup], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const reader = p.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("held\n");
    m.remount("ro");
    injected("read-only file system (server)");
    p.stdin.write("go\n");
    p.stdin.end();
    expect(await boundedExit(p, "releasing the lock on a read-only file system")).toBe(0);
    m.remount("rw");
    await goldenWrapper(fx, "a lock left on a file system gone read-only is taken over");
  }, 90_000);
});

describe("the client's destination file system", () => {
  test(`full before, and filled at ${scaled(5)} random moments of a pull; read-only`, async () => {
    const rand = seeded(caseSeed("client disk"));
    const lane = new PullLane(base, "full", rand, { bwlimit: "4MiB" });
    const m = mount("2m", lane.dest);
    await lane.publish(600 * 1024);
    await lane.normalRun("first pull");

    await lane.publish(600 * 1024);
    let good = snapshotGood(lane.copies);
    m.fill();
    injected("disk full (client, before)");
    const full = await lane.pull();
    expectNamed(full.code, CLIENT_STORAGE, "full before");
    expect(full.code).not.toBe(0);
    console.log(`dest_dir full to the last byte: exit ${full.code}: ${full.outcome.sources?.[0]?.message ?? full.outcome.message}`);
    lane.check("full before", true);
    checkGoodKept(good, "full before");
    freeSpace(m);
    await lane.normalRun("space freed");

    const codes: Record<string, number> = {};
    for (let i = 0; i < scaled(5); i++) {
      const context = `client disk full moment ${i}`;
      const info = await lane.publish(600 * 1024);
      good = snapshotGood(lane.copies);
      const proc = startShoot(["client", "--config", lane.config, "--json"]);
      await rsyncPulling(proc, lane.dest, info.file);
      await Bun.sleep(rand() * 200);
      m.fill();
      injected("disk full (client, during/after)");
      const code = await boundedExit(proc, context);
      codes[code] = (codes[code] ?? 0) + 1;
      expectNamed(code, CLIENT_STORAGE, `${context}: ${lastFinalMessage(lane.dest)}`);
      lane.check(context, true);
      checkGoodKept(good, context);
      freeSpace(m);
      await lane.normalRun(`${context}: space freed`);
    }
    console.log(`dest_dir filled mid-pull: exit codes ${JSON.stringify(codes)}`);

    // full the moment the copy is verified and in place: it stays a good copy
    const after = await lane.publish(600 * 1024);
    const proc = startShoot(["client", "--config", lane.config, "--json"]);
    const clientStatus = path.join(lane.dest, "client.status");
    const pulled = await watchFile(clientStatus, (text) => (text.includes('"PULLED"') && text.includes(after.file) ? true : undefined), () => proc.exitCode !== null, 20_000, 1);
    expect(pulled).toBe(true);
    m.fill();
    injected("disk full (client, after the copy)");
    const afterCode = await boundedExit(proc, "full after the copy");
    expectNamed(afterCode, CLIENT_STORAGE, "full after the copy");
    console.log(`dest_dir full after the copy: exit ${afterCode}`);
    lane.check("full after the copy", false);
    expect(snapshotGood(lane.copies)?.name).toBe(after.file);
    freeSpace(m);
    await lane.normalRun("full after the copy: space freed");

    await lane.publish(600 * 1024);
    good = snapshotGood(lane.copies);
    m.remount("ro");
    injected("read-only file system (client)");
    const ro = await lane.pull();
    expect({ code: ro.code, message: ro.outcome.message }).toMatchObject({ code: 52 });
    checkGoodKept(good, "read-only");
    m.remount("rw");
    await lane.normalRun("writable again");
  }, 120_000);
});

describe("the client's destination file system, nearly full", () => {
  test("data kept from an interrupted pull does not block the next pull on a nearly full disk", async () => {
    const rand = seeded(caseSeed("client partial on a full disk"));
    const lane = new PullLane(base, "tight", rand, { bwlimit: "1MiB" });
    mount("2m", lane.dest);
    for (const what of ["first", "second"]) {
      await lane.publish(600 * 1024);
      await lane.normalRun(`${what} pull`);
    }
    // a third pull stopped half-way kept its data for resuming (rsync leaves it in the partial directory)
    const third = await lane.publish(600 * 1024);
    const partialDir = path.join(lane.copies, ".shoot-tmp-pull", ".shoot-partial");
    fs.mkdirSync(partialDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(partialDir, third.file), fs.readFileSync(path.join(lane.backup, third.file)).subarray(0, 400 * 1024), { mode: 0o600 });
    injected("partial transfer on a nearly full disk");
    // the server has moved on; the partial of the third archive is all that stands in the way
    await lane.publish(600 * 1024);
    const good = snapshotGood(lane.copies);
    await lane.normalRun("the next pull");
    checkGoodKept(good, "the next pull");
  }, 60_000);
});

describe("sources that change under the archive", () => {
  test(`files vanish, turn into a FIFO or a directory, or change size while the archive is written (${scaled(4)} runs)`, async () => {
    requireTool("tar");
    const rand = seeded(caseSeed("sources change mid-archive"));
    const fx = serverFixture("keep = 2");
    fixtures.push(fx);
    seedTree(fx.src, rand, 400, 2 * 1024 * 1024);
    await goldenWrapper(fx, "first run");
    const window = await serverLife(fx, rand);
    const warned: Record<string, number> = {};
    for (let i = 0; i < scaled(4); i++) {
      const context = `sources change ${i}`;
      const good = snapshotGood(fx.backup);
      mutateTree(fx.src, rand, context);
      const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
      await serverPidOf(fx.backup, w.pid);
      await Bun.sleep(rand() * window);
      // a burst of trouble across the tree while the server reads it
      const files = fs.readdirSync(fx.src, { recursive: true }).map(String).filter((p) => p.endsWith(".txt"));
      for (let k = 0; k < 12 && files.length; k++) {
        const rel = files.splice(Math.floor(rand() * files.length), 1)[0]!;
        const p = path.join(fx.src, rel);
        const how = Math.floor(rand() * 4);
        try {
          if (how === 0) fs.rmSync(p);
          else if (how === 1) {
            fs.rmSync(p);
            Bun.spawnSync(["mkfifo", p]);
          } else if (how === 2) {
            fs.rmSync(p);
            fs.mkdirSync(p);
          } else fs.appendFileSync(p, "grown while the archive was written\n".repeat(100));
          injected("source changed mid-archive");
        } catch {
          // a file the tree no longer has: nothing to break
        }
      }
      const code = await boundedExit(w, context);
      expect({ context, code }).toEqual({ context, code: 0 });
      const recs = statusRecords(path.join(fx.backup, "server.status"));
      for (const r of recs) if (r.code >= 80 && r.code <= 83) warned[r.name] = (warned[r.name] ?? 0) + 1;
      const archive = recs.at(-1)!.archive.file as string;
      checkArchives(fx.backup, context);
      checkGoodKept(good, context);
      // the archive is whole: tar reads it to the end
      const t = Bun.spawnSync(["tar", "-tzf", path.join(fx.backup, archive)]);
      expect({ context, tar: t.exitCode, err: t.stderr.toString() }).toEqual({ context, tar: 0, err: "" });
      // the FIFOs would make the next run skip them; turn the tree back into files
      for (const rel of fs.readdirSync(fx.src, { recursive: true }).map(String)) {
        const p = path.join(fx.src, rel);
        const st = fs.lstatSync(p, { throwIfNoEntry: false });
        if (st?.isFIFO()) fs.rmSync(p);
      }
      await goldenWrapper(fx, `${context}: the next run`);
    }
    console.log(`warnings recorded while the tree changed: ${JSON.stringify(warned)}`);
    expect(Object.keys(warned).length).toBeGreaterThan(0);
  }, 120_000);

  test("a file made unreadable while the archive is written (server run as an unprivileged user): FILE_UNREADABLE, the rest archived", async () => {
    const setpriv = requireTool("setpriv");
    const rand = seeded(caseSeed("unreadable mid-archive"));
    const fx = serverFixture("keep = 2");
    fixtures.push(fx);
    seedTree(fx.src, rand, 300, 3 * 1024 * 1024);
    Bun.spawnSync(["chown", "-R", "nobody:nogroup", fx.root]);
    fs.chmodSync(fx.root, 0o755);
    const asNobody = (args: string[]) =>
      Bun.spawn([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", ...shootArgv(), ...args], { env: { ...process.env, HOME: fx.root }, cwd: fx.root, stdout: "pipe", stderr: "pipe" });
    expect(await boundedExit(asNobody(["wrapper", "--config", fx.config, "--quiet"]), "first run")).toBe(0);
    const good = snapshotGood(fx.backup);
    mutateTree(fx.src, rand, "change");
    const w = asNobody(["wrapper", "--config", fx.config, "--quiet"]);
    await serverPidOf(fx.backup, w.pid);
    // every text file unreadable as soon as the archive step began: the ones not yet read are left out
    await waitFor(() => (tempsUnder(fx.backup).length ? true : undefined), 20_000, 2);
    let made = 0;
    for (const rel of fs.readdirSync(fx.src, { recursive: true }).map(String)) {
      if (rel.endsWith(".txt")) {
        fs.chmodSync(path.join(fx.src, rel), 0o000);
        made++;
      }
    }
    injected("source unreadable mid-archive", 1);
    expect(await boundedExit(w, "unreadable")).toBe(0);
    const recs = statusRecords(path.join(fx.backup, "server.status"));
    const unreadable = recs.filter((r) => r.name === "FILE_UNREADABLE").length;
    console.log(`made ${made} files unreadable mid-archive: ${unreadable} FILE_UNREADABLE warnings`);
    expect(recs.at(-1)!.code).toBe(4);
    checkArchives(fx.backup, "unreadable");
    checkGoodKept(good, "unreadable");
    Bun.spawnSync(["chmod", "-R", "u+r", fx.src]);
    expect(await boundedExit(asNobody(["wrapper", "--config", fx.config, "--quiet"]), "readable again")).toBe(0);
    expect(tempsUnder(fx.backup)).toEqual([]);
  }, 90_000);

  test("sources that are a FIFO, a character device and a block device: skipped with warnings, never read, never a hang", async () => {
    const fx = serverFixture();
    fixtures.push(fx);
    const fifo = path.join(fx.root, "fifo");
    const chr = path.join(fx.root, "zero");
    const blk = path.join(fx.root, "loop");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    expect(Bun.spawnSync(["mknod", chr, "c", "1", "5"]).exitCode).toBe(0); // /dev/zero: reading it never ends
    expect(Bun.spawnSync(["mknod", blk, "b", "7", "0"]).exitCode).toBe(0);
    Bun.spawnSync(["mknod", path.join(fx.src, "etc/zero"), "c", "1", "5"]);
    fs.writeFileSync(fx.config, `[server]\nname = "test"\nsources = [${[fx.src, fifo, chr, blk].map((s) => JSON.stringify(s)).join(", ")}]\nbackup_dir = ${JSON.stringify(fx.backup)}\nreserve = "0"\n`);
    injected("special file as a source", 4);
    const r = await bounded(["wrapper", "--config", fx.config, "--quiet"], { timeoutMs: 30_000 });
    expect(r.code).toBe(0);
    const skipped = statusRecords(path.join(fx.backup, "server.status")).filter((x) => x.name === "SPECIAL_SKIPPED").map((x) => x.msg as string);
    for (const p of [fifo, chr, blk, path.join(fx.src, "etc/zero")]) expect(skipped.some((m) => m.startsWith(`${p}:`))).toBe(true);
    checkArchives(fx.backup, "special sources");
  }, 60_000);
});

/** What the client's last run said of itself, so that a code no test expected comes with its reason. */
function lastFinalMessage(dest: string): string {
  try {
    const records = fs.readFileSync(path.join(dest, "client.status"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { code: number; msg: string });
    return records.filter((r) => r.code >= 10 && r.code < 60).map((r) => r.msg).join(" / ");
  } catch (e) {
    return `client.status unreadable: ${String(e)}`;
  }
}
