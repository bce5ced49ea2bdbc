/**
 * The benchmark: shoot's archive writer against GNU tar with gzip, zstd and pigz on a mixed
 * tree, the rsync wire share of a day-2 archive after ~1 % of the files changed, and whole
 * runs of the compiled binary (whole.ts, pull.ts) against their peers.
 *
 *   bun bench/run.ts [--size 1GiB] [--runs 1] [--data bench/data] [--bin dist/shoot-linux-x64]
 *                    [--files 100000] [--only gzip,zstd,none,server,unchanged,startup,pull,day2,restore,scale]
 *                    [--scale-sizes 100MiB,1GiB,5GiB] [--scale-files 10000,100000,1000000]
 *                    [--day2-compressions gzip,zstd]
 *
 * "scale" is not in the default --only: it generates trees up to 5 GiB and a million files.
 *
 * The trees are generated once under bench/data/ (deterministic, reused by later runs).
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { parseSize } from "../src/core/common/units.ts";
import { mixedTree, mixedTreePath, type TreeInfo } from "./tree.ts";
import { alternating, formatTable, measure, measureAll, MiB, mbps, verdict, type Measured, type Row } from "./lib.ts";
import { pullSections } from "./pull.ts";
import { day2Patterns } from "./day2.ts";
import { DEFAULT_BIN, ensureBinary, startAlike, warm, type BenchContext } from "./shoot.ts";
import { serverSection, smallTree, startupSection, unchangedSection } from "./whole.ts";
import { restoreRows } from "./restore.ts";
import { scalePlan, scaleSection } from "./scale.ts";
import { RestoreChecks } from "./restores.ts";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "1GiB" },
    runs: { type: "string", default: "1" },
    data: { type: "string", default: path.join(import.meta.dir, "data") },
    only: { type: "string", default: "gzip,zstd,none,server,unchanged,startup,pull,day2,restore" },
    bin: { type: "string", default: DEFAULT_BIN },
    files: { type: "string", default: "100000" },
    "scale-sizes": { type: "string", default: "100MiB,1GiB,5GiB" },
    "scale-files": { type: "string", default: "10000,100000,1000000" },
    "day2-compressions": { type: "string", default: "gzip,zstd" },
  },
});
const total = parseSize(values.size!) ?? 0;
if (!total || total < 8 * MiB) throw new Error(`--size: expected a size of at least 8MiB, got ${values.size}`);
const runs = Math.max(1, Number(values.runs));
const only = new Set(values.only!.split(","));
const day2Compressions = values["day2-compressions"]!.split(",").map((c) => {
  if (c !== "gzip" && c !== "zstd") throw new Error(`--day2-compressions: expected gzip and/or zstd, got ${c}`);
  return c;
});
const SECTIONS = ["gzip", "zstd", "none", "server", "unchanged", "startup", "pull", "day2", "restore", "scale"];
const unknown = [...only].filter((s) => !SECTIONS.includes(s));
if (unknown.length) throw new Error(`--only: unknown section(s) ${unknown.join(", ")}; known: ${SECTIONS.join(", ")}`);
const scale = scalePlan(values["scale-sizes"]!, values["scale-files"]!);
const files = Number(values.files);
if (!Number.isInteger(files) || files < 200) throw new Error(`--files: expected a whole number of at least 200, got ${values.files}`);
const bin = path.resolve(values.bin!);
const dataDir = path.resolve(values.data!);
const tree = mixedTreePath(dataDir, total);
const outDir = path.join(dataDir, "out");
const treeName = tree.slice(1);
const BUN = process.execPath;
const ONE = path.join(import.meta.dir, "archive-one.ts");

function gnuTar(out: string, compress: string[]): string[] {
  return ["tar", ...compress, "-cf", out, "-C", "/", treeName];
}

const checks = new RestoreChecks(path.join(dataDir, "restore-checks"));

/**
 * One archive by shoot's writer; with `prove` false, without the proof that it restores (the
 * row that shows what the proof costs; the bytes written are the same).
 */
async function shoot(out: string, compression: string, label = `writer ${compression}`, prove = true): Promise<Measured & { result: { size: number; md5: string } }> {
  const m = await measure([BUN, ONE, "--src", tree, "--out", out, "--compression", compression, ...(prove ? [] : ["--no-prove"])]);
  const result = (JSON.parse(m.stdout) as { result: { size: number; md5: string } }).result;
  checks.wrote(label, tree, result.md5);
  return { ...m, result };
}

