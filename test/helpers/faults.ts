/**
 * The fault-injection suite's shared half: seeds, the tally every fault file adds to, the
 * invariants checked after every case, and the process and file-system tools that inject the
 * faults (descendants from /proc, SIGKILL at a moment, tiny and read-only tmpfs mounts).
 *
 * Seeds: SHOOT_FAULT_SEED replays a failure (every case prints the seed it used);
 * SHOOT_FAULT_SCALE widens the loops (2 = twice as many kills).
 *
 * The one summary line is printed by whichever fault file finishes last: bun runs test files
 * in one process, one after the other, but in directory order (not by name), so no file can
 * count on running last. Each fault file calls faultFile(); when every test file in
 * test/faults that does so has finished, the line is printed and a loss, an accepted corrupt
 * copy or a hang fails that file's afterAll (and so the run).
 */
import { afterAll, expect } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { codeInfo, codeName, isGolden, type CodeName } from "../../src/core/codes.ts";
import { CHECKSUM_SUFFIX, TEMP_PREFIX, isArchiveName, parseMd5Line, sortArchives } from "../../src/core/naming.ts";
import { LOCK_FILE } from "../../src/core/lock.ts";
import { runShoot, type ShootOptions, type ShootResult } from "./cli.ts";
import { tempDir, writeTree } from "./fixture.ts";
import type { SshServer } from "./sshd.ts";
import { randomBytes } from "./random.ts";
import { requireTool } from "./tools.ts";

// --- seeds and scale --------------------------------------------------------------------------

export const FAULT_SEED = Number(process.env.SHOOT_FAULT_SEED ?? 20261126);
export const FAULT_SCALE = Math.max(0.1, Number(process.env.SHOOT_FAULT_SCALE ?? 1));

/** `n` times SHOOT_FAULT_SCALE, at least 1. */
export function scaled(n: number): number {
  return Math.max(1, Math.round(n * FAULT_SCALE));
}

/** A case's own seed, derived from the suite seed and its name, printed so the case replays. */
export function caseSeed(name: string): number {
  let h = 0x811c9dc5 ^ FAULT_SEED;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  const seed = h >>> 0;
  console.log(`fault case "${name}": seed ${seed} (SHOOT_FAULT_SEED=${FAULT_SEED})`);
  return seed;
}

// --- the tally ---------------------------------------------------------------------------------

export interface Tally {
  injected: number;
  goodLost: number;
  corruptAccepted: number;
  hangs: number;
  /** Injected faults by kind, for the closing detail line. */
  byKind: Record<string, number>;
}

export const tally: Tally = { injected: 0, goodLost: 0, corruptAccepted: 0, hangs: 0, byKind: {} };

export function injected(kind: string, n = 1): void {
  tally.injected += n;
  tally.byKind[kind] = (tally.byKind[kind] ?? 0) + n;
}

export function summaryLine(t: Tally = tally): string {
  return `faults: ${t.injected} injected, ${t.goodLost} good backups lost, ${t.corruptAccepted} corrupt copies accepted, ${t.hangs} hangs`;
}

const FAULT_DIR = path.resolve(import.meta.dir, "../faults");
const finished = new Set<string>();

/** Test files of test/faults that report to this tally (they call faultFile). */
function reportingFiles(): string[] {
  return fs.readdirSync(FAULT_DIR)
    .filter((n) => n.endsWith(".test.ts"))
    .filter((n) => fs.readFileSync(path.join(FAULT_DIR, n), "utf8").includes("faultFile(import.meta.path)"));
}

/** Call once at the top of every fault file: its end is counted, and the last one prints the summary. */
export function faultFile(file: string): void {
  afterAll(() => {
    finished.add(path.basename(file));
    const missing = reportingFiles().filter((n) => !finished.has(n));
    if (missing.length > 0) return;
    const kinds = Object.entries(tally.byKind).map(([k, n]) => `${k} ${n}`).join(", ");
    console.log(`fault kinds: ${kinds}`);
    console.log(summaryLine());
    expect({ goodLost: tally.goodLost, corruptAccepted: tally.corruptAccepted, hangs: tally.hangs })
      .toEqual({ goodLost: 0, corruptAccepted: 0, hangs: 0 });
  });
}

// --- bounded runs --------------------------------------------------------------------------------

