/**
 * Incremental archives end to end, in both modes: 30 days of seeded random changes to a tree
 * (every kind test/helpers/tree-changes.ts makes), one server run a day on a clock a day
 * apart, and after every run the restore point of that day restored twice, by `shoot restore
 * --at` and by GNU tar alone with the commands docs/incremental.md gives, each compared with a
 * snapshot of the tree taken that day: content, type, mode, owner, mtime, link targets, hard
 * links. At the end every restore point retention kept restores to its own day's snapshot, and
 * `shoot verify --deep` passes every archive held. Then the chain is broken in the ways a disk
 * or an administrator breaks it, and the next run makes a full archive and says why.
 *
 * SHOOT_INCREMENTAL_SEED replays a failure (each mode prints the seed it used).
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fixture.ts";
import { seeded } from "../helpers/random.ts";
import { requireTool } from "../helpers/tools.ts";
import { snapshotDifferences, snapshotTree, type TreeEntry } from "../helpers/tree-compare.ts";
import { CHANGE_KINDS, changeTree, seedChangeTree } from "../helpers/tree-changes.ts";
import { code, codeName } from "../../src/core/common/codes.ts";
import { loadConfig, type ServerConfig } from "../../src/core/common/config.ts";
import { silentLog, systemDisk, type Deps } from "../../src/core/common/deps.ts";
import { runServer } from "../../src/core/server/server.ts";
import { chainOf, levelOf } from "../../src/core/state/chain.ts";
import { sortArchives } from "../../src/core/state/naming.ts";
import { spawner } from "../../src/io/process.ts";

const DAYS = 30;
const DAY_MS = 86_400_000;
const SEED = Number(process.env.SHOOT_INCREMENTAL_SEED ?? 20240624);
const TAR = requireTool("tar");
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

type Snapshot = Map<string, TreeEntry>;

interface Lane {
  root: string;
  src: string;
  backup: string;
  configFile: string;
  cfg: ServerConfig;
  now: number;
  deps: Deps;
}

function lane(settings: string): Lane {
  const root = tempDir("shoot-incremental-");
  roots.push(root);
  fs.chmodSync(root, 0o755);
  const src = path.join(root, "src");
  const backup = path.join(root, "backup");
  fs.mkdirSync(backup, { mode: 0o700 });
  const configFile = path.join(root, "shoot.toml");
  fs.writeFileSync(configFile, `[server]\nname = "inc"\nsources = [${JSON.stringify(src)}]\nbackup_dir = ${JSON.stringify(backup)}\nreserve = "0"\n${settings}\n`);
  const l: Lane = { root, src, backup, configFile, cfg: loadConfig(configFile).server!, now: Date.UTC(2025, 0, 1, 3, 0, 0), deps: undefined as unknown as Deps };
  l.deps = { clock: { now: () => new Date(l.now) }, disk: systemDisk, spawner, log: silentLog, hostname: "testhost", env: {} };
  return l;
}

/** One day: the server run on the lane's clock; returns the final code, the newest archive and the warnings. */
async function serverDay(l: Lane): Promise<{ code: number; archive: string; warnings: string[] }> {
  l.now += DAY_MS;
  const o = await runServer(l.cfg, l.deps);
  return { code: o.code, archive: o.archive?.file ?? "", warnings: o.warnings.map((w) => `${codeName(w.code)}: ${w.msg}`) };
}

const compare = (snap: Snapshot, dir: string) =>
  fs.lstatSync(dir, { throwIfNoEntry: false }) ? snapshotDifferences(snap, snapshotTree(dir), { owners: process.getuid?.() === 0, root: true, mtimeResolutionNs: 1000 }) : [`nothing restored at ${dir}`];

/** Restore point `point` with GNU tar alone, archive by archive, as docs/incremental.md says. */
async function gnuRestore(l: Lane, point: string, dest: string): Promise<string[]> {
  const c = chainOf(point, fs.readdirSync(l.backup));
  if (!c.ok) return [`chain of ${point}: ${c.missing}`];
  fs.mkdirSync(dest, { recursive: true });
  for (const a of c.chain) {
    const r = await spawner.run([TAR, "-x", "--listed-incremental=/dev/null", "-f", path.join(l.backup, a), "-C", dest], { timeoutMs: 60_000 });
    if (r.exitCode !== 0 || r.stderrTail.join("").trim() !== "") return [`GNU tar on ${a}: exit ${r.exitCode}: ${r.stderrTail.join(" ")}`];
  }
  return [];
}

/** Restore the point of time `at` with `shoot restore --at`. */
async function shootRestore(l: Lane, at: Date, dest: string): Promise<string[]> {
  const r = await runShoot(["restore", "--config", l.configFile, "--at", at.toISOString(), "--to", dest, "--quiet"], { timeoutMs: 60_000 });
  return r.code === 0 ? [] : [`shoot restore --at ${at.toISOString()}: exit ${r.code}: ${r.stdout}${r.stderr}`];
}

