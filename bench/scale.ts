/**
 * How the figures grow: a first `shoot server` run, a run that finds nothing changed (9) and a
 * whole `shoot restore`, on mixed trees from 100 MiB to 5 GiB and on trees of 10,000 to
 * 1,000,000 small files. Time should grow about linearly (the per-GiB and per-file columns stay
 * level) and peak memory not at all. Every archive made is extracted by GNU tar and compared with
 * its source, and each restore is compared with its source too.
 */
import fs from "node:fs";
import path from "node:path";
import { code } from "../src/core/common/codes.ts";
import { parseSize } from "../src/core/common/units.ts";
import { treeDifferences } from "../test/helpers/tree-compare.ts";
import { measure, MiB, type Measured } from "./lib.ts";
import { afterFreedInodes, freshDir, removeTree, serverRun, startAlike, writeServerConfig, type BenchContext } from "./shoot.ts";
import { mixedTree } from "./tree.ts";
import { smallTree } from "./whole.ts";

const FIRST = code("FIRST_ARCHIVE");
const UNCHANGED = code("UNCHANGED");

interface Point {
  label: string;
  first: Measured;
  unchanged: Measured;
  restore: Measured;
  /** Per-unit divisor and its name: GiB or thousands of files. */
  units: number;
  unit: string;
  checkLabel: string;
}

/**
 * One tree: first run, unchanged run, restore; the restore compared with the tree. The target
 * stays until the section ends and the archive is checked then: a removal here would slow the
 * restores after it (shoot.ts, afterFreedInodes).
 */
async function point(ctx: BenchContext, root: string, tree: string, label: string, c: "gzip" | "zstd", units: number, unit: string): Promise<Point> {
  const dir = freshDir(path.join(root, "run"));
  try {
    const backup = path.join(dir, "backup");
    fs.mkdirSync(backup);
    const config = writeServerConfig(path.join(dir, "shoot.toml"), { name: "bench", sources: [tree], backupDir: backup, compression: c });
    console.error(`scale, ${label}: first run (${c}), a run that finds nothing changed, a whole restore ...`);
    const checkLabel = `server ${c}, ${label} (scale)`;
    // each timed run from dropped caches with its input read back (shoot.ts, startAlike)
    startAlike([tree]);
    const first = await serverRun(ctx.bin, config, backup, FIRST, { checks: ctx.checks, label: checkLabel, source: tree });
    const unchanged = await serverRun(ctx.bin, config, backup, UNCHANGED);
    const archive = path.join(backup, first.final.archive!.file);
    const to = path.join(root, `to-${path.basename(tree)}`);
    fs.mkdirSync(to);
    startAlike([archive]);
    const restore = await measure([ctx.bin, "restore", "--quiet", "--config", config, archive, "--to", to]);
    const diffs = treeDifferences(tree, path.join(to, tree.slice(1)), { owners: process.getuid?.() === 0, mtimeResolutionNs: 1000 });
    if (diffs.length > 0) throw new Error(`shoot restore of ${label}: ${diffs.length} differences from the source, ${diffs.slice(0, 3).join("; ")}`);
    ctx.checks.keep(checkLabel, archive, { copy: true });
    return { label, first, unchanged, restore, units, unit, checkLabel };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function pushPoints(ctx: BenchContext, title: string, points: Point[]): void {
  for (const [what, pick] of [["first run", (p: Point) => p.first], ["nothing changed (9)", (p: Point) => p.unchanged], ["whole restore", (p: Point) => p.restore]] as const) {
    for (const p of points) {
      const m = pick(p);
      ctx.rows.push({
        name: `scale, ${title}: ${what}, ${p.label}`,
        wallMs: m.wallMs,
        cpuMs: m.cpuMs,
        peakRss: m.peakRss,
        note: `${(m.wallMs / 1000 / p.units).toFixed(3)} s per ${p.unit}`,
        target: "≤ 120 MiB",
        verdict: m.peakRss <= 120 * MiB ? "pass" : "FAIL",
      });
    }
  }
}

/** The sizes and file counts to measure, from the command line (e.g. "100MiB,1GiB,5GiB" and "10000,100000,1000000"). */
export function scalePlan(sizes: string, counts: string): { sizes: number[]; counts: number[] } {
  const s = sizes.split(",").map((x) => parseSize(x) ?? NaN);
  const c = counts.split(",").map(Number);
  if (s.some((x) => !(x >= 8 * MiB))) throw new Error(`--scale-sizes: expected sizes of at least 8MiB, got ${sizes}`);
  if (c.some((x) => !Number.isInteger(x) || x < 200)) throw new Error(`--scale-files: expected whole numbers of at least 200, got ${counts}`);
  return { sizes: s, counts: c };
}

export async function scaleSection(ctx: BenchContext, plan: { sizes: number[]; counts: number[] }): Promise<void> {
  const root = freshDir(path.join(ctx.dataDir, "scale"));
  try {
    const trees = [
      ...plan.sizes.map((size) => {
        const info = mixedTree(ctx.dataDir, size);
        const label = `${(info.bytes / MiB).toFixed(0)} MiB, ${info.files} files`;
        return { tree: path.join(ctx.dataDir, `tree-${size}`), label, c: "zstd" as const, units: info.bytes / (1024 * MiB), unit: "GiB" };
      }),
      ...plan.counts.map((n) => ({ tree: smallTree(ctx.dataDir, n), label: `${n} small files`, c: "gzip" as const, units: n / 1000, unit: "1,000 files" })),
    ];
    afterFreedInodes();
    const points: Point[] = [];
    for (const t of trees) points.push(await point(ctx, root, t.tree, t.label, t.c, t.units, t.unit));
    pushPoints(ctx, "mixed tree, zstd", points.slice(0, plan.sizes.length));
    pushPoints(ctx, "small files, gzip", points.slice(plan.sizes.length));
    for (const p of points) await ctx.checks.checkNow(p.checkLabel, ctx.rows);
  } finally {
    removeTree(root);
  }
}
