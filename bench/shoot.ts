/**
 * Whole runs of the compiled shoot binary for the benchmark: its configuration files, one
 * measured `shoot server` or `shoot client` run checked by the final code in its status file,
 * and the peer-then-shoot pair of rows every whole-run section prints.
 */
import fs from "node:fs";
import path from "node:path";
import { codeName } from "../src/core/common/codes.ts";
import { spawner, describeResult } from "../src/io/process.ts";
import { CLIENT_STATUS, SERVER_STATUS, lastFinal, readStatusFile, type StatusRecord } from "../src/core/state/status.ts";
import { measure, MiB, verdict, type Measured, type Row } from "./lib.ts";
import type { RestoreChecks } from "./restores.ts";

export const REPO = path.resolve(import.meta.dir, "..");
export const DEFAULT_BIN = path.join(REPO, "dist", "shoot-linux-x64");

/** What every whole-run section gets from bench/run.ts. */
export interface BenchContext {
  rows: Row[];
  /** Repetitions per measured row (median). */
  runs: number;
  bin: string;
  dataDir: string;
  /** The generated mixed tree and what it holds. */
  tree: string;
  info: { files: number; bytes: number };
  /** Change ~1 % of the tree's files; returns the undo. */
  changeOnePercent(): () => void;
  /** Every archive made is extracted with GNU tar and compared with its source. */
  checks: RestoreChecks;
}

/** The default binary is built when it is missing; a binary named with --bin must exist. */
export async function ensureBinary(bin: string): Promise<void> {
  if (fs.existsSync(bin)) return;
  if (bin !== DEFAULT_BIN) throw new Error(`--bin ${bin}: no such file`);
  console.error(`building ${bin} ...`);
  const r = await spawner.run([process.execPath, path.join(REPO, "scripts", "build.ts"), "linux-x64"], { cwd: REPO, timeoutMs: 10 * 60_000, stderrLines: 20 });
  if (r.exitCode !== 0 || !fs.existsSync(bin)) throw new Error(`building the binary failed: ${describeResult(r, 20)}`);
}

const q = (s: string) => JSON.stringify(s);

export interface ServerSpec {
  name: string;
  sources: string[];
  backupDir: string;
  compression: "gzip" | "zstd" | "none";
}

export function writeServerConfig(file: string, s: ServerSpec): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, [
    "[server]",
    `name = ${q(s.name)}`,
    `sources = [${s.sources.map(q).join(", ")}]`,
    `backup_dir = ${q(s.backupDir)}`,
    // the benchmark's disk may be nearly full of test data; space is not what is measured
    'reserve = "0"',
    `compression = ${q(s.compression)}`,
    "keep = 2",
    "",
  ].join("\n"));
  return file;
}

export interface ClientSpec {
  dest: string;
  knownHosts: string;
  source: { name: string; remote: string; port: number; identity: string };
}

export function writeClientConfig(file: string, c: ClientSpec): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, [
    "[client]",
    `dest_dir = ${q(c.dest)}`,
    'reserve = "0"',
    `known_hosts = ${q(c.knownHosts)}`,
    "",
    "[[client.source]]",
    `name = ${q(c.source.name)}`,
    `remote = ${q(c.source.remote)}`,
    `port = ${c.source.port}`,
    `identity = ${q(c.source.identity)}`,
    "",
  ].join("\n"));
  return file;
}

/** The final record of the run in `statusFile`; throws unless it has `want` as its code. */
export function expectFinal(statusFile: string, want: number): StatusRecord {
  const final = lastFinal(readStatusFile(statusFile)?.records ?? []);
  if (!final) throw new Error(`${statusFile}: no final record`);
  if (final.code !== want) throw new Error(`${statusFile}: the run ended with ${final.code} ${codeName(final.code)} (${final.msg}), expected ${want} ${codeName(want)}`);
  return final;
}

export interface ShootRun extends Measured {
  final: StatusRecord;
}

