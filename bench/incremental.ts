/**
 * Incremental archives against restic and borg on the same tree, in one run, taking turns:
 *
 * - the 1 % change of bench/run.ts (every 100th small file gets a line), once per round: the
 *   bytes each one adds to its store, its time and its peak memory, against restic's;
 * - then a year of daily restore points, each day changed by the same kind of generator (1 %
 *   of the small files appended to, a few created and deleted), and what each store holds on
 *   disk at the end, against restic's repository.
 *
 * shoot runs the compiled binary with incremental = "chain" and a full archive every
 * `--full-every` archives, keeping every point of the run. At the end shoot's newest restore
 * point is restored with GNU tar alone (the commands of docs/incremental.md) and compared with
 * the tree: a mismatch fails the benchmark.
 *
 *   bun bench/incremental.ts [--size 1GiB] [--days 365] [--runs 3] [--full-every 60]
 *                            [--data bench/data] [--bin dist/shoot-linux-x64]
 *
 * The defaults take hours on the bench machine; `--size 64MiB --days 12 --runs 1` is a check
 * that it works.
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { which } from "bun";
import { parseSize } from "../src/core/common/units.ts";
import { chainOf } from "../src/core/state/chain.ts";
import { isArchiveName, sortArchives } from "../src/core/state/naming.ts";
import { spawner } from "../src/io/process.ts";
import { treeDifferences } from "../test/helpers/tree-compare.ts";
import { makeRng, textLike } from "./gen.ts";
import { writeMixedTree } from "./tree.ts";
import { formatTable, measure, MiB, verdict, type Measured, type Row } from "./lib.ts";
import { DEFAULT_BIN, ensureBinary } from "./shoot.ts";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "1GiB" },
    days: { type: "string", default: "365" },
    runs: { type: "string", default: "3" },
    "full-every": { type: "string", default: "60" },
    data: { type: "string", default: path.join(import.meta.dir, "data") },
    bin: { type: "string", default: DEFAULT_BIN },
  },
});
const total = parseSize(values.size!) ?? 0;
if (total < 8 * MiB) throw new Error(`--size: expected a size of at least 8MiB, got ${values.size}`);
const runs = Math.max(1, Number(values.runs));
const days = Math.max(runs + 1, Number(values.days));
const fullEvery = Number(values["full-every"]);
if (!Number.isInteger(fullEvery) || fullEvery < 1) throw new Error(`--full-every: expected a number of archives, got ${values["full-every"]}`);
const bin = path.resolve(values.bin!);
const dataDir = path.resolve(values.data!);
const work = path.join(dataDir, "incremental");
const tree = path.join(work, "tree");
const ENV = { ...process.env, RESTIC_PASSWORD: "bench", BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes", BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes" };

for (const [tool, pkg] of [["restic", "restic"], ["borg", "borgbackup"], ["tar", "tar"]] as const) {
  if (!which(tool)) throw new Error(`${tool} is not installed: apt-get install -y --no-install-recommends ${pkg}`);
}

/** The mixed tree of bench/run.ts, smaller files first: 30 % small text, 10 % medium, 60 % large. */
function generate(): string[] {
  fs.rmSync(work, { recursive: true, force: true });
  return writeMixedTree(tree, total).small;
}

/** Day `day`'s change: a line appended to 1 % of the small files (a different 1 % each day), and on later days a few files created and deleted. */
function change(small: string[], day: number, year: boolean): number {
  let changed = 0;
  for (let i = day % 100; i < small.length; i += 100) {
    if (!fs.existsSync(small[i]!)) continue;
    fs.appendFileSync(small[i]!, `changed on day ${day}, file ${i}\n`);
    changed++;
  }
  if (year) {
    const rng = makeRng(day);
    for (let k = 0; k < Math.max(1, small.length / 1000); k++) {
      const gone = small[rng() % small.length]!;
      fs.rmSync(gone, { force: true });
      const born = path.join(path.dirname(gone), `new-${day}-${k}.txt`);
      fs.writeFileSync(born, textLike(rng, 500 + (rng() % 24_000)));
      small.push(born);
    }
  }
  return changed;
}

