/**
 * Process death on the backup host: SIGKILL of the client's rsync (either of its two
 * processes) or ssh at random moments of a pull over a real sshd, of the whole client (a power
 * cut on the backup host), and of everything on both hosts at once. After every kill: each
 * copy under a final name passes `md5sum -c`, the newest good copy is still there byte for
 * byte, no copy that differs from what the server made is counted as verified, the killed run
 * ended with a code of its own, and the next normal run ends golden without leaving its
 * staging directory or lock behind.
 */
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { startShoot } from "../helpers/cli.ts";
import { runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { serverFixture } from "../helpers/fixture.ts";
import {
  PullLane, alive, bounded, powerCut, boundedExit, caseSeed, checkArchives, checkClean, checkGoodKept, cmdline, descendants,
  expectNamed, faultFile, faultSshd, injected, killPid, mutateTree, rsyncPulling, scaled, seedTree, snapshotGood,
  transferProcs, waitFor,
} from "../helpers/faults.ts";
import { seeded } from "../helpers/random.ts";
import type { CodeName } from "../../src/core/common/codes.ts";
import { STAGE_DIR } from "../../src/core/client/client.ts";

faultFile(import.meta.path);

const KILLS = scaled(50);
const LANES = 3;
/** What a pull cut short may end with: the transfer failed, or the connection never came up. */
const CUT_SHORT: CodeName[] = ["STATUS_PULL_FAILED", "PULL_FAILED", "UNREACHABLE"];

const host = faultSshd("shoot-fault-client-");

interface KillStats {
  landed: number;
  missed: number;
  byTarget: Record<string, number>;
  codes: Record<string, number>;
}

const WHICH = ["rsync", "rsync child", "ssh"] as const;

/** The pid of rsync's forked child or of its ssh, once it runs. */
function victimOf(rsync: number, which: (typeof WHICH)[number]): number | undefined {
  const prefix = which === "ssh" ? "ssh" : "rsync";
  return descendants(rsync).find((pid) => cmdline(pid).startsWith(prefix));
}

/** Wait until `share` of the archive has reached the staging directory (or its rsync is gone). */
async function arrived(stage: string, archive: { file: string; size: number }, share: number, rsync: number): Promise<void> {
  const want = Math.floor(archive.size * share);
  const bytes = () => {
    let n = 0;
    for (const f of fs.readdirSync(stage, { recursive: true }).map(String)) {
      if (path.basename(f).includes(archive.file) && !f.endsWith(".md5")) n += fs.statSync(path.join(stage, f), { throwIfNoEntry: false })?.size ?? 0;
    }
    return n;
  };
  await waitFor(() => (!alive(rsync) || (fs.existsSync(stage) && bytes() >= want) ? true : undefined), 10_000, 1);
  await waitFor(() => (!alive(rsync) || (fs.existsSync(stage) && bytes() >= want) ? true : undefined), 10_000, 1);
}

async function killPulls(lane: PullLane & { offset: number }, target: number, stats: KillStats): Promise<void> {
  const { rand } = lane;
  await lane.publish();
  await lane.normalRun(`${lane.name}: first pull`);
  for (let i = 0; stats.landed < target && i < target * 3; i++) {
    const context = `${lane.name} kill ${i}`;
    const good = snapshotGood(lane.copies);
    const fresh = rand() < 0.8;
    const made = fresh ? await lane.publish() : undefined;
    // the moment: during the status pull, or the archive pull (when there is one) once a random share
    // of it has arrived; the process struck goes round rsync itself, its forked child and ssh
    const archive = made && rand() >= 0.3 ? made : undefined;
    const which = WHICH[(i + lane.offset) % WHICH.length]!;
    const proc = startShoot(["client", "--config", lane.config, "--json"]);
    const rsync = await rsyncPulling(proc, lane.dest, archive ? archive.file : "server.status");
    let hit = false;
    if (rsync) {
      if (archive) await arrived(path.join(lane.copies, STAGE_DIR), archive, rand() * 0.9, rsync);
      else await Bun.sleep(rand() * 20);
      // rsync forks its child and ssh only once it runs: wait for the one aimed at (a pull that ends first is a miss)
      const victim = which === "rsync" ? rsync : await waitFor(() => victimOf(rsync, which) ?? (alive(rsync) ? undefined : 0), 5_000, 1);
      hit = victim ? killPid(victim) : false;
    }
    const struck = `${which} in ${archive ? "archive" : "status"} pull`;
    const code = await boundedExit(proc, context);
    if (hit) {
      injected("SIGKILL client rsync/ssh");
      stats.landed++;
      stats.byTarget[struck] = (stats.byTarget[struck] ?? 0) + 1;
    } else stats.missed++;
    stats.codes[code] = (stats.codes[code] ?? 0) + 1;
    expectNamed(code, CUT_SHORT, context);
    lane.check(context, true);
    checkGoodKept(good, context);
    if (code !== 0) await lane.normalRun(`${context}: the next run`);
    else checkClean(lane.dest, context);
  }
}

describe("process death on the backup host", () => {
  test(`the client's rsync or ssh SIGKILLed at ${KILLS} random moments of a pull (${LANES} sources at once)`, async () => {
    const fresh = (): KillStats => ({ landed: 0, missed: 0, byTarget: {}, codes: {} });
    // a pull waits on the network much of the time: several at once keep both cores busy
    const lanes = Array.from({ length: LANES }, (_, i) => ({ name: `lane${i + 1}`, target: Math.floor(KILLS / LANES) + (i < KILLS % LANES ? 1 : 0), stats: fresh() }));
    await Promise.all(lanes.map((l, i) => {
      const lane = Object.assign(new PullLane(host.base, l.name, seeded(caseSeed(`client SIGKILL ${l.name}`)), { sshd: host.sshd, bwlimit: "4MiB" }), { offset: i });
      return killPulls(lane, l.target, l.stats);
    }));
    const stats = fresh();
    for (const { stats: s } of lanes) {
      stats.landed += s.landed;
      stats.missed += s.missed;
      for (const [k, n] of Object.entries(s.byTarget)) stats.byTarget[k] = (stats.byTarget[k] ?? 0) + n;
      for (const [k, n] of Object.entries(s.codes)) stats.codes[k] = (stats.codes[k] ?? 0) + n;
    }
    console.log(`client kills: ${stats.landed} landed, ${stats.missed} missed; by target ${JSON.stringify(stats.byTarget)}; exit codes ${JSON.stringify(stats.codes)}`);
    expect(stats.landed).toBeGreaterThanOrEqual(KILLS);
    // every process of the archive pull was struck; the status pull is brief, and its forked rsync the briefest
    for (const which of WHICH) expect(stats.byTarget[`${which} in archive pull`] ?? 0).toBeGreaterThan(0);
    expect(Object.keys(stats.byTarget).length).toBeGreaterThanOrEqual(5);
  }, 240_000);

  test(`power cut on the backup host: the client and its rsync and ssh SIGKILLed together, ${scaled(5)} times`, async () => {
    const lane = new PullLane(host.base, "gamma", seeded(caseSeed("client power cut")), { sshd: host.sshd, bwlimit: "4MiB" });
    await lane.publish();
    await lane.normalRun("first pull");
    for (let i = 0; i < scaled(5); i++) {
      const context = `client power cut ${i}`;
      const good = snapshotGood(lane.copies);
      await lane.publish();
      const proc = startShoot(["client", "--config", lane.config, "--json"]);
      await waitFor(() => (transferProcs(proc.pid).length > 0 ? true : undefined), 15_000, 10);
      await Bun.sleep(lane.rand() * 300);
      if (powerCut([proc.pid])) injected("power cut (backup host)");
      await boundedExit(proc, context);
      lane.check(context, true);
      checkGoodKept(good, context);
      await lane.normalRun(`${context}: the next run`);
    }
  }, 120_000);

  test(`power cut on both hosts: wrapper, server, client, rsync and ssh SIGKILLed together, ${scaled(4)} times`, async () => {
    const rand = seeded(caseSeed("power cut both hosts"));
    const fx = serverFixture("keep = 2");
    try {
      seedTree(fx.src, rand, 80, 512 * 1024);
      const dest = path.join(fx.root, "dest");
      const copies = path.join(dest, "web1");
      const config = writeClientConfig(path.join(fx.root, "client.toml"), { dest, keep: 2, known_hosts: host.sshd.knownHosts, sources: [sshSource(host.sshd, "web1", fx.backup, { bwlimit: "2MiB" })] });
      const wrapperRun = async (context: string) => {
        const r = await bounded(["wrapper", "--config", fx.config, "--quiet"]);
        expect({ context, code: r.code }).toEqual({ context, code: 0 });
        checkClean(fx.backup, context);
      };
      const clientRun = async (context: string) => {
        const r = await runClient(config, dest, [], 60_000);
        expect({ context, code: r.code, msg: r.code ? r.outcome.sources[0]?.message : "" }).toEqual({ context, code: 0, msg: "" });
        checkClean(dest, context);
      };
      await wrapperRun("first backup");
      await clientRun("first pull");
      for (let i = 0; i < scaled(4); i++) {
        const context = `power cut both ${i}`;
        const goodServer = snapshotGood(fx.backup);
        const goodClient = snapshotGood(copies);
        mutateTree(fx.src, rand, context);
        // a pull of the current archive and a new backup, both in flight when the power goes
        const c = startShoot(["client", "--config", config, "--json"]);
        const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
        await waitFor(() => (transferProcs(c.pid).length > 0 || c.exitCode !== null ? true : undefined), 15_000, 10);
        await Bun.sleep(rand() * 250);
        if (powerCut([w.pid, c.pid])) injected("power cut (both hosts)");
        await boundedExit(w, `${context}: wrapper`);
        await boundedExit(c, `${context}: client`);
        checkArchives(fx.backup, context);
        checkArchives(copies, context, { orphansOk: true });
        checkGoodKept(goodServer, context);
        checkGoodKept(goodClient, context);
        // power back: the server host runs first, then the backup host pulls what it made
        await wrapperRun(`${context}: next backup`);
        await clientRun(`${context}: next pull`);
        checkArchives(copies, `${context}: after the next pull`);
      }
    } finally {
      fx.cleanup();
    }
  }, 120_000);
});
