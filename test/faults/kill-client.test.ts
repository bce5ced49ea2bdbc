/**
 * Process death on the backup host: SIGKILL of the client's rsync (either of its two
 * processes) or ssh at random moments of a pull over a real sshd, of the whole client (a power
 * cut on the backup host), and of everything on both hosts at once. After every kill: each
 * copy under a final name passes `md5sum -c`, the newest good copy is still there byte for
 * byte, no copy that differs from what the server made is counted as verified, the killed run
 * ended with a code of its own, and the next normal run ends golden without leaving its
 * staging directory or lock behind.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { startShoot } from "../helpers/cli.ts";
import { runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { serverFixture, tempDir } from "../helpers/fixture.ts";
import {
  alive, bounded, boundedExit, caseSeed, checkArchives, checkClean, checkGoodKept, checkNoCorruptAccepted, cmdline,
  descendants, expectNamed, faultFile, injected, killPid, mutateTree, scaled, seedTree, skipShellStartupFiles, snapshotGood, waitFor,
} from "../helpers/faults.ts";
import { randomBytes, seeded } from "../helpers/random.ts";
import { writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { archiveName } from "../../src/core/naming.ts";
import type { CodeName } from "../../src/core/codes.ts";

faultFile(import.meta.path);

const KILLS = scaled(50);
/** What a pull cut short may end with: the transfer failed, or the connection never came up. */
const CUT_SHORT: CodeName[] = ["STATUS_PULL_FAILED", "PULL_FAILED", "UNREACHABLE"];

let sshd: SshServer;
let base: string;
beforeAll(async () => {
  requireTool("rsync");
  sshd = await startSshd();
  await skipShellStartupFiles(sshd);
  base = tempDir("shoot-fault-client-");
}, 30_000);
afterAll(async () => {
  await sshd?.stop();
  fs.rmSync(base, { recursive: true, force: true });
}, 30_000);

/** A server's backup directory made by hand (fast), publishing a new archive when asked, and a client pulling it. */
class Lane {
  readonly backup: string;
  readonly dest: string;
  readonly copies: string;
  readonly config: string;
  /** Archive name → MD5 of the genuine archive. */
  readonly truth = new Map<string, string>();
  private made = 0;
  constructor(readonly name: string, readonly rand: () => number, bwlimit?: string) {
    this.backup = path.join(base, name, "server");
    this.dest = path.join(base, name, "dest");
    this.copies = path.join(this.dest, name);
    this.config = writeClientConfig(path.join(base, name, "client.toml"), {
      dest: this.dest, keep: 2, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, name, this.backup, bwlimit ? { bwlimit } : {})],
    });
  }

  /** A new archive on the "server" (names an hour apart, in order), with its status record. */
  async publish(bytes = 768 * 1024): Promise<void> {
    const when = new Date(Date.UTC(2026, 0, 1) + this.made++ * 3_600_000);
    const info = await writeArchive(this.backup, archiveName(this.name, when, "gzip"), randomBytes(this.rand, bytes));
    this.truth.set(info.file, info.md5);
    writeServerStatus(this.backup, info, { final: this.made === 1 ? "FIRST_ARCHIVE" : "NEW_ARCHIVE" });
  }

  check(context: string, afterCrash: boolean): void {
    checkArchives(this.copies, context, { orphansOk: afterCrash });
    checkNoCorruptAccepted(this.copies, this.truth, context, path.join(this.dest, "client.status"));
  }

  async normalRun(context: string): Promise<void> {
    const r = await runClient(this.config, this.dest, [], 60_000);
    expect({ context, code: r.code, message: r.code === 0 ? "" : r.outcome.sources[0]?.message }).toEqual({ context, code: 0, message: "" });
    checkClean(this.dest, context);
    this.check(context, false);
  }
}

/** The client's rsync and ssh processes right now, with their command lines. */
function transferProcs(clientPid: number): Array<{ pid: number; cmd: string }> {
  return descendants(clientPid).map((pid) => ({ pid, cmd: cmdline(pid) })).filter((p) => /^(\S*\/)?(rsync|ssh) /.test(p.cmd));
}

interface KillStats {
  landed: number;
  missed: number;
  byTarget: Record<string, number>;
  codes: Record<string, number>;
}

