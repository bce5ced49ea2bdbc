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
import path from "node:path";
import { startShoot } from "../helpers/cli.ts";
import { serverFixture, statusRecords, type ServerFixture } from "../helpers/fixture.ts";
import {
  alive, boundedExit, caseSeed, checkArchives, checkClean, checkGoodKept, faultFile, goldenWrapper, injected, killPid,
  mutateTree, scaled, seedTree, serverLife, serverPidOf, snapshotGood, waitGone,
} from "../helpers/faults.ts";
import { seeded } from "../helpers/random.ts";
import { isFinal, isGolden } from "../../src/core/common/codes.ts";

faultFile(import.meta.path);

/** Server SIGKILLs in all: most alone, the rest together with the wrapper (a power cut). */
const KILLS = scaled(100);
const POWER_CUTS = scaled(12);
const WRAPPER_KILLS = scaled(6);
const fixtures: ServerFixture[] = [];
afterAll(() => {
  for (const fx of fixtures) fx.cleanup();
});

async function lane(rand: () => number): Promise<ServerFixture> {
  const fx = serverFixture("keep = 2");
  fixtures.push(fx);
  seedTree(fx.src, rand);
  await goldenWrapper(fx, "first run");
  return fx;
}

const finalOf = (fx: ServerFixture) => statusRecords(path.join(fx.backup, "server.status")).at(-1)!;

interface Strike {
  /** The signal reached a live process that matters for this kind of fault. */
  hit: boolean;
  kind: string;
}

interface KillResult {
  landed: number;
  missed: number;
  /** Where the killed runs were, from the final record the wrapper (or the next run) wrote. */
  steps: Record<string, number>;
}

/**
 * Start wrapper runs and strike each at a random moment of its server's life until `target`
 * strikes have landed. The window the moments are drawn from starts as a normal run's server
 * life and shrinks when a strike comes too late. After each strike: the archives verify, the
 * good archive is intact, and (unless the run still ended golden) the next run is golden.
 */
async function strikeRuns(fx: ServerFixture, rand: () => number, target: number, name: string, strike: (wrapper: number, server: number) => Strike, expectCode: (code: number, context: string) => void): Promise<KillResult> {
  let window = await serverLife(fx, rand);
  const out: KillResult = { landed: 0, missed: 0, steps: {} };
  for (let i = 0; out.landed < target && i < target * 3; i++) {
    const context = `${name} ${i}`;
    const good = snapshotGood(fx.backup);
    // most runs have something to archive; some find nothing changed (a shorter life to hit)
    if (rand() < 0.85) mutateTree(fx.src, rand, context);
    const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
    const server = await serverPidOf(fx.backup, w.pid);
    expect({ context, serverStarted: server !== undefined }).toEqual({ context, serverStarted: true });
    const delay = rand() * window;
    await Bun.sleep(delay);
    const s = strike(w.pid, server!);
    const code = await boundedExit(w, context);
    // a server that lost its wrapper notices within a second and ends: never left running
    await waitGone(server!, `${context}: the server`);
    if (s.hit) {
      injected(s.kind);
      out.landed++;
      window *= 1.05;
    } else {
      out.missed++;
      // the server had ended before the moment drawn: draw from a shorter window
      window = Math.max(30, delay);
    }
    expectCode(code, context);
    checkArchives(fx.backup, context);
    checkGoodKept(good, context);
    if (code === 0 && s.hit) out.steps["after the final record"] = (out.steps["after the final record"] ?? 0) + 1;
    // a run that still ended golden needs no recovery; one that was cut short must be followed by a golden one
    if (code === 0) checkClean(fx.backup, context);
    else {
      const where = await goldenWrapperAfter(fx, context);
      if (s.hit) out.steps[where] = (out.steps[where] ?? 0) + 1;
    }
  }
  expect(out.landed).toBeGreaterThanOrEqual(target);
  return out;
}

/** The next run after a cut-short one: golden; returns the step the cut run died in, as recorded. */
async function goldenWrapperAfter(fx: ServerFixture, context: string): Promise<string> {
  const before = finalOf(fx);
  await goldenWrapper(fx, `${context}: the next run`);
  const recovered = statusRecords(path.join(fx.backup, "server.status")).find((r) => r.name === "RECOVERED");
  return /step "([^"]+)"/.exec(before.name === "SERVER_KILLED" ? before.msg : recovered?.msg ?? "")?.[1] ?? "?";
}

function merge(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
}

describe("process death on the server", () => {
  test(`shoot server SIGKILLed at ${KILLS - POWER_CUTS} random moments (two backup directories at once)`, async () => {
    const alone = KILLS - POWER_CUTS;
    const half = Math.ceil(alone / 2);
    const serverOnly = (_w: number, server: number): Strike => ({ hit: killPid(server), kind: "SIGKILL server" });
    const killed = (code: number, context: string) => {
      if (code !== 0) expect({ context, code }).toEqual({ context, code: 32 });
    };
    const lanes = await Promise.all([1, 2].map(async (id) => {
      const rand = seeded(caseSeed(`server SIGKILL lane ${id}`));
      return await strikeRuns(await lane(rand), rand, id === 1 ? half : alone - half, `server kill lane ${id}`, serverOnly, killed);
    }));
    const steps: Record<string, number> = {};
    for (const l of lanes) merge(steps, l.steps);
    const landed = lanes.reduce((n, l) => n + l.landed, 0);
    const missed = lanes.reduce((n, l) => n + l.missed, 0);
    console.log(`server kills: ${landed} landed (${missed} came after the server had exited), by step ${JSON.stringify(steps)}`);
    expect(landed).toBeGreaterThanOrEqual(alone);
    // the moments spread over the run, not one step
    expect(Object.keys(steps).length).toBeGreaterThanOrEqual(3);
  }, 240_000);

  test(`power cut: wrapper and server SIGKILLed together at ${POWER_CUTS} random moments, then run again`, async () => {
    const rand = seeded(caseSeed("power cut server"));
    const fx = await lane(rand);
    // everything at once, as when the power goes: nobody writes a last word
    const both = (w: number, server: number): Strike => {
      const hit = alive(server);
      killPid(w);
      killPid(server);
      return { hit, kind: "SIGKILL server in a power cut" };
    };
    const r = await strikeRuns(fx, rand, POWER_CUTS, "power cut", both, () => {});
    console.log(`power cuts: ${r.landed} landed, next runs found the cut runs in ${JSON.stringify(r.steps)}`);
  }, 120_000);

  test(`the wrapper SIGKILLed at ${WRAPPER_KILLS} random moments: its server stops itself, the next run recovers`, async () => {
    const rand = seeded(caseSeed("wrapper SIGKILL"));
    const fx = await lane(rand);
    const wrapperOnly = (w: number): Strike => ({ hit: killPid(w), kind: "SIGKILL wrapper" });
    // the wrapper cannot have a last word; its server, left alone, has it: INTERRUPTED, or its own golden end
    const serverSaidSo = (_code: number, context: string) => {
      const last = [...statusRecords(path.join(fx.backup, "server.status"))].reverse().find((r) => isFinal(r.code));
      expect({ context, final: last && (isGolden(last.code) || last.name === "INTERRUPTED") }).toEqual({ context, final: true });
    };
    await strikeRuns(fx, rand, WRAPPER_KILLS, "wrapper kill", wrapperOnly, serverSaidSo);
  }, 120_000);
});