/** rsync's literal bytes when turning `basis` into `fresh`, i.e. what goes over the wire. */
async function rsyncLiteral(basis: string, fresh: string): Promise<number> {
  const dir = path.join(outDir, "rsync");
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const target = path.join(dir, "archive");
  fs.copyFileSync(basis, target);
  const m = await measure(["rsync", "--no-whole-file", "--stats", "-I", fresh, target]);
  fs.rmSync(dir, { recursive: true, force: true });
  const lit = /Literal data: ([\d,.]+)/.exec(m.stdout);
  if (!lit) throw new Error("rsync printed no literal data count");
  return Number(lit[1]!.replace(/[,.]/g, ""));
}

/** Change ~1 % of the files (every 100th small file gets a line); returns the undo. */
function changeOnePercent(info: TreeInfo): () => void {
  const undo: Array<{ p: string; size: number; mtimeNs: bigint }> = [];
  for (let i = 50; i < info.small.length; i += 100) {
    const p = info.small[i]!;
    const st = fs.statSync(p, { bigint: true });
    undo.push({ p, size: Number(st.size), mtimeNs: st.mtimeNs });
    fs.appendFileSync(p, `changed on day two, file ${i}\n`);
  }
  console.error(`day 2: changed ${undo.length} of ${info.files} files`);
  return () => {
    for (const u of undo) {
      fs.truncateSync(u.p, u.size);
      // to the nanosecond (utimes takes a double, which loses the last digits): the tree must
      // be exactly as it was, or later sections' archives differ from what they were
      const ns = String(u.mtimeNs % 1_000_000_000n).padStart(9, "0");
      const r = Bun.spawnSync(["touch", "-m", "-d", `@${u.mtimeNs / 1_000_000_000n}.${ns}`, u.p]);
      if (r.exitCode !== 0) throw new Error(`touch ${u.p} failed: ${r.stderr.toString()}`);
    }
  };
}