async function killPulls(lane: Lane, target: number, stats: KillStats): Promise<void> {
  const { rand } = lane;
  await lane.publish();
  await lane.normalRun(`${lane.name}: first pull`);
  for (let i = 0; stats.landed < target && i < target * 3; i++) {
    const context = `${lane.name} kill ${i}`;
    const good = snapshotGood(lane.copies);
    if (rand() < 0.8) await lane.publish();
    // the moment: during the status pull or the archive pull, in rsync's receiver, its generator, or ssh
    const phase = rand() < 0.3 ? "server.status" : "tar.gz";
    const which = ["rsync", "rsync child", "ssh"][Math.floor(rand() * 3)]!;
    const delay = rand() * (phase === "server.status" ? 60 : 180);
    const proc = startShoot(["client", "--config", lane.config, "--json"]);
    const rsync = await waitFor(() => transferProcs(proc.pid).find((p) => p.cmd.startsWith("rsync") && p.cmd.includes(phase)), 15_000, 5);
    let hit = false;
    let target = "";
    if (rsync) {
      await Bun.sleep(delay);
      const procs = descendants(rsync.pid).map((pid) => ({ pid, cmd: cmdline(pid) }));
      // rsync forks its second process only once the connection is up: until then rsync itself is hit
      const victim = which === "rsync" ? undefined : procs.find((p) => (which === "ssh" ? p.cmd.startsWith("ssh") : p.cmd.startsWith("rsync")))?.pid;
      hit = killPid(victim ?? rsync.pid);
      if (hit) target = `${victim === undefined ? "rsync" : which} in ${phase === "tar.gz" ? "archive" : "status"} pull`;
    }
    const code = await boundedExit(proc, context);
    if (hit) {
      injected("SIGKILL client rsync/ssh");
      stats.landed++;
      stats.byTarget[target] = (stats.byTarget[target] ?? 0) + 1;
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
  test(`the client's rsync or ssh SIGKILLed at ${KILLS} random moments of a pull (two sources at once)`, async () => {
    const stats: KillStats = { landed: 0, missed: 0, byTarget: {}, codes: {} };
    const half = Math.ceil(KILLS / 2);
    const one = { ...stats, byTarget: {}, codes: {} };
    const two = { ...stats, byTarget: {}, codes: {} };
    await Promise.all([
      killPulls(new Lane("alpha", seeded(caseSeed("client SIGKILL alpha")), "4MiB"), half, one),
      killPulls(new Lane("beta", seeded(caseSeed("client SIGKILL beta")), "4MiB"), KILLS - half, two),
    ]);
    for (const s of [one, two]) {
      stats.landed += s.landed;
      stats.missed += s.missed;
      for (const [k, n] of Object.entries(s.byTarget)) stats.byTarget[k] = (stats.byTarget[k] ?? 0) + n;
      for (const [k, n] of Object.entries(s.codes)) stats.codes[k] = (stats.codes[k] ?? 0) + n;
    }
    console.log(`client kills: ${stats.landed} landed, ${stats.missed} missed; by target ${JSON.stringify(stats.byTarget)}; exit codes ${JSON.stringify(stats.codes)}`);
    expect(stats.landed).toBeGreaterThanOrEqual(KILLS);
    expect(Object.keys(stats.byTarget).length).toBeGreaterThanOrEqual(4);
  }, 240_000);

  test(`power cut on the backup host: the client and its rsync and ssh SIGKILLed together, ${scaled(8)} times`, async () => {
    const lane = new Lane("gamma", seeded(caseSeed("client power cut")), "4MiB");
    await lane.publish();
    await lane.normalRun("first pull");
    for (let i = 0; i < scaled(8); i++) {
      const context = `client power cut ${i}`;
      const good = snapshotGood(lane.copies);
      await lane.publish();
      const proc = startShoot(["client", "--config", lane.config, "--json"]);
      await waitFor(() => (transferProcs(proc.pid).length > 0 ? true : undefined), 15_000, 3);
      await Bun.sleep(lane.rand() * 300);
      const all = [proc.pid, ...descendants(proc.pid)];
      let hit = false;
      for (const p of all) hit = killPid(p) || hit;
      if (hit) injected("power cut (backup host)");
      await boundedExit(proc, context);
      // a process the cut missed (ssh reparented mid-kill) must not linger either
      for (const p of all) if (alive(p)) killPid(p);
      lane.check(context, true);
      checkGoodKept(good, context);
      await lane.normalRun(`${context}: the next run`);
    }
  }, 120_000);

  test(`power cut on both hosts: wrapper, server, client, rsync and ssh SIGKILLed together, ${scaled(6)} times`, async () => {
    const rand = seeded(caseSeed("power cut both hosts"));
    const fx = serverFixture("keep = 2");
    try {
      seedTree(fx.src, rand, 80, 512 * 1024);
      const dest = path.join(fx.root, "dest");
      const copies = path.join(dest, "web1");
      const config = writeClientConfig(path.join(fx.root, "client.toml"), { dest, keep: 2, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "web1", fx.backup, { bwlimit: "2MiB" })] });
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
      for (let i = 0; i < scaled(6); i++) {
        const context = `power cut both ${i}`;
        const goodServer = snapshotGood(fx.backup);
        const goodClient = snapshotGood(copies);
        mutateTree(fx.src, rand, context);
        // a pull of the current archive and a new backup, both in flight when the power goes
        const c = startShoot(["client", "--config", config, "--json"]);
        const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
        await waitFor(() => (transferProcs(c.pid).length > 0 || c.exitCode !== null ? true : undefined), 15_000, 3);
        await Bun.sleep(rand() * 250);
        const all = [w.pid, c.pid, ...descendants(w.pid), ...descendants(c.pid)];
        let hit = false;
        for (const p of all) hit = killPid(p) || hit;
        if (hit) injected("power cut (both hosts)");
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
