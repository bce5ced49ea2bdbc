/**
 * Whole `shoot` runs of the compiled binary against the commands an administrator would run
 * instead, each pair measured in the same run:
 *   server     a first `shoot server` run on the mixed tree vs `tar -czf`/`tar --zstd` + md5sum
 *   unchanged  a `shoot server` run that finds nothing changed (9) vs `find TREE -newer REF`
 *   startup    `shoot --version` vs a compiled bun hello-world
 */
import fs from "node:fs";
import path from "node:path";
import { code } from "../src/core/common/codes.ts";
import { isArchiveName } from "../src/core/state/naming.ts";
import { spawner, describeResult } from "../src/io/process.ts";
import { makeRng, textLike } from "./gen.ts";
import { alternating, measure, measureAll, measureStart, MiB, verdict, type Measured } from "./lib.ts";
import { freshDir, pushMemoryPair, pushPair, seconds, serverRun, writeServerConfig, type BenchContext } from "./shoot.ts";

const FIRST = code("FIRST_ARCHIVE");
const UNCHANGED = code("UNCHANGED");

/**
 * A first `shoot server` run (into an empty backup_dir each time) against GNU tar + md5sum.
 * Returns the backup_dir of the last run, which holds a first archive for later sections.
 */
export async function serverSection(ctx: BenchContext, compression: "gzip" | "zstd"): Promise<string> {
  const dir = path.join(ctx.dataDir, `server-${compression}`);
  const backup = path.join(dir, "backup");
  const config = writeServerConfig(path.join(dir, "shoot.toml"), { name: "bench", sources: [ctx.tree], backupDir: backup, compression });
  const peerOut = path.join(ctx.dataDir, "out", compression === "gzip" ? "gnu-server.tgz" : "gnu-server.tzst");
  const tarFlag = compression === "gzip" ? "-z" : "--zstd";

  console.error(`server ${compression}: GNU tar ${tarFlag} + md5sum and shoot server (first run), taking turns ...`);
  const label = `server ${compression}, first run`;
  const { peer, peerSize, shoot } = await firstRunAgainstTar(ctx, ctx.tree, tarFlag, peerOut, config, backup, label);
  const size = shoot.final.archive!.size;
  // the median run's archive is gone (each run starts from an empty backup_dir): keep the last one's
  const last = fs.readdirSync(backup).filter((n) => isArchiveName(n)).sort().at(-1)!;
  ctx.checks.keep(label, path.join(backup, last), { copy: true });
  await ctx.checks.checkNow(label, ctx.rows);
  pushPair(ctx.rows, {
    peerName: `GNU tar ${tarFlag} + md5sum (server peer)`,
    peer,
    peerNote: `out ${(peerSize / MiB).toFixed(0)} MiB`,
    name: `shoot server ${compression}, first run (30)`,
    shoot,
    bytes: ctx.info.bytes,
    ratio: "speed",
    note: `out ${(size / MiB).toFixed(0)} MiB, incl. fsync, list, status`,
    goal: compression === "gzip" ? [2.0, 1.3] : [1.0, 0.8],
    rssMax: 120 * MiB,
  });
  return backup;
}

/**
 * A first `shoot server` run (into an emptied backup_dir each time) and GNU tar + md5sum of the
 * same tree, taking turns; the peer's output is measured for its size and removed.
 */
async function firstRunAgainstTar(ctx: BenchContext, tree: string, tarFlag: string, peerOut: string, config: string, backup: string, label: string) {
  fs.mkdirSync(path.dirname(peerOut), { recursive: true });
  // whoever goes first must not be the one to read the tree from disk: with one run each
  // (--runs 1) GNU tar once took 18.5 s on the small files, against 2.8 s from the page cache
  readWholeTree(tree);
  let peerSize = 0;
  const [peer, shoot] = await alternating(ctx.runs, [
    async () => {
      const m = await measureAll([["tar", tarFlag, "-cf", peerOut, "-C", "/", tree.slice(1)], ["md5sum", peerOut]]);
      peerSize = fs.statSync(peerOut).size;
      fs.rmSync(peerOut, { force: true });
      return m;
    },
    () => {
      freshDir(backup);
      return serverRun(ctx.bin, config, backup, FIRST, { checks: ctx.checks, label, source: tree });
    },
  ]);
  return { peer, peerSize, shoot };
}