function bytesUnder(dir: string): number {
  let n = 0;
  const visit = (p: string) => {
    const st = fs.lstatSync(p);
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) visit(path.join(p, e));
    else n += st.blocks * 512;
  };
  if (fs.existsSync(dir)) visit(dir);
  return n;
}

interface Store {
  name: string;
  dir: string;
  init(): Promise<void>;
  backup(): Promise<Measured>;
}

const shootDir = path.join(work, "shoot");
const stores: Store[] = [
  {
    name: "restic backup",
    dir: path.join(work, "restic"),
    async init() {
      await measure(["restic", "init", "--repo", this.dir], { env: ENV });
    },
    backup() {
      return measure(["restic", "backup", "--repo", this.dir, "--quiet", tree], { env: ENV });
    },
  },
  {
    name: "borg create",
    dir: path.join(work, "borg"),
    async init() {
      await measure(["borg", "init", "--encryption", "none", this.dir], { env: ENV });
    },
    backup() {
      return measure(["borg", "create", `${this.dir}::{now:%Y%m%d-%H%M%S.%f}`, tree], { env: ENV });
    },
  },
  {
    name: "shoot server, incremental chain",
    dir: path.join(shootDir, "backup"),
    async init() {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      fs.writeFileSync(path.join(shootDir, "shoot.toml"), [
        "[server]", 'name = "bench"', `sources = [${JSON.stringify(tree)}]`, `backup_dir = ${JSON.stringify(this.dir)}`,
        'reserve = "0"', 'compression = "gzip"', 'incremental = "chain"', `full_every = ${fullEvery}`, `keep = ${days + 10}`, "",
      ].join("\n"));
    },
    async backup() {
      const m = await measure([bin, "server", "--config", path.join(shootDir, "shoot.toml"), "--quiet"]);
      return m;
    },
  },
];

