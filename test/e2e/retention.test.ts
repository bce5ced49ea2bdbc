/**
 * Retention tiers on real runs: the server making archives at chosen times (its clock is the
 * one thing replaced), the backup host pulling each one, and `shoot prune --dry-run` telling
 * what the rules keep. What is held at the end is stated by hand, not by the function under
 * test; every archive held is extracted with GNU tar and compared with the tree it was made from.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { parseConfig } from "../../src/core/common/config.ts";
import { realDeps, silentLog, type Deps } from "../../src/core/common/deps.ts";
import { runServer } from "../../src/core/server/server.ts";
import { sortArchives } from "../../src/core/state/naming.ts";
import { runShoot } from "../helpers/cli.ts";
import { runClient, writeClientConfig } from "../helpers/client.ts";
import { serverFixture, statusRecords, type ServerFixture } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";

const TAR = requireTool("tar");
const ZONE = "Europe/Berlin";
const savedTz = process.env.TZ;
process.env.TZ = ZONE;
const fixtures: ServerFixture[] = [];
afterAll(() => {
  for (const f of fixtures) f.cleanup();
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

function fixture(keepLines: string): ServerFixture {
  const fx = serverFixture(keepLines);
  fixtures.push(fx);
  return fx;
}

/** A server run whose clock says `when`; the source changes first, and a copy of it is kept to compare the archive with. */
async function runAt(fx: ServerFixture, when: Date, snaps: string): Promise<string> {
  fs.writeFileSync(path.join(fx.src, "counter.txt"), `made at ${when.toISOString()}\n`);
  wholeSeconds(fx.src);
  const cfg = parseConfig(fs.readFileSync(fx.config, "utf8"), fx.config).server!;
  const deps: Deps = { ...realDeps(silentLog), clock: { now: () => when } };
  const o = await runServer(cfg, deps);
  expect({ when: when.toISOString(), golden: [4, 30].includes(o.code), message: o.message }).toMatchObject({ golden: true });
  fs.mkdirSync(snaps, { recursive: true });
  const cp = Bun.spawnSync(["cp", "-a", fx.src, path.join(snaps, o.archive!.file)]);
  expect(cp.exitCode).toBe(0);
  return o.archive!.file;
}

/** Times to whole seconds, deepest first: the server's list keeps microseconds, the snapshot nanoseconds. */
function wholeSeconds(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) wholeSeconds(p);
    if (e.isSymbolicLink()) continue;
    const t = Math.floor(fs.statSync(p).mtimeMs / 1000);
    fs.utimesSync(p, t, t);
  }
  const t = Math.floor(fs.statSync(dir).mtimeMs / 1000);
  fs.utimesSync(dir, t, t);
}

/** Extract an archive with GNU tar and compare the source inside it with the copy taken when it was made. */
function extractAndCompare(file: string, fx: ServerFixture, snapshot: string): void {
  const out = fs.mkdtempSync(path.join(fx.root, "x-"));
  const r = Bun.spawnSync([TAR, "-x", "-p", "-z", "-f", file, "-C", out]);
  expect({ file, tar: r.exitCode, err: r.stderr.toString() }).toEqual({ file, tar: 0, err: "" });
  expect({ file, diffs: treeDifferences(snapshot, path.join(out, fx.src)) }).toEqual({ file, diffs: [] });
  fs.rmSync(out, { recursive: true, force: true });
}

/** Local wall-clock time in Berlin (CET in March before the 31st: UTC+1). */
const berlin = (day: string, hhmm: string) => new Date(`2024-03-${day}T${hhmm}:00+01:00`);

