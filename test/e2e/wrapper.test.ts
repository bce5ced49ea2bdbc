import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runShoot, startShoot } from "../helpers/cli.ts";
import { archivesIn, serverFixture, statusRecords, type ServerFixture } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";

const T = 90_000;
let fx: ServerFixture;
afterEach(() => fx?.cleanup());

const statusFile = () => path.join(fx.backup, "server.status");
const finalOf = () => statusRecords(statusFile()).at(-1)!;
const temps = () => fs.readdirSync(fx.backup).filter((n) => n.startsWith(".shoot-tmp"));

/** Incompressible data makes the archive step last long enough to be caught in the act. */
function addBulk(mib: number): void {
  const block = new Uint8Array(1024 * 1024);
  const fd = fs.openSync(path.join(fx.src, "bulk.bin"), "w");
  for (let i = 0; i < mib; i++) fs.writeSync(fd, fillRandom(block));
  fs.closeSync(fd);
}

function fillRandom(b: Uint8Array): Uint8Array {
  for (let o = 0; o < b.length; o += 65536) crypto.getRandomValues(b.subarray(o, o + 65536));
  return b;
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const v = probe();
    if (v !== undefined) return v;
    await Bun.sleep(5);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The pid of the server a wrapper started; `wrapperPid` tells this run's records from the last run's. */
function serverPid(wrapperPid: number): number | undefined {
  try {
    const r = statusRecords(statusFile()).find((x) => x.name === "SERVER_STARTED" && x.pid === wrapperPid);
    return r?.data?.pid;
  } catch {
    return undefined;
  }
}

function md5sumAll(): void {
  requireTool("md5sum");
  for (const a of archivesIn(fx.backup)) {
    const r = Bun.spawnSync(["md5sum", "-c", `${a}.md5`], { cwd: fx.backup });
    expect({ a, code: r.exitCode }).toEqual({ a, code: 0 });
  }
}

/** A first golden run, then a second wrapper run caught while its server works on 48 MiB. */
async function wrapperMidArchive() {
  fx = serverFixture();
  expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
  const good = archivesIn(fx.backup)[0]!;
  const goodBytes = fs.readFileSync(path.join(fx.backup, good));
  addBulk(48);
  const w = startShoot(["wrapper", "--config", fx.config]);
  const pid = await waitFor("server pid", () => serverPid(w.pid));
  return { good, goodBytes, w, pid };
}

describe("shoot wrapper", () => {
  test("a normal run: wrapper records around the server's, golden final, exit 0", async () => {
    fx = serverFixture();
    const r = await runShoot(["wrapper", "--config", fx.config]);
    expect(r.code).toBe(0);
    const recs = statusRecords(statusFile());
    expect(recs[0]).toMatchObject({ code: 60, role: "wrapper", format: "shoot-status", v: 1 });
    expect(recs.map((x) => x.name)).toContain("SERVER_STARTED");
    expect(recs.some((x) => x.role === "server" && x.name === "FIRST_ARCHIVE")).toBe(true);
    expect(recs.at(-1)).toMatchObject({ code: 30, role: "wrapper" });
    expect(recs.at(-1)!.archive.file).toMatch(/\.tar\.gz$/);
    expect(new Set(recs.map((x) => x.run)).size).toBe(1);
    expect(r.stdout).toContain("OK 30 FIRST_ARCHIVE");
    // the report goes by the configured name, and says so when the host is called otherwise
    expect(r.stdout).toStartWith("[shoot] test wrapper OK 30 FIRST_ARCHIVE\n");
    expect(r.stdout).toContain(`\nshoot wrapper run for test on ${os.hostname()}: OK, 30 FIRST_ARCHIVE\n`);
    // what happened is said once, in the report: the server does not print it too
    const said = recs.at(-1)!.msg as string;
    expect(`${r.stdout}\n${r.stderr}`.split("\n").filter((l) => l.includes(said) && !/^\s+\d\d:\d\d:\d\d /.test(l))).toEqual([`What happened:  ${said}`]);
    expect(r.stderr).toBe("");
    const again = await runShoot(["wrapper", "--config", fx.config]);
    expect(again.code).toBe(0);
    expect(finalOf().code).toBe(9);
  }, T);

  test("two wrappers started together: one runs, the other exits ALREADY_RUNNING (12)", async () => {
    fx = serverFixture();
    addBulk(48);
    const a = startShoot(["wrapper", "--config", fx.config]);
    await waitFor("the first wrapper's lock", () => (fs.existsSync(path.join(fx.backup, ".shoot.lock")) ? true : undefined));
    const b = await runShoot(["wrapper", "--config", fx.config]);
    expect(b.code).toBe(12);
    expect(b.stdout + b.stderr).toMatch(/pid \d+ \(wrapper\), started/);
    expect(await a.exited).toBe(0);
    const recs = statusRecords(statusFile());
    expect(new Set(recs.map((x) => x.run)).size).toBe(1);
    expect(recs.at(-1)!.code).toBe(30);
  }, T);

  test("a stale lock from a dead process is taken over and recorded", async () => {
    fx = serverFixture();
    const dead = Bun.spawnSync(["true"]).pid;
    fs.writeFileSync(path.join(fx.backup, ".shoot.lock"), JSON.stringify({ pid: dead, boot: "", pstart: "", started: "2026-01-01T00:00:00.000Z", role: "wrapper", token: "old" }));
    const r = await runShoot(["wrapper", "--config", fx.config]);
    expect(r.code).toBe(0);
    const stale = statusRecords(statusFile()).find((x) => x.name === "STALE_LOCK");
    expect(stale?.msg).toContain(`pid ${dead}`);
    expect(fs.existsSync(path.join(fx.backup, ".shoot.lock"))).toBe(false);
  }, T);

  test("a live lock is obeyed even when its holder is not a shoot process", async () => {
    fx = serverFixture();
    const holder = Bun.spawn(["sleep", "30"]);
    try {
      const pstart = fs.readFileSync(`/proc/${holder.pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19];
      const boot = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
      fs.writeFileSync(path.join(fx.backup, ".shoot.lock"), JSON.stringify({ pid: holder.pid, boot, pstart, started: "2026-01-01T00:00:00.000Z", role: "wrapper", token: "live" }));
      const r = await runShoot(["wrapper", "--config", fx.config]);
      expect(r.code).toBe(12);
      expect(r.stdout + r.stderr).toContain(`pid ${holder.pid}`);
    } finally {
      holder.kill();
    }
  }, T);

  test("server killed with SIGKILL while writing: SERVER_KILLED recorded; the next run recovers and ends golden", async () => {
    const { good, goodBytes, w, pid } = await wrapperMidArchive();
    await waitFor("temporary archive", () => (temps().some((n) => n.endsWith(".tar.gz")) ? true : undefined));
    process.kill(pid, "SIGKILL");
    expect(await w.exited).toBe(32);
    expect(finalOf()).toMatchObject({ code: 32, name: "SERVER_KILLED" });
    expect(finalOf().msg).toContain('step "archive"');
    expect(temps()).toEqual([]);
    expect(fs.readFileSync(path.join(fx.backup, good))).toEqual(goodBytes);
    const next = await runShoot(["wrapper", "--config", fx.config]);
    expect(next.code).toBe(0);
    expect(finalOf().code).toBe(4);
    md5sumAll();
  }, T);

  test("wrapper and server both killed (power-cut style): the next run records where it died and cleans up", async () => {
    const { good, goodBytes, w, pid } = await wrapperMidArchive();
    await waitFor("temporary archive", () => (temps().some((n) => n.endsWith(".tar.gz")) ? true : undefined));
    process.kill(w.pid, "SIGKILL");
    process.kill(pid, "SIGKILL");
    await w.exited;
    expect(temps().length).toBeGreaterThan(0);
    const next = await runShoot(["wrapper", "--config", fx.config]);
    expect(next.code).toBe(0);
    const recs = statusRecords(statusFile());
    const rec = recs.find((x) => x.name === "RECOVERED");
    expect(rec?.msg).toContain("did not end clean");
    expect(rec?.msg).toContain('step "archive"');
    expect(recs.at(-1)!.code).toBe(4);
    expect(temps()).toEqual([]);
    expect(fs.readFileSync(path.join(fx.backup, good))).toEqual(goodBytes);
    md5sumAll();
  }, T);

  test("a server past max_runtime is stopped: TIMEOUT (33), no partial archive under a final name", async () => {
    fx = serverFixture('max_runtime = "300ms"\nkill_grace = "2s"');
    addBulk(64);
    const r = await runShoot(["wrapper", "--config", fx.config]);
    expect(r.code).toBe(33);
    expect(finalOf()).toMatchObject({ code: 33, name: "TIMEOUT" });
    expect(archivesIn(fx.backup)).toEqual([]);
    expect(temps()).toEqual([]);
  }, T);

  test("SIGTERM to the wrapper: INTERRUPTED (34), the server gone, no temp files", async () => {
    fx = serverFixture();
    addBulk(64);
    const w = startShoot(["wrapper", "--config", fx.config]);
    const pid = await waitFor("server pid", () => serverPid(w.pid));
    await waitFor("temporary archive", () => (temps().length ? true : undefined));
    w.kill("SIGTERM");
    expect(await w.exited).toBe(34);
    expect(finalOf()).toMatchObject({ code: 34, name: "INTERRUPTED" });
    expect(() => process.kill(pid, 0)).toThrow();
    expect(temps()).toEqual([]);
    expect(archivesIn(fx.backup)).toEqual([]);
  }, T);
});