/** runShoot, with a hang (killed at its time limit) counted before it fails the test. */
export async function bounded(args: string[], opts: ShootOptions = {}): Promise<ShootResult> {
  try {
    return await runShoot(args, { timeoutMs: 60_000, ...opts });
  } catch (e) {
    if (/hung and was killed/.test(String(e))) tally.hangs++;
    throw e;
  }
}

/** Wait for a started process, counting a hang (and killing it) past `timeoutMs`. */
export async function boundedExit(proc: { pid: number; exited: Promise<number>; kill(sig?: number | NodeJS.Signals): void }, what: string, timeoutMs = 60_000): Promise<number> {
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    for (const p of descendants(proc.pid)) killPid(p);
    proc.kill("SIGKILL");
  }, timeoutMs);
  const code = await proc.exited;
  clearTimeout(timer);
  if (hung) {
    tally.hangs++;
    throw new Error(`${what} hung and was killed after ${timeoutMs} ms`);
  }
  return code;
}

/** A failure ended with a code of its own from the table (never the internal error, never a number shoot does not know). */
export function expectNamed(code: number, allowed: readonly CodeName[], context: string): void {
  const name = codeName(code);
  const ok = isGolden(code) || code === 0 || (codeInfo(code)?.kind === "failure" && allowed.includes(name as CodeName));
  expect({ context, code, name, ok }).toEqual({ context, code, name, ok: true });
}

// --- processes -----------------------------------------------------------------------------------

/** Children of every process started after `after`, from one pass over /proc. */
function childrenSince(after: number): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const e of fs.readdirSync("/proc")) {
    // pids grow: a process's descendants came after it (a wrap-around of the pid counter only costs a missed kill)
    if (e.charCodeAt(0) > 57 || Number(e) <= after) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, "utf8");
      // the command name is in parentheses and may hold spaces: the ppid follows the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ", 2)[1]);
      const list = children.get(ppid);
      if (list) list.push(Number(e));
      else children.set(ppid, [Number(e)]);
    } catch {
      // the process ended while we looked
    }
  }
  return children;
}

/** All descendants of `pid` (children first, then theirs), from one pass over /proc. */
export function descendants(pid: number): number[] {
  const children = childrenSince(pid);
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** The command line of a process, NUL bytes as spaces ("" once it is gone). */
export function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
}

/** Running (not gone, not a zombie waiting to be reaped). */
export function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** SIGKILL `pid` if it still runs; true when the signal reached a live process. */
export function killPid(pid: number): boolean {
  if (!alive(pid)) return false;
  try {
    process.kill(pid, "SIGKILL");
    return true;
  } catch {
    return false;
  }
}

/** Poll until `probe` returns a value, or give up after `timeoutMs`. */
export async function waitFor<T>(probe: () => T | undefined, timeoutMs = 20_000, everyMs = 2): Promise<T | undefined> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > until) return undefined;
    await Bun.sleep(everyMs);
  }
}

/** Wait until `pid` is gone; a process that outlives `timeoutMs` is a hang (killed and counted). */
export async function waitGone(pid: number, what: string, timeoutMs = 10_000): Promise<void> {
  const gone = await waitFor(() => (alive(pid) ? undefined : true), timeoutMs, 20);
  if (!gone) {
    tally.hangs++;
    killPid(pid);
    throw new Error(`${what} (pid ${pid}) still ran ${timeoutMs} ms later`);
  }
}

/**
 * sshd runs every command through the account's shell, and a bash started by sshd reads
 * ~/.bashrc; on a machine where that file is slow (pyenv init takes seconds) every pull would
 * pay for it twice. SHLVL=1 in the session makes bash count as nested and skip it. The test
 * sshd re-reads its configuration on SIGHUP (same pid); this waits until it listens again.
 */
export async function skipShellStartupFiles(sshd: SshServer): Promise<void> {
  const config = path.join(sshd.dir, "sshd_config");
  if (fs.readFileSync(config, "utf8").includes("SetEnv SHLVL=1")) return;
  fs.appendFileSync(config, "SetEnv SHLVL=1\n");
  const listening = () => sshd.log.filter((l) => /Server listening on 127\.0\.0\.1/.test(l)).length;
  const before = listening();
  process.kill(sshd.pid, "SIGHUP");
  const again = await waitFor(() => (listening() > before ? true : undefined), 10_000, 10);
  if (!again) throw new Error(`sshd did not listen again after SIGHUP: ${sshd.log.slice(-5).join("\n")}`);
}

