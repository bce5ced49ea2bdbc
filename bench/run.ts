/**
 * The benchmark: shoot's archive writer against GNU tar with gzip, zstd and pigz on a mixed
 * tree, the rsync wire share of a day-2 archive after ~1 % of the files changed, and whole
 * runs of the compiled binary (whole.ts, pull.ts) against their peers.
 *
 *   bun bench/run.ts [--size 1GiB] [--runs 1] [--data bench/data] [--bin dist/shoot-linux-x64]
 *                    [--files 100000] [--only gzip,zstd,none,server,unchanged,startup,pull,day2,restore]
 *
 * The trees are generated once under bench/data/ (deterministic, reused by later runs).
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { parseSize } from "../src/core/common/units.ts";
import { makeRng, randomBytes, textLike } from "./gen.ts";
import { alternating, formatTable, measure, measureAll, MiB, mbps, verdict, type Measured, type Row } from "./lib.ts";
import { sshSections } from "./pull.ts";
import { DEFAULT_BIN, ensureBinary, type BenchContext } from "./shoot.ts";
import { restoreSection, serverSection, startupSection, unchangedSection } from "./whole.ts";
import { RestoreChecks } from "./restores.ts";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "1GiB" },
    runs: { type: "string", default: "1" },
    data: { type: "string", default: path.join(import.meta.dir, "data") },
    only: { type: "string", default: "gzip,zstd,none,server,unchanged,startup,pull,day2,restore" },
    bin: { type: "string", default: DEFAULT_BIN },
    files: { type: "string", default: "100000" },
  },
});
const total = parseSize(values.size!) ?? 0;
if (!total || total < 8 * MiB) throw new Error(`--size: expected a size of at least 8MiB, got ${values.size}`);
const runs = Math.max(1, Number(values.runs));
const only = new Set(values.only!.split(","));
const SECTIONS = ["gzip", "zstd", "none", "server", "unchanged", "startup", "pull", "day2", "restore"];
const unknown = [...only].filter((s) => !SECTIONS.includes(s));
if (unknown.length) throw new Error(`--only: unknown section(s) ${unknown.join(", ")}; known: ${SECTIONS.join(", ")}`);
const files = Number(values.files);
if (!Number.isInteger(files) || files < 200) throw new Error(`--files: expected a whole number of at least 200, got ${values.files}`);
const bin = path.resolve(values.bin!);
const dataDir = path.resolve(values.data!);
const tree = path.join(dataDir, `tree-${total}`);
const outDir = path.join(dataDir, "out");
const treeName = tree.slice(1);
const BUN = process.execPath;
const ONE = path.join(import.meta.dir, "archive-one.ts");

interface TreeInfo {
  files: number;
  bytes: number;
  small: string[];
}

/** Many small text-like files (30 %), some medium ones (10 %), a few 50-100 MiB ones, part random. */
function generate(): TreeInfo {
  const marker = path.join(tree, ".complete.json");
  if (fs.existsSync(marker)) return JSON.parse(fs.readFileSync(marker, "utf8")) as TreeInfo;
  fs.rmSync(tree, { recursive: true, force: true });
  console.error(`generating a ${(total / MiB).toFixed(0)} MiB tree in ${tree} ...`);
  const rng = makeRng(2026);
  const info: TreeInfo = { files: 0, bytes: 0, small: [] };
  const put = (rel: string, data: Uint8Array) => {
    const p = path.join(tree, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
    info.files++;
    info.bytes += data.length;
    return p;
  };
  for (let i = 0, budget = total * 0.3; budget > 0; i++) {
    const n = 500 + (rng() % 24_000);
    info.small.push(put(`small/d${String(i % 200).padStart(3, "0")}/f${String(i).padStart(6, "0")}.txt`, textLike(rng, n)));
    budget -= n;
  }
  for (let i = 0, budget = total * 0.1; budget > 0; i++) {
    const n = MiB + (rng() % (3 * MiB));
    put(`medium/m${i}.${i % 3 === 0 ? "bin" : "log"}`, i % 3 === 0 ? randomBytes(rng, n) : textLike(rng, n));
    budget -= n;
  }
  const bigSize = Math.min(100 * MiB, Math.max(2 * MiB, Math.floor(total / 14)));
  for (let i = 0, budget = total * 0.6; budget > 0; i++) {
    const n = Math.floor(bigSize * (0.5 + (rng() % 1000) / 1000));
    put(`big/b${i}.${i % 5 < 2 ? "bin" : "dat"}`, i % 5 < 2 ? randomBytes(rng, n) : textLike(rng, n));
    budget -= n;
  }
  fs.writeFileSync(marker, JSON.stringify(info));
  return info;
}

/** Read every file once so that every row starts with the same, warm page cache. */
function warm(dir: string): void {
  const buf = Buffer.allocUnsafe(MiB);
  const visit = (p: string) => {
    const st = fs.lstatSync(p);
    if (st.isDirectory()) for (const n of fs.readdirSync(p)) visit(path.join(p, n));
    else if (st.isFile()) {
      const fd = fs.openSync(p, "r");
      while (fs.readSync(fd, buf) > 0);
      fs.closeSync(fd);
    }
  };
  visit(dir);
}

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
  const undo: Array<{ p: string; size: number; mtime: Date }> = [];
  for (let i = 50; i < info.small.length; i += 100) {
    const p = info.small[i]!;
    const st = fs.statSync(p);
    undo.push({ p, size: st.size, mtime: st.mtime });
    fs.appendFileSync(p, `changed on day two, file ${i}\n`);
  }
  console.error(`day 2: changed ${undo.length} of ${info.files} files`);
  return () => {
    for (const u of undo) {
      fs.truncateSync(u.p, u.size);
      fs.utimesSync(u.p, u.mtime, u.mtime);
    }
  };
}