/** Read every file of a tree once, so that the page cache holds it (as far as memory allows). */
function readWholeTree(root: string): void {
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const e of fs.readdirSync(root, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const fd = fs.openSync(path.join(e.parentPath, e.name), "r");
    try {
      while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** 200 directories of small text files, built once and reused (the marker says it is whole). */
export function smallTree(dataDir: string, files: number): string {
  const tree = path.join(dataDir, files === 100_000 ? "tree100k" : `tree${files}`);
  const marker = path.join(dataDir, `${path.basename(tree)}.complete`);
  if (fs.existsSync(marker)) return tree;
  fs.rmSync(tree, { recursive: true, force: true });
  console.error(`generating ${files} small files in ${tree} ...`);
  const rng = makeRng(100);
  const dirs = 200;
  for (let d = 0; d < dirs; d++) fs.mkdirSync(path.join(tree, `d${String(d).padStart(3, "0")}`), { recursive: true });
  for (let i = 0; i < files; i++) {
    const d = `d${String(i % dirs).padStart(3, "0")}`;
    fs.writeFileSync(path.join(tree, d, `f${String(i).padStart(6, "0")}.txt`), textLike(rng, 200 + (rng() % 400)));
  }
  fs.writeFileSync(marker, `${files}\n`);
  return tree;
}

/** A `shoot server` run that finds nothing changed against `find TREE -newer REF`; at least 11 runs each. */
export async function unchangedSection(ctx: BenchContext, files: number): Promise<void> {
  const tree = smallTree(ctx.dataDir, files);
  const dir = path.join(ctx.dataDir, "unchanged");
  const backup = freshDir(path.join(dir, "backup"));
  const config = writeServerConfig(path.join(dir, "shoot.toml"), { name: "bench", sources: [tree], backupDir: backup, compression: "gzip" });
  // a reference newer than every file of the tree, so that find prints nothing: it walks and
  // stats the whole tree, as the unchanged check must
  const ref = path.join(dir, "ref");
  fs.writeFileSync(ref, "");
  const future = new Date(Date.now() + 3600_000);
  fs.utimesSync(ref, future, future);
  // short runs on a VM wander by a third from one run to the next: take many, alternating
  // the two commands so that drift hits both alike
  const n = Math.max(11, ctx.runs);

  // the first run, against GNU tar: many small files are where memory per file would show
  console.error(`unchanged: first shoot server run on ${files} files and GNU tar -z + md5sum, taking turns ...`);
  const label = `server gzip, first run, ${files} small files`;
  const { peer: tarFirst, shoot: shootFirst } = await firstRunAgainstTar(ctx, tree, "-z", path.join(ctx.dataDir, "out", "gnu-small.tgz"), config, backup, label);
  ctx.checks.keep(label, path.join(backup, shootFirst.final.archive!.file), { copy: true });
  await ctx.checks.checkNow(label, ctx.rows);
  // the speed targets are the 1 GiB tree's; this row's target is memory alone
  pushMemoryPair(ctx.rows, {
    peerName: `GNU tar -z + md5sum, ${files} small files`, peer: tarFirst,
    name: `shoot server gzip, first run (30), ${files} small files`, shoot: shootFirst,
    ratio: tarFirst.wallMs / shootFirst.wallMs, note: "speed × ref; memory must not grow with the file count",
  });
  console.error(`unchanged: find -newer and shoot server (9), ${n} runs each ...`);
  const find = async (): Promise<Measured> => {
    const m = await measure(["find", tree, "-newer", ref]);
    if (m.stdout !== "") throw new Error(`find ${tree} -newer ${ref} printed files: the reference is not newer than the tree`);
    return m;
  };
  await find();
  const [peer, shoot] = await alternating(n, [find, () => serverRun(ctx.bin, config, backup, UNCHANGED)]);
  pushPair(ctx.rows, {
    peerName: `find -newer REF, ${files} files (unchanged peer)`,
    peer,
    name: `shoot server, nothing changed (9), ${files} files`,
    shoot,
    ratio: "time",
    note: `find ${seconds(peer.wallMs)}, median of ${n}`,
    goal: [1.5, 1.5],
    rssMax: 150 * MiB,
  });
}

/** `shoot --version` against a compiled bun hello-world, interleaved, median of 50 each. */
export async function startupSection(ctx: BenchContext): Promise<void> {
  // console.log, the cheapest way Bun has to print: process.stdout's stream set-up alone
  // costs more than the whole start (measured: 48 ms against 20 ms)
  const source = 'console.log("hi");\n';
  const hello = path.join(ctx.dataDir, "hello");
  const src = path.join(ctx.dataDir, "hello.ts");
  if (!fs.existsSync(hello) || !fs.existsSync(src) || fs.readFileSync(src, "utf8") !== source) {
    fs.writeFileSync(src, source);
    const r = await spawner.run([process.execPath, "build", "--compile", "--bytecode", src, "--outfile", hello], { timeoutMs: 5 * 60_000, stderrLines: 20 });
    if (r.exitCode !== 0) throw new Error(`building the hello-world failed: ${describeResult(r, 20)}`);
  }
  const version = await spawner.run([ctx.bin, "--version"], { captureStdout: true, timeoutMs: 20_000, stderrLines: 10 });
  if (version.exitCode !== 0 || !/\d+\.\d+\.\d+/.test(version.stdout)) throw new Error(`${ctx.bin} --version printed no version: ${describeResult(version, 10)}`);
  const runs = 50;
  console.error(`startup: shoot --version and a compiled hello-world, ${runs} runs each, timed around one spawn ...`);
  const start = (argv: string[]) => async () => measureStart(argv);
  const steps = [start(["/bin/true"]), start([hello]), start([ctx.bin, "--version"])] as const;
  // one unmeasured start each, so that both binaries are in the page cache
  for (const step of steps) await step();
  const [spawnCost, peer, shoot] = await alternating(runs, steps);
  const goalMs = 15;
  ctx.rows.push({ name: "/bin/true (the cost of spawning and waiting)", wallMs: spawnCost.wallMs, cpuMs: spawnCost.cpuMs, note: `${spawnCost.wallMs.toFixed(1)} ms, median of ${runs}; part of both rows below` });
  ctx.rows.push({ name: "compiled bun hello-world (startup floor)", wallMs: peer.wallMs, cpuMs: peer.cpuMs, ratio: 1, note: `${peer.wallMs.toFixed(1)} ms, median of ${runs}` });
  ctx.rows.push({
    name: "shoot --version",
    wallMs: shoot.wallMs,
    cpuMs: shoot.cpuMs,
    ratio: shoot.wallMs / peer.wallMs,
    note: `${shoot.wallMs.toFixed(1)} ms; floor ${peer.wallMs.toFixed(1)} ms`,
    target: `≤ ${goalMs} ms`,
    verdict: verdict(shoot.wallMs, goalMs, goalMs, false),
  });
}