// --- invariants ------------------------------------------------------------------------------------

/** Names of archives in `dir` that have a checksum file beside them (verified copies, oldest first). */
export function verifiedIn(dir: string): string[] {
  const names = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  const set = new Set(names);
  return sortArchives(names).filter((n) => set.has(`${n}${CHECKSUM_SUFFIX}`));
}

export interface GoodCopy {
  dir: string;
  name: string;
  hash: string;
}

/** The newest good copy in `dir` before a fault: its name and the hash of its bytes. */
export function snapshotGood(dir: string): GoodCopy | undefined {
  const name = verifiedIn(dir).at(-1);
  if (!name) return undefined;
  return { dir, name, hash: fileHash(path.join(dir, name)) };
}

function fileHash(file: string): string {
  const h = new Bun.CryptoHasher("sha256");
  h.update(fs.readFileSync(file));
  return h.digest("hex");
}

/** The good copy from before the fault is still there, byte for byte (a loss is counted before it fails). */
export function checkGoodKept(good: GoodCopy | undefined, context: string): void {
  if (!good) return;
  const file = path.join(good.dir, good.name);
  const kept = fs.existsSync(file) && fs.existsSync(`${file}${CHECKSUM_SUFFIX}`) && fileHash(file) === good.hash;
  if (!kept) tally.goodLost++;
  expect({ context, kept: good.name, intact: kept }).toEqual({ context, kept: good.name, intact: true });
}

/**
 * Every file under a final archive name in `dir` passes `md5sum -c` with its .md5. On a client
 * right after a crash a copy may lack its .md5 (it was never counted as verified); `orphansOk`
 * allows that until the next run.
 */
export function checkArchives(dir: string, context: string, opts: { orphansOk?: boolean } = {}): string[] {
  if (!fs.existsSync(dir)) return [];
  const md5sum = requireTool("md5sum");
  const names = fs.readdirSync(dir).filter((n) => isArchiveName(n)).sort();
  const bad: string[] = [];
  const sums: string[] = [];
  for (const n of names) {
    if (fs.existsSync(path.join(dir, `${n}${CHECKSUM_SUFFIX}`))) sums.push(`${n}${CHECKSUM_SUFFIX}`);
    else if (!opts.orphansOk) bad.push(`${n}: no ${CHECKSUM_SUFFIX}`);
  }
  if (sums.length > 0) {
    // one md5sum for all of them; it names each file it checks
    const r = Bun.spawnSync([md5sum, "-c", "--", ...sums], { cwd: dir });
    const out = r.stdout.toString();
    for (const n of names.filter((a) => sums.includes(`${a}${CHECKSUM_SUFFIX}`))) {
      if (!out.includes(`${n}: OK\n`)) bad.push(`${n}: md5sum -c says ${JSON.stringify(out.split("\n").find((l) => l.startsWith(`${n}:`)) ?? r.stderr.toString().trim())}`);
    }
  }
  expect({ context, dir, bad }).toEqual({ context, dir, bad: [] });
  return names;
}

/**
 * No verified copy on the client differs from what the server made: `truth` maps archive names
 * to the MD5 of the genuine archive. A copy that does not match is a corrupt copy accepted.
 */
export function checkNoCorruptAccepted(dir: string, truth: ReadonlyMap<string, string>, context: string, clientStatus?: string): void {
  const accepted: string[] = [];
  for (const n of verifiedIn(dir)) {
    const listed = parseMd5Line(fs.readFileSync(path.join(dir, `${n}${CHECKSUM_SUFFIX}`), "utf8"), n);
    const h = new Bun.CryptoHasher("md5");
    h.update(fs.readFileSync(path.join(dir, n)));
    const actual = h.digest("hex");
    if (actual !== truth.get(n) || listed !== actual) accepted.push(`${n}: holds ${actual}, .md5 says ${listed}, the server made ${truth.get(n) ?? "no such archive"}`);
  }
  // the run's own word: a PULLED record is a copy counted as verified
  if (clientStatus && fs.existsSync(clientStatus)) {
    for (const line of fs.readFileSync(clientStatus, "utf8").split("\n")) {
      if (!line.includes('"PULLED"')) continue;
      try {
        const r = JSON.parse(line) as { name: string; archive?: { file: string; md5: string } };
        if (r.name === "PULLED" && r.archive && truth.get(r.archive.file) !== r.archive.md5) accepted.push(`PULLED ${r.archive.file} with md5 ${r.archive.md5}`);
      } catch {
        // a torn line is the status protocol's business, not a verified copy
      }
    }
  }
  tally.corruptAccepted += accepted.length;
  expect({ context, accepted }).toEqual({ context, accepted: [] });
}