describe("retention tiers on the server", () => {
  test("keep_last 1, keep_daily 3, keep_weekly 2 over two weeks of runs: the newest of each day and week stays, ROTATED says what went and why", async () => {
    const fx = fixture("keep_last = 1\nkeep_daily = 3\nkeep_weekly = 2");
    const snaps = path.join(fx.root, "snaps");
    // Monday 4 March to Tuesday 12 March 2024 (ISO weeks 10 and 11), several runs some days
    const runs = [["04", "10:00"], ["04", "18:00"], ["05", "10:00"], ["06", "10:00"], ["06", "20:00"], ["07", "10:00"], ["11", "10:00"], ["12", "09:00"], ["12", "10:00"]];
    const made: Record<string, string> = {};
    const m = (k: string) => made[k]!;
    for (const [day, hhmm] of runs) made[`${day} ${hhmm}`] = await runAt(fx, berlin(day!, hhmm!), snaps);
    // by hand: last → 12 10:00; daily → 12 10:00, 11, 07; weekly → W11: 12 10:00, W10: 07 (Thursday)
    const held = sortArchives(fs.readdirSync(fx.backup));
    expect(held).toEqual([m("07 10:00"), m("11 10:00"), m("12 10:00")]);
    for (const a of held) {
      expect(fs.existsSync(path.join(fx.backup, `${a}.md5`))).toBe(true);
      extractAndCompare(path.join(fx.backup, a), fx, path.join(snaps, a));
    }
    // the last run removed 12 09:00: its record names it, when it was made and the rules
    const rotated = statusRecords(path.join(fx.backup, "server.status")).filter((r) => r.name === "ROTATED");
    expect(rotated).toHaveLength(1);
    expect(rotated[0]!.msg).toBe(`removed ${m("12 09:00")} (made ${berlin("12", "09:00").toISOString()}): no rule of keep_last 1, keep_daily 3, keep_weekly 2 keeps it`);
    expect(rotated[0]!.data).toEqual({ rules: "keep_last 1, keep_daily 3, keep_weekly 2", removed: [{ file: m("12 09:00"), made: berlin("12", "09:00").toISOString() }] });

    // prune --dry-run shows the same three, each with what keeps it, in the host's zone
    const dry = await runShoot(["prune", "--dry-run", "--config", fx.config], { env: { TZ: ZONE } });
    expect({ code: dry.code, err: dry.stderr }).toEqual({ code: 0, err: "" });
    const lines = dry.stdout.trim().split("\n");
    expect(lines[0]).toBe(`server test (${fx.backup}): keep_last 1, keep_daily 3, keep_weekly 2; 3 held, 0 would be removed`);
    expect(lines[1]).toMatch(new RegExp(`^  ${m("07 10:00")}  2024-03-07 10:00:00  kept: daily #3 \\(2024-03-07\\), weekly #2 \\(2024-W10\\)$`));
    expect(lines[2]).toMatch(new RegExp(`^  ${m("11 10:00")}  2024-03-11 10:00:00  kept: daily #2 \\(2024-03-11\\)$`));
    expect(lines[3]).toMatch(new RegExp(`^  ${m("12 10:00")}  2024-03-12 10:00:00  kept: last #1, daily #1 \\(2024-03-12\\), weekly #1 \\(2024-W11\\), newest verified copy$`));
    expect(lines.at(-1)).toBe(`times in ${ZONE}, the zone periods are taken in`);

    // tighter rules in the file: the dry run says what the next run removes, and the run does it
    fs.writeFileSync(fx.config, fs.readFileSync(fx.config, "utf8").replace("keep_daily = 3", "keep_daily = 2").replace("keep_weekly = 2", "keep_weekly = 1"));
    const json = await runShoot(["prune", "--dry-run", "--json", "--config", fx.config], { env: { TZ: ZONE } });
    const plan = JSON.parse(json.stdout) as Array<{ copies: Array<{ file: string; keep: boolean }> }>;
    const goes = plan[0]!.copies.filter((c) => !c.keep).map((c) => c.file);
    expect(goes).toEqual([m("07 10:00")]);
    await runAt(fx, berlin("13", "10:00"), snaps);
    const after = sortArchives(fs.readdirSync(fx.backup));
    expect(after.includes(m("07 10:00"))).toBe(false);
    expect(after).toHaveLength(2);
    const without = await runShoot(["prune", "--config", fx.config]);
    expect(without.code).toBe(2);
    expect(without.stderr).toContain("give --dry-run");
  }, 120_000);
});

describe("retention tiers on the backup host", () => {
  test("a source's own keep_daily 2 over [client]'s keep = 5: copies are placed by the time the server made them", async () => {
    const fx = fixture("keep = 10");
    const snaps = path.join(fx.root, "snaps");
    const dest = path.join(fx.root, "dest");
    const clientCfg = writeClientConfig(path.join(fx.root, "client.toml"), { dest, keep: 5, max_age: "400d", sources: [{ name: "self", remote: fx.backup }] });
    fs.appendFileSync(clientCfg, "keep_daily = 2\n");
    // days before now, so that the server's records are not from the future
    const day0 = Date.now() - 10 * 86_400_000;
    const at = (d: number, h: number) => new Date(day0 + d * 86_400_000 + h * 3_600_000);
    const pulled: string[] = [];
    for (const [d, h] of [[0, 1], [0, 5], [1, 1], [2, 1], [2, 3]] as const) {
      pulled.push(await runAt(fx, at(d, h), snaps));
      const r = await runClient(clientCfg, dest);
      expect({ code: r.code, golden: [4, 30].includes(r.codes.self!) }).toEqual({ code: 0, golden: true });
    }
    const local = (t: Date) => `${t.getFullYear()}-${String(t.getMonth() + 1).padStart(2, "0")}-${String(t.getDate()).padStart(2, "0")}`;
    // by hand: the newest copy of each of the two last local days that have copies
    const byDay = new Map<string, string>();
    const times = [at(0, 1), at(0, 5), at(1, 1), at(2, 1), at(2, 3)];
    pulled.forEach((f, i) => byDay.set(local(times[i]!), f));
    const want = [...byDay.values()].slice(-2);
    const copies = sortArchives(fs.readdirSync(path.join(dest, "self")));
    expect(copies).toEqual(want);
    for (const c of copies) {
      expect(Math.abs(fs.statSync(path.join(dest, "self", c)).mtimeMs - times[pulled.indexOf(c)]!.getTime())).toBeLessThan(1000);
      extractAndCompare(path.join(dest, "self", c), fx, path.join(snaps, c));
    }
    const rotated = statusRecords(path.join(dest, "client.status")).filter((r) => r.name === "ROTATED");
    expect(rotated.at(-1)!.msg).toContain("no rule of keep_daily 2 keeps it");
    const dry = await runShoot(["prune", "--dry-run", "--json", "--config", clientCfg], { env: { TZ: ZONE } });
    const plan = JSON.parse(dry.stdout) as Array<{ role: string; owner: string; rules: string; copies: Array<{ file: string; keep: boolean; reasons: string[] }> }>;
    expect(plan.map((g) => [g.role, g.owner, g.rules])).toEqual([["client", "self", "keep_daily 2"]]);
    expect(plan[0]!.copies.map((c) => [c.file, c.keep])).toEqual(want.map((f) => [f, true]));
    const unknown = await runShoot(["prune", "--dry-run", "--config", clientCfg, "nope"]);
    expect(unknown.code).toBe(53);
  }, 180_000);
});