async function main(): Promise<void> {
  const info = generate();
  fs.mkdirSync(outDir, { recursive: true });
  console.error(`tree: ${info.files} files, ${(info.bytes / MiB).toFixed(0)} MiB; warming the page cache ...`);
  warm(tree);
  const rows: Row[] = [];
  const bytes = info.bytes;
  const rm = (f: string) => fs.rmSync(f, { force: true });
  const sizeNote = (size: number, ref?: number) =>
    `out ${(size / MiB).toFixed(0)} MiB` + (ref ? ` (${size >= ref ? "+" : ""}${(((size - ref) / ref) * 100).toFixed(1)} %)` : "");

  const compare = async (
    label: string,
    refName: string,
    ref: () => Promise<Measured>,
    refOut: string,
    others: Array<{ name: string; run: () => Promise<Measured>; out: string; goal?: [number, number]; rssGoal?: boolean }>,
  ) => {
    console.error(`${label}: ${[refName, ...others.map((o) => o.name)].join(", ")}, taking turns ...`);
    const [r, ...ms] = await alternating(runs, [ref, ...others.map((o) => o.run)]);
    const refSize = fs.statSync(refOut).size;
    rows.push({ name: refName, wallMs: r!.wallMs, cpuMs: r!.cpuMs, bytes, peakRss: r!.peakRss, ratio: 1, note: sizeNote(refSize) });
    rm(refOut);
    for (const [i, o] of others.entries()) {
      const m = ms[i]!;
      const ratio = mbps(bytes, m.wallMs) / mbps(bytes, r!.wallMs);
      const v = o.goal ? verdict(ratio, o.goal[0], o.goal[1]) : undefined;
      const rssOk = !o.rssGoal || m.peakRss <= 120 * MiB;
      rows.push({
        name: o.name,
        wallMs: m.wallMs,
        cpuMs: m.cpuMs,
        bytes,
        peakRss: m.peakRss,
        ratio,
        note: sizeNote(fs.statSync(o.out).size, refSize),
        target: o.goal ? `≥ ${o.goal[0]}× (min ${o.goal[1]}×)${o.rssGoal ? ", ≤ 120 MiB" : ""}` : "",
        verdict: v ? (rssOk ? v : "FAIL") : "",
      });
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
    await compare("zstd", "GNU tar --zstd + md5sum", () => measureAll([gnuTar(out("gnu.tzst"), ["--zstd"]), md5(out("gnu.tzst"))]), out("gnu.tzst"), [
      { name: "shoot zstd (MD5+SHA-256 and proof in pass)", run: () => shoot(out("shoot.tzst"), "zstd"), out: out("shoot.tzst"), goal: [1.0, 0.8], rssGoal: true },
      unproven("zstd", "shoot-unproven.tzst"),
    ]);
    rm(out("shoot-unproven.tzst"));
    checks.keep("writer zstd", out("shoot.tzst"), { copy: true });
    await checks.checkNow("writer zstd", rows);
  }
  if (only.has("none")) {
    await compare("none", "GNU tar -cf + md5sum", () => measureAll([gnuTar(out("gnu.tar"), []), md5(out("gnu.tar"))]), out("gnu.tar"), [
      { name: "shoot none (MD5+SHA-256 and proof in pass)", run: () => shoot(out("shoot.tar"), "none"), out: out("shoot.tar"), rssGoal: true },
      unproven("none", "shoot-unproven.tar"),
    ]);
    rm(out("shoot-unproven.tar"));
    checks.keep("writer none", out("shoot.tar"));
    await checks.checkNow("writer none", rows);
  }

  const wholeRuns = ["server", "unchanged", "startup", "pull", "day2", "restore"].some((x) => only.has(x));
  if (wholeRuns) await ensureBinary(bin);
  const ctx: BenchContext = { rows, runs, bin, dataDir, tree, info, changeOnePercent: () => changeOnePercent(info), checks };
  const firstRuns: Partial<Record<"gzip" | "zstd", string>> = {};
  if (only.has("server")) {
    for (const c of ["gzip", "zstd"] as const) firstRuns[c] = await serverSection(ctx, c);
  }
  if (only.has("unchanged")) await unchangedSection(ctx, files);
  if (only.has("startup")) await startupSection(ctx);
  if (only.has("restore")) await restoreSection(ctx, files);

  if (only.has("day2")) {
    const goals = { gzip: 2, zstd: 5 } as const;
    const ext = { gzip: "tgz", zstd: "tzst" } as const;
    for (const c of ["gzip", "zstd"] as const) {
      if (!fs.existsSync(out(`shoot.${ext[c]}`))) await shoot(out(`shoot.${ext[c]}`), c);
    }
    const undo = changeOnePercent(info);
    try {
      for (const c of ["gzip", "zstd"] as const) {
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
  await sshSections(ctx, { pull: only.has("pull"), day2: only.has("day2"), firstRuns });
  for (const d of ["server-gzip", "server-zstd", "pull"]) fs.rmSync(path.join(dataDir, d), { recursive: true, force: true });

  const restored = await checks.checkAll(rows);

  console.log(`\nBenchmark: ${info.files} files, ${(bytes / MiB).toFixed(0)} MiB, median of ${runs} run(s) (unchanged: at least 11, startup: 50, all alternating with their peer)${wholeRuns ? `; binary ${bin}` : ""}`);
  console.log("× ref: each row against the peer row above it; speed (higher is better) for archive and server rows, time (lower is better) where the target says \"time\" and for startup, wire share (lower is better) for day-2 pulls\n");
  console.log(formatTable(rows));
  if (!restored) {
    console.log("\nFAIL: an archive made by this benchmark does not restore exactly (rows \"restore check\")");
    process.exitCode = 1;
  }
}

await main();