/** Temporary files (names starting with .shoot-tmp-, the client's staging directory among them) anywhere under `root`. */
export function tempsUnder(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.name.startsWith(TEMP_PREFIX)) out.push(path.relative(root, p));
      else if (e.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

/** After a normal run: no temporary file and no lock left anywhere under `root`. */
export function checkClean(root: string, context: string): void {
  const left = tempsUnder(root);
  const locks = fs.existsSync(path.join(root, LOCK_FILE)) ? [LOCK_FILE] : [];
  expect({ context, left: [...left, ...locks] }).toEqual({ context, left: [] });
}

// --- source trees -----------------------------------------------------------------------------------

/** A small source tree: `files` text files in a few directories and one incompressible file of `bulk` bytes. */
export function seedTree(src: string, rand: () => number, files = 120, bulk = 256 * 1024): void {
  const tree: Record<string, string> = {};
  for (let i = 0; i < files; i++) tree[`d${i % 8}/f${i}.txt`] = `file ${i} ${rand()}\n`.repeat(1 + Math.floor(rand() * 40));
  writeTree(src, tree);
  fs.writeFileSync(path.join(src, "bulk.bin"), randomBytes(rand, bulk));
}

/** Change the tree a little (edit, add or delete a file), as a day of work would. */
export function mutateTree(src: string, rand: () => number, tag: string): void {
  const dir = path.join(src, `d${Math.floor(rand() * 8)}`);
  fs.mkdirSync(dir, { recursive: true });
  const names = fs.readdirSync(dir);
  const pick = rand();
  if (pick < 0.2 && names.length > 3) fs.rmSync(path.join(dir, names[Math.floor(rand() * names.length)]!), { force: true, recursive: true });
  else fs.writeFileSync(path.join(dir, `edit-${Math.floor(rand() * 20)}.txt`), `${tag} ${rand()}\n`.repeat(1 + Math.floor(rand() * 50)));
}

// --- file systems -------------------------------------------------------------------------------------

export interface FaultMount {
  dir: string;
  /** Fill the file system to the last byte (a filler file), returning its path. */
  fill(): string;
  remount(mode: "ro" | "rw"): void;
  unmount(): void;
}

/** A tmpfs of `size` on a fresh directory (root only, as CI runs). */
export function faultTmpfs(size: string): FaultMount {
  if (process.getuid?.() !== 0) throw new Error("the storage faults mount tmpfs file systems and must run as root (CI runs as root)");
  const dir = tempDir("shoot-fault-fs-");
  const m = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir]);
  if (m.exitCode !== 0) throw new Error(`mount tmpfs failed: ${m.stderr.toString()}`);
  let fillers = 0;
  return {
    dir,
    fill() {
      const file = path.join(dir, `filler-${fillers++}`);
      const fd = fs.openSync(file, "w");
      const block = Buffer.alloc(64 * 1024, 0x5a);
      try {
        // big writes first, then smaller ones: full down to the last byte
        for (const size of [block.length, 4096, 1]) {
          try {
            for (;;) fs.writeSync(fd, block, 0, size);
          } catch (e) {
            if ((e as { code?: string }).code !== "ENOSPC") throw e;
          }
        }
      } finally {
        fs.closeSync(fd);
      }
      return file;
    },
    remount(mode) {
      const r = Bun.spawnSync(["mount", "-o", `remount,${mode}`, dir]);
      if (r.exitCode !== 0) throw new Error(`remount ${mode} failed: ${r.stderr.toString()}`);
    },
    unmount() {
      Bun.spawnSync(["umount", "-l", dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