/**
 * One measured `shoot server` run; it must exit 0 and end with `want` (30, 4 or 9), its archive
 * in place. A run that makes an archive reports it to the restore checks under `check.label`.
 */
export async function serverRun(bin: string, config: string, backupDir: string, want: number, check?: { checks: RestoreChecks; label: string; source: string }): Promise<ShootRun> {
  const m = await measure([bin, "server", "--quiet", "--config", config]);
  const final = expectFinal(path.join(backupDir, SERVER_STATUS), want);
  const a = final.archive;
  if (!a || fs.statSync(path.join(backupDir, a.file), { throwIfNoEntry: false })?.size !== a.size) {
    throw new Error(`shoot server ended with ${want} but its archive ${a?.file ?? "(none named)"} is not in ${backupDir} with the recorded size`);
  }
  if (check && codeName(want) !== "UNCHANGED") check.checks.wrote(check.label, check.source, a.md5, { fromList: true });
  return { ...m, final };
}

/** One measured `shoot client` run; it must exit 0 and end with `want`. */
export async function clientRun(bin: string, config: string, dest: string, want: number, env?: Record<string, string | undefined>): Promise<ShootRun> {
  const m = await measure([bin, "client", "--quiet", "--config", config], env ? { env } : {});
  return { ...m, final: expectFinal(path.join(dest, CLIENT_STATUS), want) };
}

