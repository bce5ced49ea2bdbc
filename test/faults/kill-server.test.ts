/**
 * Process death on the server: SIGKILL of `shoot server` at random moments of its run (two
 * backup directories at once, so both cores work), of the wrapper itself, and of both at once
 * (a power cut). After every kill: each archive under a final name passes `md5sum -c`, the
 * newest good archive from before is still there byte for byte, the killed run ended with a
 * code of its own, and the next normal run ends golden and leaves no temporary file.
 *
 * Unlike crash-server.test.ts, which aims at each step, the moments here are drawn at random
 * over the whole life of the server process, learnt from a normal run.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { startShoot } from "../helpers/cli.ts";
import { serverFixture, statusRecords, type ServerFixture } from "../helpers/fixture.ts";
import {
  alive, bounded, boundedExit, caseSeed, checkArchives, checkClean, checkGoodKept, faultFile, injected, killPid,
  mutateTree, scaled, seedTree, snapshotGood, waitFor, waitGone,
} from "../helpers/faults.ts";
import { seeded } from "../helpers/random.ts";

faultFile(import.meta.path);

const KILLS = scaled(100);
const fixtures: ServerFixture[] = [];
afterAll(() => {
  for (const fx of fixtures) fx.cleanup();
});

function lane(): ServerFixture {
  const fx = serverFixture("keep = 2");
  fixtures.push(fx);
  return fx;
}

const finalOf = (fx: ServerFixture) => statusRecords(path.join(fx.backup, "server.status")).at(-1)!;

/** A normal wrapper run that must end golden and leave nothing behind; returns how long its server lived. */
async function normalRun(fx: ServerFixture, context: string): Promise<number> {
  const t0 = performance.now();
  const r = await bounded(["wrapper", "--config", fx.config, "--quiet"]);
  expect({ context, code: r.code, out: r.code === 0 ? "" : r.stdout + r.stderr }).toEqual({ context, code: 0, out: "" });
  checkClean(fx.backup, context);
  checkArchives(fx.backup, context);
  return performance.now() - t0;
}

/**
 * The server process a wrapper started, from the wrapper's SERVER_STARTED record (reading one
 * small file each millisecond costs far less than walking /proc).
 */
async function serverOf(fx: ServerFixture, wrapperPid: number): Promise<number | undefined> {
  const file = path.join(fx.backup, "server.status");
  let seen = -1;
  return await waitFor(() => {
    let text: string;
    try {
      const size = fs.statSync(file).size;
      if (size === seen) return undefined;
      seen = size;
      text = fs.readFileSync(file, "utf8");
    } catch {
      return undefined;
    }
    for (const line of text.split("\n")) {
      if (!line.includes('"SERVER_STARTED"')) continue;
      const r = JSON.parse(line) as { pid?: number; data?: { pid?: number } };
      if (r.pid === wrapperPid) return r.data?.pid;
    }
    return undefined;
  }, 20_000, 1);
}

/** How long the server of a normal run that makes an archive lives: the window the kills are drawn from. */
async function serverLife(fx: ServerFixture, rand: () => number): Promise<number> {
  mutateTree(fx.src, rand, "warm-up");
  const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
  const pid = await serverOf(fx, w.pid);
  const t0 = performance.now();
  if (pid) await waitGone(pid, "the warm-up server", 30_000);
  const life = performance.now() - t0;
  expect(await boundedExit(w, "warm-up")).toBe(0);
  return life;
}

interface LaneResult {
  landed: number;
  missed: number;
  steps: Record<string, number>;
}