/** Every store backs up the tree as it is now, in the given order; the bytes each added and how. */
async function round(order: readonly number[]): Promise<Array<Measured & { added: number }>> {
  const out: Array<Measured & { added: number }> = [];
  for (const i of order) {
    const s = stores[i]!;
    const before = bytesUnder(s.dir);
    const m = await s.backup();
    out[i] = { ...m, added: bytesUnder(s.dir) - before };
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1]!;

/** GNU tar alone restores shoot's newest point to the tree: the benchmark's proof that what it timed restores. */
async function checkRestore(): Promise<string[]> {
  const names = sortArchives(fs.readdirSync(stores[2]!.dir).filter((n) => isArchiveName(n)));
  const c = chainOf(names.at(-1)!, names);
  if (!c.ok) return [`the newest point's chain: ${c.missing}`];
  const dest = path.join(work, "restored");
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(dest);
  for (const a of c.chain) {
    const r = await spawner.run(["tar", "-x", "--listed-incremental=/dev/null", "-f", path.join(stores[2]!.dir, a), "-C", dest], { timeoutMs: 30 * 60_000 });
    if (r.exitCode !== 0) return [`GNU tar ${a}: ${r.stderrTail.join(" ")}`];
  }
  const diffs = treeDifferences(tree, path.join(dest, tree), { root: true, mtimeResolutionNs: 1000 });
  fs.rmSync(dest, { recursive: true, force: true });
  return diffs;
}

async function main(): Promise<void> {
  await ensureBinary(bin);
  console.error(`generating a ${(total / MiB).toFixed(0)} MiB tree in ${tree} ...`);
  const small = generate();
  for (const s of stores) await s.init();
  console.error("first backups ...");
  const first = await round([0, 1, 2]);
  const rows: Row[] = [];
  const rssGoal = 120 * MiB;

  // the 1 % change, taking turns: each round changes the tree once and every store backs it up
  const perRound: Array<Array<Measured & { added: number }>> = [];
  for (let r = 0; r < runs; r++) {
    const n = change(small, r + 1, false);
    console.error(`round ${r + 1}: ${n} small files changed (1 %), backing up ...`);
    perRound.push(await round([r % 3, (r + 1) % 3, (r + 2) % 3]));
  }
  const med = stores.map((_, i) => ({
    wallMs: median(perRound.map((p) => p[i]!.wallMs)),
    cpuMs: median(perRound.map((p) => p[i]!.cpuMs)),
    peakRss: median(perRound.map((p) => p[i]!.peakRss)),
    added: median(perRound.map((p) => p[i]!.added)),
  }));
  const ref = med[0]!;
  for (const [i, s] of stores.entries()) {
    const m = med[i]!;
    const isShoot = i === 2;
    const timeRatio = m.wallMs / ref.wallMs;
    const bytesRatio = m.added / ref.added;
    const v = isShoot ? [verdict(timeRatio, 1.5, 1.5, false), verdict(bytesRatio, 2, 2, false), m.peakRss <= rssGoal ? "pass" : "FAIL"] : [];
    rows.push({
      name: `${s.name} (1 % changed)`,
      wallMs: m.wallMs,
      cpuMs: m.cpuMs,
      peakRss: m.peakRss,
      ratio: timeRatio,
      note: `added ${(m.added / MiB).toFixed(1)} MiB (${bytesRatio.toFixed(2)}× restic's); first backup ${(first[i]!.added / MiB).toFixed(0)} MiB in ${(first[i]!.wallMs / 1000).toFixed(1)} s`,
      target: isShoot ? "time ≤ 1.5×, bytes ≤ 2×, ≤ 120 MiB" : "",
      verdict: isShoot ? (v.includes("FAIL") ? "FAIL" : "pass") : "",
    });
  }

  // the rest of the year: one restore point a day in every store
  console.error(`days ${runs + 1} to ${days}: one backup a day in each store ...`);
  for (let d = runs + 1; d <= days; d++) {
    change(small, d, true);
    await round([d % 3, (d + 1) % 3, (d + 2) % 3]);
    if (d % 30 === 0) console.error(`  day ${d}: restic ${(bytesUnder(stores[0]!.dir) / MiB).toFixed(0)} MiB, borg ${(bytesUnder(stores[1]!.dir) / MiB).toFixed(0)} MiB, shoot ${(bytesUnder(stores[2]!.dir) / MiB).toFixed(0)} MiB`);
  }
  const sizes = stores.map((s) => bytesUnder(s.dir));
  for (const [i, s] of stores.entries()) {
    const ratio = sizes[i]! / sizes[0]!;
    rows.push({
      name: `${s.dir.endsWith("backup") ? "shoot backup_dir" : `${s.name.split(" ")[0]} repository`} after ${days} daily points`,
      ratio,
      note: `${(sizes[i]! / MiB).toFixed(0)} MiB on disk${i === 2 ? `, a full archive every ${fullEvery}` : ""}`,
      target: i === 2 ? "≤ 3× restic's" : "",
      verdict: i === 2 ? verdict(ratio, 3, 3, false) : "",
    });
  }

  const diffs = await checkRestore();
  console.log(`\nIncremental benchmark: a ${(total / MiB).toFixed(0)} MiB tree of ${small.length}+ small files; the 1 % change in ${runs} round(s) taking turns (medians), then ${days} daily points; binary ${bin}`);
  console.log("× ref: against restic's row (time for the 1 % rows, bytes on disk for the year rows; lower is better)\n");
  console.log(formatTable(rows));
  if (diffs.length > 0) {
    console.log(`\nFAIL: GNU tar's restore of shoot's newest point differs from the tree: ${diffs.slice(0, 10).join("; ")}`);
    process.exitCode = 1;
  } else console.log("\nshoot's newest restore point, restored by GNU tar alone, matches the tree");
}

await main();
