/**
 * SIGKILL of `shoot server` at random moments of runs that make incremental archives (a chain,
 * so every run extends the one before): after each kill, and the normal run that follows it,
 * every archive under a final name passes `md5sum -c`, every restore point held has its whole
 * chain, and the newest one restores exactly to the tree, by `shoot restore` and by GNU tar
 * alone. A killed run must never leave a link that a later archive is made against wrongly.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot, startShoot } from "../helpers/cli.ts";
import { serverFixture, type ServerFixture } from "../helpers/fixture.ts";
import { caseSeed, checkArchives, faultFile, injected, scaled } from "../helpers/faults.ts";
import { seeded } from "../helpers/random.ts";
import { requireTool } from "../helpers/tools.ts";
import { snapshotDifferences, snapshotTree } from "../helpers/tree-compare.ts";
import { changeTree, seedChangeTree } from "../helpers/tree-changes.ts";
import { chainOf, levelOf } from "../../src/core/state/chain.ts";
import { isArchiveName, sortArchives } from "../../src/core/state/naming.ts";
import { spawner } from "../../src/io/process.ts";

faultFile(import.meta.path);

const KILLS = scaled(12);
const TAR = requireTool("tar");
let fx: ServerFixture;
afterAll(() => fx?.cleanup());

const held = (dir: string) => sortArchives(fs.readdirSync(dir).filter((n) => isArchiveName(n) && fs.existsSync(path.join(dir, `${n}.md5`))));

/** Every problem with the backup directory now: a point without its chain, or a newest point that does not restore to the tree. */
async function problems(context: string): Promise<string[]> {
  checkArchives(fx.backup, context);
  const out: string[] = [];
  const names = held(fx.backup);
  for (const p of names) {
    const c = chainOf(p, names);
    if (!c.ok) out.push(`${p}: ${c.missing}`);
  }
  const newest = names.at(-1)!;
  const snap = snapshotTree(fx.src);
  const opts = { owners: process.getuid?.() === 0, root: true, mtimeResolutionNs: 1000 };
  const byShoot = path.join(fx.root, "restored-shoot");
  const r = await runShoot(["restore", "--config", fx.config, "--to", byShoot, "--quiet"]);
  if (r.code !== 0) out.push(`shoot restore: ${r.code} ${r.stdout}${r.stderr}`);
  else out.push(...snapshotDifferences(snap, snapshotTree(path.join(byShoot, fx.src)), opts).map((d) => `shoot restore ${newest}: ${d}`));
  const byTar = path.join(fx.root, "restored-tar");
  fs.mkdirSync(byTar);
  const c = chainOf(newest, names);
  for (const a of c.ok ? c.chain : []) {
    const t = await spawner.run([TAR, "-x", "--listed-incremental=/dev/null", "-f", path.join(fx.backup, a), "-C", byTar], { timeoutMs: 60_000 });
    if (t.exitCode !== 0) out.push(`GNU tar ${a}: ${t.stderrTail.join(" ")}`);
  }
  out.push(...snapshotDifferences(snap, snapshotTree(path.join(byTar, fx.src)), opts).map((d) => `GNU tar ${newest}: ${d}`));
  fs.rmSync(byShoot, { recursive: true, force: true });
  fs.rmSync(byTar, { recursive: true, force: true });
  return out.map((p) => `${context}: ${p}`);
}

describe("SIGKILL during incremental runs", () => {
  test(`${KILLS} server runs killed at random moments: no chain left that restores wrong`, async () => {
    const rand = seeded(caseSeed("kill incremental"));
    fx = serverFixture('incremental = "chain"\nfull_every = 6\nkeep = 3', {});
    fs.chmodSync(fx.root, 0o755);
    seedChangeTree(fx.src, rand);
    const t0 = performance.now();
    expect((await runShoot(["server", "--config", fx.config, "--quiet"])).code).toBe(0);
    let window = performance.now() - t0;
    let landed = 0;
    const levels: number[] = [];
    for (let i = 0; landed < KILLS && i < KILLS * 3; i++) {
      const context = `kill ${i}`;
      changeTree(fx.src, rand, 1 + Math.floor(rand() * 6));
      const p = startShoot(["server", "--config", fx.config, "--quiet"]);
      await Bun.sleep(rand() * window);
      const hit = p.exitCode === null;
      p.kill("SIGKILL");
      await p.exited;
      if (hit) {
        landed++;
        injected("SIGKILL incremental server");
      } else window *= 0.8; // the run was over: aim earlier
      // the next normal run ends golden and the chain it leaves restores
      const next = await runShoot(["server", "--config", fx.config, "--quiet"]);
      expect({ context, code: next.code, out: next.stdout + next.stderr }).toEqual({ context, code: 0, out: "" });
      levels.push(levelOf(held(fx.backup).at(-1)!)!);
      expect(await problems(context)).toEqual([]);
    }
    console.log(`kill-incremental: ${landed} kills landed; newest levels after each ${levels.join(" ")}`);
    expect(landed).toBe(KILLS);
    expect(Math.max(...levels)).toBeGreaterThan(1);
  }, 300_000);
});
