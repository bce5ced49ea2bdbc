/**
 * Concurrency and time: two wrappers and two clients started close together at random
 * offsets, a client pulling again and again while the server makes and rotates archives
 * (keep = 1: every new archive removes the one before), and clocks a day apart, both as a
 * server.status whose times are a day off and, in-process through the Deps interface, as a
 * server and a client whose own clock is a day behind or ahead.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { startShoot } from "../helpers/cli.ts";
import { runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { serverFixture, statusRecords, type ServerFixture } from "../helpers/fixture.ts";
import {
  PullLane, boundedExit, caseSeed, checkArchives, checkClean, checkGoodKept, checkNoCorruptAccepted, expectNamed,
  faultFile, faultSshd, goldenWrapper, injected, mutateTree, scaled, seedTree, snapshotGood,
} from "../helpers/faults.ts";
import { seeded } from "../helpers/random.ts";
import { runClient as runClientCore } from "../../src/core/client/client.ts";
import { loadConfig, requireClient, requireServer } from "../../src/core/common/config.ts";
import { realDeps, silentLog, type Deps } from "../../src/core/common/deps.ts";
import { sortArchives } from "../../src/core/state/naming.ts";
import { runServer } from "../../src/core/server/server.ts";
import type { CodeName } from "../../src/core/common/codes.ts";

faultFile(import.meta.path);

const DAY = 86_400_000;
const host = faultSshd("shoot-fault-concurrency-");
const fixtures: ServerFixture[] = [];
afterAll(() => {
  for (const fx of fixtures) fx.cleanup();
});

function fixture(extra = "keep = 2"): ServerFixture {
  const fx = serverFixture(extra);
  fixtures.push(fx);
  return fx;
}

/** A client pulling `fx`'s backups over the test sshd. */
function clientOf(fx: ServerFixture, keep = 3) {
  const dest = path.join(fx.root, "dest");
  const config = writeClientConfig(path.join(fx.root, "client.toml"), { dest, keep, known_hosts: host.sshd.knownHosts, sources: [sshSource(host.sshd, "web1", fx.backup)] });
  return { dest, copies: path.join(dest, "web1"), config };
}

/** MD5 of every archive the server has made so far, from its status files: what a copy must be. */
function madeSoFar(fx: ServerFixture, into: Map<string, string>): void {
  for (const f of ["server.status", "server.status.1"]) {
    const p = path.join(fx.backup, f);
    if (!fs.existsSync(p)) continue;
    for (const line of fs.readFileSync(p, "utf8").split("\n")) {
      if (!line.includes('"ARCHIVE_WRITTEN"') && !line.includes('"archive"')) continue;
      try {
        const r = JSON.parse(line) as { archive?: { file: string; md5: string } };
        if (r.archive) into.set(r.archive.file, r.archive.md5);
      } catch {
        // a torn line: the next status file has the record whole
      }
    }
  }
}

/**
 * Start the same command twice, `gap` apart, `times` times: each pair must end with one run
 * golden and the other golden too (it came after) or ALREADY_RUNNING; `check` looks at what
 * the pair left. Returns how often each pair of exit codes came out.
 */
async function pairs(what: string, times: number, args: string[], before: () => Promise<void> | void, gap: () => number, check: (context: string) => void): Promise<Record<string, number>> {
  const outcomes: Record<string, number> = {};
  for (let i = 0; i < times; i++) {
    const context = `${what} ${i}`;
    await before();
    const a = startShoot(args);
    await Bun.sleep(gap());
    const b = startShoot(args);
    injected(`${what} at once`);
    const codes = [await boundedExit(a, `${context} a`), await boundedExit(b, `${context} b`)];
    for (const c of codes) expectNamed(c, ["ALREADY_RUNNING"], context);
    expect({ context, oneRan: codes.includes(0) }).toEqual({ context, oneRan: true });
    outcomes[codes.join("+")] = (outcomes[codes.join("+")] ?? 0) + 1;
    check(context);
  }
  console.log(`${what}: exit codes ${JSON.stringify(outcomes)}`);
  return outcomes;
}

