/**
 * Whole restores, for each compression, of the mixed tree and of the many small files:
 * `shoot restore` (which checks the archive's checksum and reads it to its end before it is
 * done) against what an administrator would type instead, `md5sum -c` and GNU `tar -xpf`, and
 * against `restic restore` of the same tree from a repository made in the same run. Every run
 * restores into a directory of its own; shoot's last restore is compared with the source, file
 * by file, as GNU tar's extractions of every archive are (restores.ts).
 */
import fs from "node:fs";
import path from "node:path";
import { code } from "../src/core/common/codes.ts";
import { treeDifferences } from "../test/helpers/tree-compare.ts";
import { alternating, measure, measureAll, MiB, roundSpread, verdict, type Measured, type Row } from "./lib.ts";
import { afterFreedInodes, freshDir, removeTree, serverRun, settle, startAlike, writeServerConfig, type BenchContext } from "./shoot.ts";

const FIRST = code("FIRST_ARCHIVE");
const TAR_FLAG = { gzip: "-xzpf", zstd: "--zstd", none: "-xpf" } as const;
const RESTIC_ENV = { ...process.env, RESTIC_PASSWORD: "bench only", RESTIC_CACHE_DIR: "" };

/** A fresh directory per run under `root`: ext4 creates files slowly right after many were removed there. */
function targets(root: string): () => string {
  freshDir(root);
  let n = 0;
  return () => {
    const t = path.join(root, String(++n));
    fs.mkdirSync(t);
    settle(t);
    return t;
  };
}

/** GNU tar's extraction of one archive, the way its flags name the compression. */
function tarExtract(c: "gzip" | "zstd" | "none", archive: string, to: string): string[] {
  return c === "zstd" ? ["tar", "--zstd", "-xpf", archive, "-C", to] : ["tar", TAR_FLAG[c], archive, "-C", to];
}

interface RestoreRun {
  shoot: Measured;
  peer: Measured;
  label: string;
}

interface Prepared {
  c: "gzip" | "zstd" | "none";
  backup: string;
  config: string;
  archive: string;
  label: string;
}

/** shoot server makes the archive of one compression, kept to be checked once the timed runs are over. */
async function prepare(ctx: BenchContext, tree: string, treeLabel: string, c: Prepared["c"], dir: string): Promise<Prepared> {
  const backup = freshDir(path.join(dir, `backup-${c}`));
  const config = writeServerConfig(path.join(dir, `shoot-${c}.toml`), { name: "bench", sources: [tree], backupDir: backup, compression: c });
  const label = `server ${c}, ${treeLabel}, to restore`;
  const archive = path.join(backup, (await serverRun(ctx.bin, config, backup, FIRST, { checks: ctx.checks, label, source: tree })).final.archive!.file);
  ctx.checks.keep(label, archive, { copy: true });
  return { c, backup, config, archive, label };
}

/**
 * Both restores of one archive take turns, each into a directory of its own; the targets stay
 * until the section ends (a removal would slow the restores after it: afterFreedInodes).
 */
async function timedRestores(ctx: BenchContext, tree: string, treeLabel: string, p: Prepared, dir: string): Promise<RestoreRun> {
  const { c, backup, config, archive } = p;
  const next = targets(path.join(dir, `to-${c}`));
  let last = "";
  console.error(`restore ${c}, ${treeLabel}: md5sum -c + GNU tar and shoot restore, taking turns ...`);
  const [peer, shoot] = await alternating(ctx.runs, [
    () => {
      const to = next();
      startAlike([archive]);
      return measureAll([["md5sum", "-c", "--quiet", `${archive}.md5`], tarExtract(c, archive, to)], { cwd: backup });
    },
    async () => {
      const to = next();
      startAlike([archive]);
      const m = await measure([ctx.bin, "restore", "--quiet", "--config", config, archive, "--to", to]);
      last = path.join(to, tree.slice(1));
      return m;
    },
  ]);
  // what shoot restore wrote, compared with the source as GNU tar's extractions are
  const diffs = treeDifferences(tree, last, { owners: process.getuid?.() === 0, mtimeResolutionNs: 1000 });
  if (diffs.length > 0) throw new Error(`shoot restore: ${last} differs from ${tree} in ${diffs.length} ways: ${diffs.slice(0, 3).join("; ")}`);
  fs.rmSync(backup, { recursive: true, force: true });
  return { shoot, peer, label: c };
}

