/**
 * Kill the server with SIGKILL at many moments of a run (scan, archive, checksum, rotation)
 * and check after each: every archive under a final name passes `md5sum -c`, the previous good
 * archive is still there byte for byte, and the next wrapper run ends golden.
 * SHOOT_CRASH_POINTS and SHOOT_CRASH_SEED replay or widen the run.
 */
import { afterAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot, startShoot } from "../helpers/cli.ts";
import { archivesIn, serverFixture, statusRecords, writeTree } from "../helpers/fixture.ts";
import { randomBytes, seeded } from "../helpers/random.ts";
import { requireTool } from "../helpers/tools.ts";

const POINTS = Number(process.env.SHOOT_CRASH_POINTS ?? 32);
const SEED = Number(process.env.SHOOT_CRASH_SEED ?? 20261126);
const fx = serverFixture("keep = 2");
afterAll(() => fx.cleanup());

function checkArchives(): void {
  for (const a of archivesIn(fx.backup)) {
    const r = Bun.spawnSync(["md5sum", "-c", `${a}.md5`], { cwd: fx.backup });
    expect({ a, md5sum: r.exitCode }).toEqual({ a, md5sum: 0 });
  }
}

test(`server killed at ${POINTS} moments (seed ${SEED}): no good archive lost, every final name verifies, next run golden`, async () => {
  requireTool("md5sum");
  const rand = seeded(SEED);
  const files: Record<string, string> = {};
  for (let i = 0; i < 1500; i++) files[`many/d${i % 30}/f${i}.txt`] = `file ${i}\n`.repeat(1 + (i % 20));
  writeTree(fx.src, files);
  fs.writeFileSync(path.join(fx.src, "bulk.bin"), randomBytes(rand, 4 * 1024 * 1024));
  const statusFile = path.join(fx.backup, "server.status");

  expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
  // each kill aims at one step: wait for the server to record it, then strike within a few ms
  const steps = ["sanity", "scan", "space", "archive", "checksum", "rotate"];

  const killedIn: Record<string, number> = {};
  let finished = 0;
  for (let i = 0; i < POINTS; i++) {
    const good = archivesIn(fx.backup).at(-1)!;
    const goodBytes = Bun.hash(fs.readFileSync(path.join(fx.backup, good)));
    fs.writeFileSync(path.join(fx.src, `many/d0/change-${i}.txt`), `change ${i}\n`);
    const w = startShoot(["wrapper", "--config", fx.config]);
    const target = steps[i % steps.length]!;
    let pid: number | undefined;
    let reached = false;
    const until = Date.now() + 20_000;
    while (!reached && Date.now() < until && w.exitCode === null) {
      try {
        const recs = statusRecords(statusFile);
        pid ??= recs.find((r) => r.name === "SERVER_STARTED" && r.pid === w.pid)?.data?.pid;
        reached = pid !== undefined && recs.some((r) => r.pid === pid && r.step === target);
      } catch {
        // the file is being started afresh
      }
      if (!reached) await Bun.sleep(1);
    }
    expect(pid).toBeGreaterThan(0);
    await Bun.sleep(rand() * 3);
    try {
      process.kill(pid!, "SIGKILL");
    } catch {
      // it finished before the kill: a moment past the end, still a valid case
    }
    const code = await w.exited;
    const recs = statusRecords(statusFile);
    const last = recs.at(-1)!;
    if (code === 0) finished++;
    else {
      expect({ code, name: last.name }).toEqual({ code: 32, name: "SERVER_KILLED" });
      const step = /step "([^"]+)"/.exec(last.msg)?.[1] ?? "?";
      killedIn[step] = (killedIn[step] ?? 0) + 1;
    }
    checkArchives();
    expect(fs.existsSync(path.join(fx.backup, good))).toBe(true);
    expect(Bun.hash(fs.readFileSync(path.join(fx.backup, good)))).toBe(goodBytes);
    const next = await runShoot(["wrapper", "--config", fx.config]);
    expect({ i, code: next.code }).toEqual({ i, code: 0 });
    expect(fs.readdirSync(fx.backup).filter((n) => n.startsWith(".shoot-tmp"))).toEqual([]);
    checkArchives();
  }
  console.log(`crash points: ${POINTS} tried (seed ${SEED}), killed in steps ${JSON.stringify(killedIn)}, ${finished} finished before the kill`);
  expect(Object.keys(killedIn).length).toBeGreaterThanOrEqual(2);
}, 600_000);