describe("concurrency", () => {
  test(`two wrappers started close together, ${scaled(4)} times: one runs, the other is ALREADY_RUNNING or runs after`, async () => {
    const rand = seeded(caseSeed("two wrappers"));
    const fx = fixture();
    seedTree(fx.src, rand, 100, 1024 * 1024);
    await goldenWrapper(fx, "first run");
    let good = snapshotGood(fx.backup);
    await pairs("two wrappers", scaled(4), ["wrapper", "--config", fx.config, "--quiet"], () => {
      good = snapshotGood(fx.backup);
      mutateTree(fx.src, rand, "two wrappers");
    }, () => rand() * 150, (context) => {
      // the status file tells one run's story, whole
      const recs = statusRecords(path.join(fx.backup, "server.status"));
      expect({ context, runs: new Set(recs.map((r) => r.run)).size }).toEqual({ context, runs: 1 });
      checkGoodKept(good, context);
      checkClean(fx.backup, context);
      checkArchives(fx.backup, context);
    });
    await goldenWrapper(fx, "afterwards");
  }, 90_000);

  test(`two clients started close together, ${scaled(4)} times: one pulls, the other is ALREADY_RUNNING or finds the copy held`, async () => {
    const lane = new PullLane(fixture().root, "twins", seeded(caseSeed("two clients")), { sshd: host.sshd, bwlimit: "4MiB" });
    await lane.publish();
    await lane.normalRun("first pull");
    let good = snapshotGood(lane.copies);
    await pairs("two clients", scaled(4), ["client", "--config", lane.config, "--json"], async () => {
      good = snapshotGood(lane.copies);
      await lane.publish();
    }, () => lane.rand() * 300, (context) => {
      checkGoodKept(good, context);
      checkClean(lane.dest, context);
      lane.check(context, false);
    });
  }, 90_000);

  test("a client pulling again and again while the server makes and rotates archives (keep = 1)", async () => {
    const rand = seeded(caseSeed("pull while rotating"));
    const fx = fixture("keep = 1");
    seedTree(fx.src, rand, 60, 1024 * 1024);
    await goldenWrapper(fx, "first backup");
    const { dest, copies, config } = clientOf(fx);
    const truth = new Map<string, string>();
    madeSoFar(fx, truth);
    const first = await runClient(config, dest);
    expect(first.code).toBe(0);

    let serverRuns = 0;
    let stop = false;
    const server = (async () => {
      while (!stop) {
        mutateTree(fx.src, rand, `rotation ${serverRuns}`);
        const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
        expect(await boundedExit(w, `server run ${serverRuns}`)).toBe(0);
        madeSoFar(fx, truth);
        serverRuns++;
      }
    })();
    const allowed: CodeName[] = ["SERVER_BUSY", "PULL_FAILED", "STATUS_PULL_FAILED", "STATUS_INVALID"];
    const codes: Record<string, number> = {};
    try {
      for (let i = 0; i < scaled(6); i++) {
        const context = `pull while rotating ${i}`;
        const good = snapshotGood(copies);
        const c = startShoot(["client", "--config", config, "--json"]);
        const code = await boundedExit(c, context);
        injected("pull while the server rotates");
        codes[code] = (codes[code] ?? 0) + 1;
        expectNamed(code, allowed, context);
        madeSoFar(fx, truth);
        checkNoCorruptAccepted(copies, truth, context, path.join(dest, "client.status"));
        checkArchives(copies, context, { orphansOk: true });
        checkGoodKept(good, context);
        await Bun.sleep(rand() * 100);
      }
    } finally {
      stop = true;
      await server;
    }
    console.log(`pulls while ${serverRuns} server runs rotated: exit codes ${JSON.stringify(codes)}`);
    const last = await runClient(config, dest);
    expect({ code: last.code, message: last.code ? last.outcome.sources[0]?.message : "" }).toEqual({ code: 0, message: "" });
    madeSoFar(fx, truth);
    checkNoCorruptAccepted(copies, truth, "after the server stopped", path.join(dest, "client.status"));
    checkArchives(copies, "after the server stopped");
    checkClean(dest, "after the server stopped");
  }, 120_000);
});