/** restic's repository of the tree (made once, not timed), then its restores against nothing: the rows compare. */
async function resticRestore(ctx: BenchContext, tree: string, dir: string, runs: number): Promise<Measured> {
  const repo = path.join(dir, "restic-repo");
  fs.rmSync(repo, { recursive: true, force: true });
  console.error(`restore: restic init and backup of ${tree} ...`);
  await measure(["restic", "-r", repo, "init"], { env: RESTIC_ENV, installHint: "apt-get install restic" });
  await measure(["restic", "-r", repo, "backup", "--no-cache", tree], { env: RESTIC_ENV });
  const files = fs.readdirSync(repo, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
  const next = targets(path.join(dir, "restic-to"));
  const ms: Measured[] = [];
  for (let i = 0; i < runs; i++) {
    const to = next();
    startAlike(files);
    ms.push(await measure(["restic", "-r", repo, "--no-cache", "restore", "latest", "--target", to], { env: RESTIC_ENV }));
  }
  fs.rmSync(repo, { recursive: true, force: true });
  return ms.sort((a, b) => a.wallMs - b.wallMs)[(ms.length - 1) >> 1]!;
}

/**
 * Restore rows for one tree: per compression the peer (md5sum -c + tar -x) and shoot restore
 * (time ≤ 1.0× the peer's, ≤ 120 MiB), then restic restore and shoot's fastest against it.
 */
export async function restoreRows(ctx: BenchContext, tree: string, treeLabel: string, bytes?: number): Promise<void> {
  const dir = path.join(ctx.dataDir, "restore");
  freshDir(dir);
  try {
    const ready: Prepared[] = [];
    for (const c of ["gzip", "zstd", "none"] as const) ready.push(await prepare(ctx, tree, treeLabel, c, dir));
    afterFreedInodes();
    const done: RestoreRun[] = [];
    for (const p of ready) done.push(await timedRestores(ctx, tree, treeLabel, p, dir));
    const restic = await resticRestore(ctx, tree, dir, ctx.runs);
    // GNU tar's extractions of the archives remove what they extract: after every timed run
    for (const p of ready) await ctx.checks.checkNow(p.label, ctx.rows);
    for (const r of done) pushRestore(ctx.rows, r, treeLabel, bytes);
    pushRestic(ctx.rows, restic, done, treeLabel, bytes);
  } finally {
    removeTree(dir);
  }
}

function pushRestore(rows: Row[], r: RestoreRun, treeLabel: string, bytes: number | undefined): void {
  const ratio = r.shoot.wallMs / r.peer.wallMs;
  const rssOk = r.shoot.peakRss <= 120 * MiB;
  const v = verdict(ratio, 1, 1, false);
  rows.push({ name: `md5sum -c + GNU tar ${TAR_FLAG[r.label as "gzip"]}, ${treeLabel} (restore peer)`, wallMs: r.peer.wallMs, cpuMs: r.peer.cpuMs, bytes, peakRss: r.peer.peakRss, ratio: 1 });
  rows.push({
    name: `shoot restore ${r.label}, whole archive, ${treeLabel}`, wallMs: r.shoot.wallMs, cpuMs: r.shoot.cpuMs, bytes, peakRss: r.shoot.peakRss, ratio,
    note: ["time × ref; checksum checked, archive read to its end", roundSpread(r.shoot, r.peer)].filter(Boolean).join("; "), target: "time ≤ 1.0×, ≤ 120 MiB", verdict: v === "FAIL" || rssOk ? v : "FAIL",
  });
}

function pushRestic(rows: Row[], restic: Measured, done: RestoreRun[], treeLabel: string, bytes: number | undefined): void {
  rows.push({ name: `restic restore latest, ${treeLabel} (restore peer)`, wallMs: restic.wallMs, cpuMs: restic.cpuMs, bytes, peakRss: restic.peakRss, ratio: 1, note: "its own repository, made in this run" });
  for (const r of done) {
    const ratio = r.shoot.wallMs / restic.wallMs;
    rows.push({ name: `  shoot restore ${r.label}, ${treeLabel}, against restic`, ratio, note: "time × restic", target: "time ≤ 1.0×", verdict: verdict(ratio, 1, 1, false) });
  }
}