async function main(): Promise<void> {
  // the mixed tree is made (and read into the page cache) only for the sections that use it
  const usesTree = ["gzip", "zstd", "none", "server", "pull", "day2", "restore"].some((x) => only.has(x));
  const info: TreeInfo = usesTree ? mixedTree(dataDir, total) : { files: 0, bytes: 0, small: [] };
  fs.mkdirSync(outDir, { recursive: true });
  if (usesTree) {
    console.error(`tree: ${info.files} files, ${(info.bytes / MiB).toFixed(0)} MiB; warming the page cache ...`);
    warm(tree);
  }
  const rows: Row[] = [];
  const bytes = info.bytes;
  const rm = (f: string) => fs.rmSync(f, { force: true });
  const sizeNote = (size: number, ref?: number) =>
    `out ${(size / MiB).toFixed(0)} MiB` + (ref ? ` (${size >= ref ? "+" : ""}${(((size - ref) / ref) * 100).toFixed(1)} %)` : "");

  /**
   * Peers and shoot's runs taking turns; each row's speed against the first row, or against the
   * row `vs` names; `sizeWithin` also judges the output's size against that row's (± percent).
   */
  const compare = async (
    label: string,
    refName: string,
    ref: () => Promise<Measured>,
    refOut: string,
    others: Array<{ name: string; run: () => Promise<Measured>; out: string; goal?: [number, number]; rssGoal?: boolean; vs?: string; sizeWithin?: number; also?: Array<{ vs: string; goal: [number, number] }> }>,
  ) => {
    console.error(`${label}: ${[refName, ...others.map((o) => o.name)].join(", ")}, taking turns ...`);
    // every run from the same start: caches dropped (as root), the tree read back
    const alike = (run: () => Promise<Measured>) => () => {
      startAlike([tree]);
      return run();
    };
    const [r, ...ms] = await alternating(runs, [alike(ref), ...others.map((o) => alike(o.run))]);
    const measured = new Map<string, { m: Measured; size: number }>([[refName, { m: r!, size: fs.statSync(refOut).size }]]);
    for (const [i, o] of others.entries()) measured.set(o.name, { m: ms[i]!, size: fs.statSync(o.out).size });
    const refSize = measured.get(refName)!.size;
    rows.push({ name: refName, wallMs: r!.wallMs, cpuMs: r!.cpuMs, bytes, peakRss: r!.peakRss, ratio: 1, note: sizeNote(refSize) });
    rm(refOut);
    for (const [i, o] of others.entries()) {
      const m = ms[i]!;
      const against = measured.get(o.vs ?? refName)!;
      const ratio = mbps(bytes, m.wallMs) / mbps(bytes, against.m.wallMs);
      let v = o.goal ? verdict(ratio, o.goal[0], o.goal[1]) : undefined;
      const rssOk = !o.rssGoal || m.peakRss <= 120 * MiB;
      const size = measured.get(o.name)!.size;
      const sizeOk = o.sizeWithin === undefined || Math.abs(size - against.size) / against.size <= o.sizeWithin / 100;
      if (v && (!rssOk || !sizeOk)) v = "FAIL";
      const targets = [o.goal ? `≥ ${o.goal[0]}×${o.goal[1] !== o.goal[0] ? ` (min ${o.goal[1]}×)` : ""}${o.vs ? ` ${o.vs}` : ""}` : "", o.rssGoal ? "≤ 120 MiB" : "", o.sizeWithin !== undefined ? `size ± ${o.sizeWithin} %` : ""].filter(Boolean);
      rows.push({ name: o.name, wallMs: m.wallMs, cpuMs: m.cpuMs, bytes, peakRss: m.peakRss, ratio, note: sizeNote(size, against.size) + (o.vs ? ` (× and size against ${o.vs})` : ""), target: targets.join(", "), verdict: v ?? "" });
      for (const a of o.also ?? []) {
        const peer = measured.get(a.vs)!;
        const r2 = mbps(bytes, m.wallMs) / mbps(bytes, peer.m.wallMs);
        rows.push({ name: `  ${o.name}, against ${a.vs}`, ratio: r2, note: sizeNote(size, peer.size), target: `≥ ${a.goal[0]}×`, verdict: verdict(r2, a.goal[0], a.goal[1]) });
      }
    }
  };

  const md5 = (f: string) => ["md5sum", f];
  const out = (n: string) => path.join(outDir, n);

  // each writer row twice: with the proof that the archive restores (as every server run
  // makes it), and without, which shows what the proof costs
  const unproven = (c: string, file: string) => ({ name: `shoot ${c}, proof off (what the proof costs)`, run: () => shoot(out(file), c, `writer ${c}`, false), out: out(file), rssGoal: true });
  if (only.has("gzip")) {
    await compare("gzip", "GNU tar -czf + md5sum", () => measureAll([gnuTar(out("gnu.tgz"), ["-z"]), md5(out("gnu.tgz"))]), out("gnu.tgz"), [
      { name: "GNU tar + pigz + md5sum (reference)", run: () => measureAll([gnuTar(out("pigz.tgz"), ["-I", "pigz"]), md5(out("pigz.tgz"))]), out: out("pigz.tgz") },
      { name: "shoot gzip (MD5+SHA-256 and proof in pass)", run: () => shoot(out("shoot.tgz"), "gzip"), out: out("shoot.tgz"), goal: [2.0, 1.3], rssGoal: true },
      unproven("gzip", "shoot-unproven.tgz"),
    ]);
    rm(out("pigz.tgz"));
    rm(out("shoot-unproven.tgz"));
    checks.keep("writer gzip", out("shoot.tgz"), { copy: true });
    await checks.checkNow("writer gzip", rows);
  }
  if (only.has("zstd")) {
    // GNU tar --zstd runs one compression thread; -I 'zstd -T0' one per core, as shoot does
    const t0 = "GNU tar -I 'zstd -T0' + md5sum";
    await compare("zstd", "GNU tar --zstd + md5sum", () => measureAll([gnuTar(out("gnu.tzst"), ["--zstd"]), md5(out("gnu.tzst"))]), out("gnu.tzst"), [
      { name: t0, run: () => measureAll([gnuTar(out("gnu-t0.tzst"), ["-I", "zstd -T0"]), md5(out("gnu-t0.tzst"))]), out: out("gnu-t0.tzst") },
      { name: "shoot zstd (MD5+SHA-256 and proof in pass)", run: () => shoot(out("shoot.tzst"), "zstd"), out: out("shoot.tzst"), goal: [1.7, 1.7], rssGoal: true, sizeWithin: 3, also: [{ vs: t0, goal: [1.0, 1.0] }] },
      unproven("zstd", "shoot-unproven.tzst"),
    ]);
    rm(out("gnu-t0.tzst"));
    rm(out("shoot-unproven.tzst"));
    checks.keep("writer zstd", out("shoot.tzst"), { copy: true });
    await checks.checkNow("writer zstd", rows);
  }
  if (only.has("none")) {
    await compare("none", "GNU tar -cf + md5sum", () => measureAll([gnuTar(out("gnu.tar"), []), md5(out("gnu.tar"))]), out("gnu.tar"), [
      { name: "shoot none (MD5+SHA-256 and proof in pass)", run: () => shoot(out("shoot.tar"), "none"), out: out("shoot.tar"), goal: [1.0, 1.0], rssGoal: true },
      unproven("none", "shoot-unproven.tar"),
    ]);
    rm(out("shoot-unproven.tar"));
    checks.keep("writer none", out("shoot.tar"));
    await checks.checkNow("writer none", rows);
  }

  const wholeRuns = ["server", "unchanged", "startup", "pull", "day2", "restore", "scale"].some((x) => only.has(x));
  if (wholeRuns) await ensureBinary(bin);
  const ctx: BenchContext = { rows, runs, bin, dataDir, tree, info, changeOnePercent: () => changeOnePercent(info), checks };
  if (only.has("server")) {
    for (const c of ["gzip", "zstd"] as const) await serverSection(ctx, c);
  }
  if (only.has("unchanged")) await unchangedSection(ctx, files);
  if (only.has("startup")) await startupSection(ctx);
  if (only.has("restore")) {
    await restoreRows(ctx, tree, `${(info.bytes / MiB).toFixed(0)} MiB tree`, info.bytes);
    await restoreRows(ctx, smallTree(dataDir, files), `${files} small files`);
  }

  if (only.has("day2")) {
    const goals = { gzip: 2, zstd: 5 } as const;
    const ext = { gzip: "tgz", zstd: "tzst" } as const;
    for (const c of day2Compressions) {
      if (fs.existsSync(out(`shoot.${ext[c]}`))) continue;
      // the writer section did not run: day 1's archive is made (and checked) here
      await shoot(out(`shoot.${ext[c]}`), c, `writer ${c}, day 1`);
      checks.keep(`writer ${c}, day 1`, out(`shoot.${ext[c]}`), { copy: true });
      await checks.checkNow(`writer ${c}, day 1`, rows);
    }
    const undo = changeOnePercent(info);
    try {
      for (const c of day2Compressions) {
        const day2 = out(`shoot-day2.${ext[c]}`);
        const m = await shoot(day2, c, `writer ${c}, day 2`);
        checks.keep(`writer ${c}, day 2`, day2, { copy: true });
        await checks.checkNow(`writer ${c}, day 2`, rows);
        const literal = await rsyncLiteral(out(`shoot.${ext[c]}`), day2);
        const share = (literal / m.result.size) * 100;
        rows.push({
          name: `day 2, rsync of shoot ${c} (1 % of files changed)`,
          note: `wire ${share.toFixed(2)} % of ${(m.result.size / MiB).toFixed(0)} MiB`,
          target: `≤ ${goals[c]} %`,
          verdict: verdict(share, goals[c], goals[c], false),
        });
        rm(day2);
      }
    } finally {
      undo();
    }
  }
  for (const f of ["shoot.tgz", "shoot.tzst"]) rm(out(f));
  if (only.has("pull")) await pullSections(ctx);
  if (only.has("scale")) await scaleSection(ctx, scale);
  if (only.has("day2")) await day2Patterns(ctx, day2Compressions);
  // archives and their few files: no tree of many inodes, so no wait for ext4 (removeTree)
  for (const d of ["server-gzip", "server-zstd", "pull"]) fs.rmSync(path.join(dataDir, d), { recursive: true, force: true });

  const restored = await checks.checkAll(rows);

  console.log(`\nBenchmark: ${usesTree ? `${info.files} files, ${(bytes / MiB).toFixed(0)} MiB` : "generated trees named in each row"}, median of ${runs} run(s) (unchanged: at least 11, startup: 50, all alternating with their peer)${wholeRuns ? `; binary ${bin}` : ""}`);
  console.log("× ref: each row against the peer row above it; speed (higher is better) for archive and server rows, time (lower is better) where the target says \"time\" and for startup, wire share (lower is better) for day-2 pulls\n");
  console.log(formatTable(rows));
  if (!restored) {
    console.log("\nFAIL: an archive made by this benchmark does not restore exactly (rows \"restore check\")");
    process.exitCode = 1;
  }
}

await main();