describe("clocks a day apart", () => {
  test("server.status a day ahead is STATUS_INVALID, a day behind is STATUS_STALE; the copy held stays", async () => {
    const rand = seeded(caseSeed("status clock skew"));
    const fx = fixture();
    seedTree(fx.src, rand, 40, 64 * 1024);
    await goldenWrapper(fx, "first backup");
    const { dest, copies, config } = clientOf(fx);
    expect((await runClient(config, dest)).code).toBe(0);
    const statusFile = path.join(fx.backup, "server.status");
    for (const [skew, expected] of [[DAY, 43], [-DAY - 60_000, 44]] as const) {
      mutateTree(fx.src, rand, `skew ${skew}`);
      await goldenWrapper(fx, `skew ${skew}`);
      const good = snapshotGood(copies);
      const original = fs.readFileSync(statusFile, "utf8");
      // what a server whose clock is off writes: every record time and the file's own time shifted
      const shifted = original.split("\n").map((l) => l.replace(/"t":"([^"]+)"/, (_, t: string) => `"t":"${new Date(Date.parse(t) + skew).toISOString()}"`)).join("\n");
      fs.writeFileSync(statusFile, shifted);
      fs.utimesSync(statusFile, new Date(), new Date(Date.now() + skew));
      injected("server clock a day off");
      const r = await runClient(config, dest);
      expect({ skew, code: r.code }).toEqual({ skew, code: expected });
      checkGoodKept(good, `skew ${skew}`);
      fs.writeFileSync(statusFile, original);
      const again = await runClient(config, dest);
      expect({ skew, again: again.code }).toEqual({ skew, again: 0 });
      checkArchives(copies, `skew ${skew}: clock right again`);
    }
  }, 90_000);

  test("a server whose own clock is a day behind, then a day ahead (Deps clock): its new archive is never the one rotation removes", async () => {
    const rand = seeded(caseSeed("server clock skew"));
    const fx = fixture("keep = 2");
    seedTree(fx.src, rand, 40, 64 * 1024);
    await goldenWrapper(fx, "first backup");
    const cfg = requireServer(loadConfig(fx.config));
    const at = (skew: number): Deps => ({ ...realDeps(silentLog), clock: { now: () => new Date(Date.now() + skew) } });
    for (const skew of [-DAY, DAY, 0, -DAY]) {
      const context = `server clock ${skew / DAY} day(s) off`;
      const good = snapshotGood(fx.backup);
      mutateTree(fx.src, rand, context);
      injected("server clock a day off");
      const o = await runServer(cfg, at(skew));
      expect({ context, code: o.code }).toEqual({ context, code: 4 });
      // the archive just made sorts newest, so rotation kept it and removed an older one
      const names = sortArchives(fs.readdirSync(fx.backup), cfg.name);
      expect({ context, newest: names.at(-1) }).toEqual({ context, newest: o.archive!.file });
      checkGoodKept(good, context);
      checkArchives(fx.backup, context);
      checkClean(fx.backup, context);
    }
  }, 60_000);

  test("a backup host whose own clock is a day ahead (Deps clock): the server's status looks stale, nothing is lost", async () => {
    const lane = new PullLane(fixture().root, "ahead", seeded(caseSeed("client clock ahead")));
    await lane.publish();
    await lane.normalRun("first pull");
    await lane.publish();
    const good = snapshotGood(lane.copies);
    const cfg = requireClient(loadConfig(lane.config));
    injected("backup host clock a day off");
    const o = await runClientCore(cfg, { ...realDeps(silentLog), clock: { now: () => new Date(Date.now() + DAY + 60_000) } });
    expect(o.code).toBe(44);
    checkGoodKept(good, "client clock ahead");
    lane.check("client clock ahead", false);
    await lane.normalRun("clock right again");
  }, 60_000);
});