function restoredAt(dest: string, l: Lane): string {
  return path.join(dest, l.src);
}

for (const [i, mode] of (["chain", "differential"] as const).entries()) {
  describe(`incremental = "${mode}"`, () => {
    const seed = SEED + i;
    const settings = mode === "chain"
      ? 'incremental = "chain"\nfull_every = 8\nkeep = 4\ncompression = "gzip"'
      : 'incremental = "differential"\nfull_every = "10d"\nkeep = 5\ncompression = "zstd"';
    const l = lane(settings);
    const snapshots = new Map<string, { snap: Snapshot; at: Date }>();
    const counts = new Map<string, number>();
    const levels: number[] = [];

    test(`${DAYS} days of random changes: every day's restore point restores exactly, by shoot restore and by GNU tar alone`, async () => {
      console.log(`incremental "${mode}": seed ${seed} (SHOOT_INCREMENTAL_SEED=${SEED})`);
      const rand = seeded(seed);
      seedChangeTree(l.src, rand);
      let unchanged = 0;
      const due = [...CHANGE_KINDS];
      for (let day = 0; day < DAYS; day++) {
        const changes = day === 0 || rand() < 0.12 ? [] : changeTree(l.src, rand, 1 + Math.floor(rand() * 8), counts, due);
        const run = await serverDay(l);
        const context = `day ${day} (${changes.join(", ") || "no change"})`;
        expect({ context, code: run.code, warnings: run.warnings }).toEqual({ context, code: day === 0 ? code("FIRST_ARCHIVE") : run.code === code("UNCHANGED") ? code("UNCHANGED") : code("NEW_ARCHIVE"), warnings: [] });
        if (run.code === code("UNCHANGED")) {
          unchanged++;
          // "nothing changed" must be true: the point it names restores to today's tree
          expect({ context, changes }).toEqual({ context, changes: [] });
        } else levels.push(levelOf(run.archive)!);
        const snap = snapshotTree(l.src);
        const at = new Date(l.now);
        snapshots.set(run.archive, { snap, at });
        const byShoot = path.join(l.root, `shoot-${day}`);
        const byTar = path.join(l.root, `tar-${day}`);
        const problems = [
          ...(await shootRestore(l, at, byShoot)), ...compare(snap, restoredAt(byShoot, l)).map((d) => `shoot restore: ${d}`),
          ...(await gnuRestore(l, run.archive, byTar)), ...compare(snap, restoredAt(byTar, l)).map((d) => `GNU tar: ${d}`),
        ];
        expect({ context, point: run.archive, problems }).toEqual({ context, point: run.archive, problems: [] });
        fs.rmSync(byShoot, { recursive: true, force: true });
        fs.rmSync(byTar, { recursive: true, force: true });
      }
      const made = [...counts].map(([k, n]) => `${k} ${n}`).join(", ");
      console.log(`incremental "${mode}": ${DAYS} days, ${unchanged} unchanged, levels ${levels.join(" ")}; changes made: ${made}`);
      // every kind of change happened at least once, and fulls and incrementals alternated
      expect(CHANGE_KINDS.filter((k) => !counts.has(k))).toEqual([]);
      expect(levels.filter((x) => x === 0).length).toBeGreaterThan(1);
      expect(levels.filter((x) => x > 0).length).toBeGreaterThan(DAYS / 2);
      if (mode === "chain") expect(Math.max(...levels)).toBe(7);
      else expect(Math.max(...levels)).toBe(1);
    }, 300_000);

    test("every restore point retention kept still restores to its day, and verify --deep passes every archive", async () => {
      const held = sortArchives(fs.readdirSync(l.backup), "inc");
      const keep = l.cfg.keep;
      // the newest `keep` points, and the archives they need, are there; nothing else is
      const needed = new Set(held.slice(-keep).flatMap((p) => { const c = chainOf(p, held); return c.ok ? c.chain : [`broken: ${p}`]; }));
      expect([...needed].sort()).toEqual([...held].sort());
      for (const point of held) {
        const { snap, at } = snapshots.get(point)!;
        const dest = path.join(l.root, `again-${point}`);
        const problems = [...(await shootRestore(l, at, dest)), ...compare(snap, restoredAt(dest, l))];
        expect({ point, problems }).toEqual({ point, problems: [] });
        fs.rmSync(dest, { recursive: true, force: true });
      }
      const v = await runShoot(["verify", "--deep", "--quiet", "--config", l.configFile]);
      expect({ code: v.code, out: v.stdout }).toMatchObject({ code: 0 });
      console.log(`incremental "${mode}": ${held.length} archives held (keep = ${keep}), each restored again and verified deep`);
    }, 120_000);

    test("paths of a restore point; never over what exists without --force", async () => {
      // a directory with a file somewhere below it (an empty one is no conflict when restored
      // again), at any depth; a file itself when there is none
      const candidates: string[] = [];
      const walk = (rel: string): boolean => {
        let file = false;
        for (const n of fs.readdirSync(path.join(l.src, rel)).sort()) {
          const r = rel ? `${rel}/${n}` : n;
          const st = fs.lstatSync(path.join(l.src, r));
          if (st.isFile()) candidates.push(r);
          const below = st.isDirectory() ? walk(r) : st.isFile();
          if (st.isDirectory() && below) candidates.unshift(r);
          file ||= below;
        }
        return file;
      };
      if (levelOf(sortArchives(fs.readdirSync(l.backup), "inc").at(-1)!) === 0) {
        // the paths of a point made of several archives
        fs.writeFileSync(path.join(l.src, "restore-me"), "x");
        expect(levelOf((await serverDay(l)).archive)).toBeGreaterThan(0);
      }
      walk("");
      const sub = candidates[0]!;
      const dest = path.join(l.root, "paths");
      const restore = (...extra: string[]) => runShoot(["restore", "--config", l.configFile, "--at", "newest", "--to", dest, "--quiet", ...extra, path.join(l.src, sub)]);
      const first = await restore();
      expect({ code: first.code, out: first.stdout }).toMatchObject({ code: 0 });
      expect(compare(snapshotTree(path.join(l.src, sub)), path.join(dest, l.src, sub))).toEqual([]);
      // again: everything is there, so nothing is written and the code says why
      const stamp = fs.statSync(path.join(dest, l.src, sub)).mtimeMs;
      const again = await restore();
      expect({ code: again.code, exists: again.stdout.includes("exist") || again.stderr.includes("exist") }).toEqual({ code: code("RESTORE_EXISTS"), exists: true });
      expect(fs.statSync(path.join(dest, l.src, sub)).mtimeMs).toBe(stamp);
      const forced = await restore("--force");
      expect(forced.code).toBe(0);
      expect(compare(snapshotTree(path.join(l.src, sub)), path.join(dest, l.src, sub))).toEqual([]);
      console.log(`incremental "${mode}": /${sub} of ${sortArchives(fs.readdirSync(l.backup), "inc").at(-1)} restored alone, refused over itself, then forced`);
      fs.rmSync(dest, { recursive: true, force: true });
    }, 60_000);

    test("a missing or damaged link of the chain: the next run makes a full archive with CHAIN_BROKEN", async () => {
      fs.writeFileSync(path.join(l.src, "one more"), "x");
      let run = await serverDay(l);
      if (levelOf(run.archive) === 0) {
        fs.writeFileSync(path.join(l.src, "and another"), "y");
        run = await serverDay(l);
      }
      expect(levelOf(run.archive)).toBeGreaterThan(0);
      const chain = chainOf(run.archive, fs.readdirSync(l.backup));
      if (!chain.ok) throw new Error(chain.missing);
      // damage: the base archive is cut short (its size no longer what its list recorded)
      const base = path.join(l.backup, chain.chain.at(-2)!);
      fs.truncateSync(base, fs.statSync(base).size - 1);
      run = await serverDay(l);
      expect({ code: run.code, level: levelOf(run.archive), warned: run.warnings.some((w) => w.startsWith("CHAIN_BROKEN")) }).toEqual({ code: code("NEW_ARCHIVE"), level: 0, warned: true });
      // nothing changed, but the newest point is fine now: unchanged, no warning
      run = await serverDay(l);
      expect({ code: run.code, warnings: run.warnings }).toEqual({ code: code("UNCHANGED"), warnings: [] });
      // missing: an incremental made next, then its full removed by hand
      fs.writeFileSync(path.join(l.src, "third"), "z");
      run = await serverDay(l);
      const full = chainOf(run.archive, fs.readdirSync(l.backup));
      if (!full.ok) throw new Error(full.missing);
      expect(full.chain.length).toBe(2);
      fs.rmSync(path.join(l.backup, full.chain[0]!));
      // unchanged tree: the point it would name is broken, so a new full archive is made
      run = await serverDay(l);
      expect({ code: run.code, level: levelOf(run.archive), warned: run.warnings.some((w) => w.startsWith("CHAIN_BROKEN")) }).toEqual({ code: code("NEW_ARCHIVE"), level: 0, warned: true });
      const snap = snapshotTree(l.src);
      const dest = path.join(l.root, "after-break");
      expect([...(await gnuRestore(l, run.archive, dest)), ...compare(snap, restoredAt(dest, l))]).toEqual([]);
    }, 120_000);
  });
}