async function killServerLane(id: number, target: number): Promise<LaneResult> {
  const rand = seeded(caseSeed(`server SIGKILL lane ${id}`));
  const fx = lane();
  seedTree(fx.src, rand);
  await normalRun(fx, `lane ${id} first run`);
  const window = await serverLife(fx, rand);
  const out: LaneResult = { landed: 0, missed: 0, steps: {} };
  for (let i = 0; out.landed < target && i < target * 3; i++) {
    const context = `lane ${id} kill ${i}`;
    const good = snapshotGood(fx.backup);
    // most runs have something to archive; some find nothing changed (a shorter life to hit)
    if (rand() < 0.85) mutateTree(fx.src, rand, context);
    const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
    const pid = await serverOf(fx, w.pid);
    expect({ context, serverStarted: pid !== undefined }).toEqual({ context, serverStarted: true });
    await Bun.sleep(rand() * window);
    const hit = killPid(pid!);
    const code = await boundedExit(w, context);
    if (hit) {
      injected("SIGKILL server");
      out.landed++;
    } else out.missed++;
    if (code !== 0) {
      // the kill landed before the server's final record: the wrapper says so, with the step
      const last = finalOf(fx);
      expect({ context, code, name: last.name }).toEqual({ context, code: 32, name: "SERVER_KILLED" });
      const step = /step "([^"]+)"/.exec(last.msg)?.[1] ?? "?";
      out.steps[step] = (out.steps[step] ?? 0) + 1;
    } else if (hit) {
      out.steps["after the final record"] = (out.steps["after the final record"] ?? 0) + 1;
    }
    checkArchives(fx.backup, context);
    checkGoodKept(good, context);
    // a run that still ended golden needs no recovery; one that was cut short must be followed by a golden one
    if (code === 0) checkClean(fx.backup, context);
    else await normalRun(fx, `${context}: the next run`);
  }
  expect(out.landed).toBeGreaterThanOrEqual(target);
  return out;
}

describe("process death on the server", () => {
  test(`shoot server SIGKILLed at ${KILLS} random moments (two backup directories at once)`, async () => {
    const half = Math.ceil(KILLS / 2);
    const lanes = await Promise.all([killServerLane(1, half), killServerLane(2, KILLS - half)]);
    const steps: Record<string, number> = {};
    for (const l of lanes) for (const [k, n] of Object.entries(l.steps)) steps[k] = (steps[k] ?? 0) + n;
    const landed = lanes.reduce((n, l) => n + l.landed, 0);
    const missed = lanes.reduce((n, l) => n + l.missed, 0);
    console.log(`server kills: ${landed} landed (${missed} came after the server had exited), by step ${JSON.stringify(steps)}`);
    expect(landed).toBeGreaterThanOrEqual(KILLS);
    // the moments spread over the run, not one step
    expect(Object.keys(steps).length).toBeGreaterThanOrEqual(3);
  }, 240_000);

  test(`the wrapper SIGKILLed at ${scaled(12)} random moments: its server stops itself, the next run recovers`, async () => {
    const rand = seeded(caseSeed("wrapper SIGKILL"));
    const fx = lane();
    seedTree(fx.src, rand);
    await normalRun(fx, "first run");
    const window = await serverLife(fx, rand);
    for (let i = 0; i < scaled(12); i++) {
      const context = `wrapper kill ${i}`;
      const good = snapshotGood(fx.backup);
      mutateTree(fx.src, rand, context);
      const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
      const server = await serverOf(fx, w.pid);
      await Bun.sleep(rand() * window);
      if (killPid(w.pid)) injected("SIGKILL wrapper");
      await boundedExit(w, context);
      // a server that lost its wrapper notices within a second and ends: never left running
      if (server) await waitGone(server, `${context}: the orphaned server`);
      checkArchives(fx.backup, context);
      checkGoodKept(good, context);
      await normalRun(fx, `${context}: the next run`);
    }
  }, 120_000);

  test(`power cut: wrapper and server SIGKILLed together at ${scaled(12)} random moments, then run again`, async () => {
    const rand = seeded(caseSeed("power cut server"));
    const fx = lane();
    seedTree(fx.src, rand);
    await normalRun(fx, "first run");
    const window = await serverLife(fx, rand);
    let recovered = 0;
    for (let i = 0; i < scaled(12); i++) {
      const context = `power cut ${i}`;
      const good = snapshotGood(fx.backup);
      mutateTree(fx.src, rand, context);
      const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
      const server = await serverOf(fx, w.pid);
      await Bun.sleep(rand() * window);
      // everything at once, as when the power goes: nobody writes a last word
      const hitServer = server !== undefined && alive(server);
      killPid(w.pid);
      if (server) killPid(server);
      if (hitServer) injected("power cut (server host)");
      await boundedExit(w, context);
      checkArchives(fx.backup, context);
      checkGoodKept(good, context);
      await normalRun(fx, `${context}: the next run`);
      const recs = statusRecords(path.join(fx.backup, "server.status"));
      if (recs.some((r) => r.name === "RECOVERED")) recovered++;
    }
    // most cuts leave a run without a final record, and the next run says so
    expect(recovered).toBeGreaterThan(0);
  }, 120_000);
});