/** An empty directory (whatever was there before is removed). */
export function freshDir(dir: string): string {
  removeTree(dir);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** When the bench last removed a tree (ms since the epoch); 0: not yet. */
let lastRemoval = 0;

/**
 * Remove a tree that may hold many files, noting when: see afterFreedInodes. A few files (an
 * archive and its checksum) free too few inodes to matter: fs.rmSync for those.
 */
export function removeTree(p: string): void {
  if (!fs.existsSync(p)) return;
  fs.rmSync(p, { recursive: true, force: true });
  lastRemoval = Date.now();
}

/**
 * How long after a removal creating files is slow: on ext4 without a journal (the bench
 * machine's), a new inode is not given a number whose inode was freed in the last 60 s, or 360 s
 * while its block of the inode table is dirty, which the new inodes beside it make it; every
 * allocation scans past them again (perf: recently_deleted, find_get_block_common), and two
 * writer threads racing for the same bits rescan more than one, so a restore right after the
 * last one's target was removed measured that scan, not the tool (docs/benchmarks.md has the
 * figures). Constants of the kernel's source (ialloc.c; only without a journal).
 */
const FREED_INODE_WINDOW_MS = (60 + 300 + 5) * 1000;

/** Wait until the bench's last removal is older than that window (once a section: it is long). */
export function afterFreedInodes(): void {
  if (lastRemoval === 0 || process.platform !== "linux") return;
  const left = lastRemoval + FREED_INODE_WINDOW_MS - Date.now();
  if (left <= 0) return;
  console.error(`waiting ${Math.ceil(left / 1000)} s: files removed ${Math.round((Date.now() - lastRemoval) / 1000)} s ago would slow the restores (bench/shoot.ts, afterFreedInodes)`);
  Bun.sleepSync(left);
}

/**
 * Before a timed run: the disk finishes what earlier runs left it (writing back the dirty
 * pages of copies not synced, discarding the blocks of the copy just removed), so that no run
 * pays for the one before it. Measured: with 2 GB of dirty pages left over, the peer took
 * 4.8 s instead of 4.0 s.
 */
export function settle(dir: string): void {
  const r = Bun.spawnSync(["sync", "-f", dir]);
  if (r.exitCode !== 0) throw new Error(`sync -f ${dir} failed: ${r.stderr.toString()}`);
}

/**
 * Drop the kernel's caches (only as root; false otherwise), after writing back what is dirty.
 * On the bench machine each run that writes a large tree ran slower than the one before,
 * whichever tool ran (the same 1 GiB restore took 3.6, 11, 16 and 21 s of kernel time in a row,
 * its target removed and synced between runs); dropped caches, then the inputs read back,
 * start every run alike.
 */
export function dropCaches(): boolean {
  if (process.getuid?.() !== 0) return false;
  settle("/");
  fs.writeFileSync("/proc/sys/vm/drop_caches", "3\n");
  return true;
}

/** Read a file, or every file under a directory, once: into the page cache. */
export function warm(p: string): void {
  const buf = Buffer.allocUnsafe(MiB);
  const visit = (q: string) => {
    const st = fs.lstatSync(q);
    if (st.isDirectory()) for (const n of fs.readdirSync(q)) visit(path.join(q, n));
    else if (st.isFile()) {
      const fd = fs.openSync(q, "r");
      try {
        while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
      } finally {
        fs.closeSync(fd);
      }
    }
  };
  visit(p);
}

/**
 * Before a timed run: the kernel's caches dropped (as root only), then its inputs (files or
 * trees) read back, so that every run starts alike. Restores wait for removals as well
 * (afterFreedInodes).
 */
export function startAlike(inputs: readonly string[]): void {
  dropCaches();
  for (const p of inputs) warm(p);
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 3 : 1)} s`;

export interface Pair {
  peerName: string;
  peer: Measured;
  name: string;
  shoot: Measured;
  /** Input bytes, for the MB/s column. */
  bytes?: number;
  /** "speed": peer time / shoot time, higher is better; "time": shoot time / peer time, lower is better. */
  ratio: "speed" | "time";
  peerNote?: string;
  note?: string;
  /** Goal and minimum of the ratio (equal when the issue names one figure). */
  goal: [number, number];
  /** Largest peak RSS allowed for shoot. */
  rssMax?: number;
}

/**
 * A peer's row, then shoot's whose target is memory alone (≤ 120 MiB): the rows on many small
 * files, where memory per file would show. `ratio` is shown as measured, not judged.
 */
export function pushMemoryPair(rows: Row[], p: { peerName: string; peer: Measured; name: string; shoot: Measured; ratio: number; note: string }): void {
  rows.push({ name: p.peerName, wallMs: p.peer.wallMs, cpuMs: p.peer.cpuMs, peakRss: p.peer.peakRss, ratio: 1 });
  rows.push({
    name: p.name, wallMs: p.shoot.wallMs, cpuMs: p.shoot.cpuMs, peakRss: p.shoot.peakRss, ratio: p.ratio,
    note: p.note, target: "≤ 120 MiB", verdict: p.shoot.peakRss <= 120 * MiB ? "pass" : "FAIL",
  });
}

/** The peer's row, then shoot's row with the ratio, the target and the verdict. */
export function pushPair(rows: Row[], p: Pair): void {
  const ratio = p.ratio === "speed" ? p.peer.wallMs / p.shoot.wallMs : p.shoot.wallMs / p.peer.wallMs;
  const v = verdict(ratio, p.goal[0], p.goal[1], p.ratio === "speed");
  const rssOk = p.rssMax === undefined || p.shoot.peakRss <= p.rssMax;
  const [goal, min] = p.goal;
  const target = (p.ratio === "speed" ? `≥ ${goal}×` : `time ≤ ${goal}×`) + (min !== goal ? ` (min ${min}×)` : "") + (p.rssMax ? `, ≤ ${p.rssMax / MiB} MiB` : "");
  rows.push({ name: p.peerName, wallMs: p.peer.wallMs, cpuMs: p.peer.cpuMs, bytes: p.bytes, peakRss: p.peer.peakRss, ratio: 1, note: p.peerNote });
  rows.push({
    name: p.name, wallMs: p.shoot.wallMs, cpuMs: p.shoot.cpuMs, bytes: p.bytes, peakRss: p.shoot.peakRss, ratio,
    note: p.note, target, verdict: v === "FAIL" || rssOk ? v : "FAIL",
  });
}
