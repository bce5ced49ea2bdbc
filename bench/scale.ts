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
import { freshDir, serverRun, startAlike, writeServerConfig, type BenchContext } from "./shoot.ts";
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
}

/** One tree: first run, unchanged run, restore; the archive and the restore checked. */
async function point(ctx: BenchContext, tree: string, label: string, c: "gzip" | "zstd", units: number, unit: string): Promise<Point> {
  const dir = freshDir(path.join(ctx.dataDir, "scale"));
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
    const to = path.join(dir, "to");
    fs.mkdirSync(to);
    startAlike([archive]);
    const restore = await measure([ctx.bin, "restore", "--quiet", "--config", config, archive, "--to", to]);
    const diffs = treeDifferences(tree, path.join(to, tree.slice(1)), { owners: process.getuid?.() === 0, mtimeResolutionNs: 1000 });
    if (diffs.length > 0) throw new Error(`shoot restore of ${label}: ${diffs.length} differences from the source, ${diffs.slice(0, 3).join("; ")}`);
    fs.rmSync(to, { recursive: true, force: true });
    ctx.checks.keep(checkLabel, archive);
    await ctx.checks.checkNow(checkLabel, ctx.rows);
    return { label, first, unchanged, restore, units, unit };
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
  const bySize: Point[] = [];
  for (const size of plan.sizes) {
    const info = mixedTree(ctx.dataDir, size);
    const tree = path.join(ctx.dataDir, `tree-${size}`);
    bySize.push(await point(ctx, tree, `${(info.bytes / MiB).toFixed(0)} MiB, ${info.files} files`, "zstd", info.bytes / (1024 * MiB), "GiB"));
  }
  pushPoints(ctx, "mixed tree, zstd", bySize);
  const byCount: Point[] = [];
  for (const n of plan.counts) byCount.push(await point(ctx, smallTree(ctx.dataDir, n), `${n} small files`, "gzip", n / 1000, "1,000 files"));
  pushPoints(ctx, "small files, gzip", byCount);
}
