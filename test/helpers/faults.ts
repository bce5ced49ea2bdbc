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
import { afterAll, beforeAll, expect } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { codeInfo, codeName, isGolden, type CodeName } from "../../src/core/common/codes.ts";
import { CHECKSUM_SUFFIX, TEMP_PREFIX, archiveName, isArchiveName, parseMd5Line, sortArchives } from "../../src/core/state/naming.ts";
import { COPY_INDEX, heldCopies } from "../../src/core/state/copies.ts";
import { CLIENT_STATUS, SERVER_STATUS } from "../../src/core/state/status.ts";
import { LOCK_FILE } from "../../src/core/state/lock.ts";
import { runShoot, startShoot, type ShootOptions, type ShootResult } from "./cli.ts";
import { runClient, sshSource, writeClientConfig, type ClientSpec } from "./client.ts";
import { tempDir, writeTree, type ServerFixture } from "./fixture.ts";
import { writeArchive, writeServerStatus } from "./serverdir.ts";
import { startSshd, type SshServer } from "./sshd.ts";

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

/** What the whole directory promises to inject at least (kinds of faults counted together). */
const MINIMUMS: Record<string, [string[], number]> = {
  "SIGKILL of the server at 100 moments": [["SIGKILL server", "SIGKILL server in a power cut"], scaled(100)],
  "SIGKILL of the client's rsync or ssh at 50 moments": [["SIGKILL client rsync/ssh"], scaled(50)],
};

const FAULT_DIR = path.resolve(import.meta.dir, "../faults");
const finished = new Set<string>();

/** Test files of test/faults that report to this tally (they call faultFile). */
function reportingFiles(): string[] {
  return fs.readdirSync(FAULT_DIR)
    .filter((n) => n.endsWith(".test.ts"))
    .filter((n) => fs.readFileSync(path.join(FAULT_DIR, n), "utf8").includes("faultFile(import.meta.path)"));
}

/** CPU seconds of this process and of the children it has waited for (/proc/self/stat utime … cstime). */
function cpuSeconds(): { self: number; children: number } {
  const f = fs.readFileSync("/proc/self/stat", "utf8").slice(fs.readFileSync("/proc/self/stat", "utf8").lastIndexOf(")") + 2).split(" ");
  // fields 14-17 of stat (utime, stime, cutime, cstime), in clock ticks (100 a second on Linux)
  const t = (i: number) => Number(f[i - 3]) / 100;
  return { self: t(14) + t(15), children: t(16) + t(17) };
}

/** Call once at the top of every fault file: its end is counted, and the last one prints the summary. */
export function faultFile(file: string): void {
  const cpu0 = cpuSeconds();
  const injected0 = tally.injected;
  afterAll(() => {
    const cpu = cpuSeconds();
    console.log(`${path.basename(file)}: ${tally.injected - injected0} faults injected, CPU ${(cpu.self - cpu0.self).toFixed(1)} s here + ${(cpu.children - cpu0.children).toFixed(1)} s in child processes`);
    finished.add(path.basename(file));
    const missing = reportingFiles().filter((n) => !finished.has(n));
    if (missing.length > 0) return;
    const kinds = Object.entries(tally.byKind).map(([k, n]) => `${k} ${n}`).join(", ");
    console.log(`fault kinds: ${kinds}`);
    console.log(summaryLine());
    const short = Object.entries(MINIMUMS).filter(([, [kinds, n]]) => kinds.reduce((sum, k) => sum + (tally.byKind[k] ?? 0), 0) < n).map(([what]) => what);
    if (short.length > 0) throw new Error(`the fault suite injected fewer faults than it promises: ${short.join(", ")}`);
    if (tally.goodLost + tally.corruptAccepted + tally.hangs > 0) {
      throw new Error(`the fault suite counted losses, accepted corrupt copies or hangs: ${summaryLine()} (the failing cases above say where)`);
    }
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

/** Children of every process, by parent, from one pass over /proc. */
function childrenOf(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  // every process is read: pids wrap around (pid_max is often 32768), so a descendant may carry
  // a smaller pid than its ancestor after a suite has started many thousands of processes
  for (const e of fs.readdirSync("/proc")) {
    if (e.charCodeAt(0) > 57) continue;
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
  const children = childrenOf();
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

/**
 * A power cut of `roots` and every process under them: all stopped first, looking again until
 * no new one appears (a stopped process cannot fork, so none escapes by being born between the
 * look and the kill), then all killed. True when any of them was still running.
 */
export function powerCut(roots: readonly number[]): boolean {
  const seen = new Set<number>();
  for (let fresh = [...roots]; fresh.length; ) {
    for (const p of fresh) {
      seen.add(p);
      try {
        process.kill(p, "SIGSTOP");
      } catch {
        // gone already
      }
    }
    fresh = roots.flatMap((r) => descendants(r)).filter((p) => !seen.has(p));
  }
  let hit = false;
  for (const p of seen) hit = killPid(p) || hit;
  return hit;
}

/** Processes whose command line mentions `text` (an ssh still holding a socket under a directory). */
export function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const e of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/cmdline`, "utf8").includes(text)) found.push(Number(e));
    } catch {
      // ended while we looked
    }
  }
  return found;
}

/** The command line of a process, NUL bytes as spaces ("" once it is gone). */
export function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
}

/** A client's rsync and ssh processes right now, with their command lines. */
export function transferProcs(clientPid: number): Array<{ pid: number; cmd: string }> {
  return descendants(clientPid).map((pid) => ({ pid, cmd: cmdline(pid) })).filter((p) => /^(\S*\/)?(rsync|ssh) /.test(p.cmd));
}

/**
 * The client's rsync that pulls `file` (server.status or an archive's name), once it runs. The client records "pulling …" in client.status just
 * before it starts rsync: watching that small file is cheap, walking /proc is not.
 */
export async function rsyncPulling(client: { pid: number; exitCode: number | null }, dest: string, file: string, timeoutMs = 15_000): Promise<number | undefined> {
  const clientPid = client.pid;
  // this run's record (the file of the run before may still be there when we first look);
  // a run that ends without pulling `file` (nothing new on the server) ends the wait too
  const announced = await watchFile(path.join(dest, CLIENT_STATUS), (text) =>
    text.split("\n").some((l) => l.includes(`"pid":${clientPid},`) && l.includes(": pulling ") && l.includes(file)) ? true : undefined,
    () => client.exitCode !== null, timeoutMs, 2);
  if (!announced) return undefined;
  // the rsync that pulls `file` itself (X.tar.gz.list is pulled by another rsync beside it)
  const pulls = (cmd: string) => cmd.startsWith("rsync") && cmd.split(" ").some((a) => a.endsWith(`/${file}`) || a.endsWith(`:${file}`));
  return await waitFor(() => (client.exitCode !== null ? 0 : transferProcs(clientPid).find((p) => pulls(p.cmd))?.pid), timeoutMs, 2) || undefined;
}

/** Size of the largest file under `dir` (a transfer's temporary or partial file as it grows); 0 when there is none. */
export function largestUnder(dir: string): number {
  let most = 0;
  try {
    for (const p of fs.readdirSync(dir, { recursive: true }).map(String)) most = Math.max(most, fs.statSync(path.join(dir, p), { throwIfNoEntry: false })?.size ?? 0);
  } catch {
    // not there (yet, or any more)
  }
  return most;
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

/**
 * Read a small file each time it grows until `probe` finds what it looks for in its text;
 * undefined when `stop` says so first or after `timeoutMs`.
 */
export async function watchFile<T>(file: string, probe: (text: string) => T | undefined, stop: () => boolean, timeoutMs: number, everyMs: number): Promise<T | undefined> {
  // the file as last read: by inode and size, since a status file is rotated at a run's start and
  // the new one can reach the very size the old one had (runs of the same shape write records
  // of the same lengths), and by size alone that record would never be read
  let seen = "";
  const found = await waitFor<{ v?: T }>(() => {
    if (stop()) return {};
    try {
      const st = fs.statSync(file);
      const now = `${st.ino}:${st.size}`;
      if (now === seen) return undefined;
      seen = now;
      const v = probe(fs.readFileSync(file, "utf8"));
      return v === undefined ? undefined : { v };
    } catch {
      return undefined;
    }
  }, timeoutMs, everyMs);
  return found?.v;
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
 * A test sshd (commands run without the shell's startup files) and a scratch directory for
 * the fault file or describe block that calls this: started before its tests, removed after.
 */
export function faultSshd(prefix: string): { readonly sshd: SshServer; readonly base: string } {
  const state: { sshd?: SshServer; base?: string } = {};
  beforeAll(async () => {
    requireTool("rsync");
    state.sshd = await startSshd();
    await skipShellStartupFiles(state.sshd);
    state.base = tempDir(prefix);
  }, 30_000);
  afterAll(async () => {
    await state.sshd?.stop();
    if (state.base) fs.rmSync(state.base, { recursive: true, force: true });
  }, 30_000);
  return {
    get sshd() {
      return state.sshd!;
    },
    get base() {
      return state.base!;
    },
  };
}

/**
 * sshd runs every command through the account's shell, and a bash started by sshd reads
 * ~/.bashrc; on a machine where that file is slow (pyenv init takes seconds) every pull would
 * pay for it twice. SHLVL=1 in the session makes bash count as nested and skip it.
 */
export async function skipShellStartupFiles(sshd: SshServer): Promise<void> {
  await addSshdConfig(sshd, "SetEnv SHLVL=1");
}

/**
 * Add a line to the test sshd's configuration and make it re-read it: sshd re-executes itself
 * on SIGHUP (same pid); this waits until it listens again.
 */
export async function addSshdConfig(sshd: SshServer, line: string): Promise<void> {
  const config = path.join(sshd.dir, "sshd_config");
  if (fs.readFileSync(config, "utf8").split("\n").includes(line)) return;
  fs.appendFileSync(config, `${line}\n`);
  const listening = () => sshd.log.filter((l) => /Server listening on 127\.0\.0\.1/.test(l)).length;
  const before = listening();
  // sshd says it listens a moment before it handles SIGHUP; until then the signal would end it
  const handlesHup = () => {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(fs.readFileSync(`/proc/${sshd.pid}/status`, "utf8"));
    return m && (BigInt(`0x${m[1]}`) & 1n) === 1n ? true : undefined;
  };
  if (!(await waitFor(handlesHup, 10_000, 5))) throw new Error("sshd does not handle SIGHUP");
  process.kill(sshd.pid, "SIGHUP");
  const again = await waitFor(() => (listening() > before ? true : undefined), 10_000, 10);
  if (!again) throw new Error(`sshd did not listen again after SIGHUP: ${sshd.log.slice(-5).join("\n")}`);
}

// --- invariants ------------------------------------------------------------------------------------

/**
 * Names of archives in `dir` that have a checksum file beside them, oldest first in the
 * product's own order: a backup host's copies by when they were verified, a server's by name.
 */
export function verifiedIn(dir: string): string[] {
  if (fs.existsSync(path.join(dir, COPY_INDEX))) return heldCopies(dir);
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
  const names = sortArchives(fs.readdirSync(dir));
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

/** A tmpfs of `size` on `at` (created if needed) or a fresh directory (root only, as CI runs). */
export function faultTmpfs(size: string, at?: string): FaultMount {
  if (process.getuid?.() !== 0) throw new Error("the storage faults mount tmpfs file systems and must run as root (CI runs as root)");
  const dir = at ?? tempDir("shoot-fault-fs-");
  fs.mkdirSync(dir, { recursive: true });
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

// --- runs on both hosts ------------------------------------------------------------------------

/** A normal wrapper run: it must end golden and leave no temporary file or lock. Returns its wall time. */
export async function goldenWrapper(fx: ServerFixture, context: string): Promise<number> {
  const t0 = performance.now();
  const r = await bounded(["wrapper", "--config", fx.config, "--quiet"]);
  expect({ context, code: r.code, out: r.code === 0 ? "" : r.stdout + r.stderr }).toEqual({ context, code: 0, out: "" });
  checkClean(fx.backup, context);
  checkArchives(fx.backup, context);
  return performance.now() - t0;
}

/**
 * The server process a wrapper started, from the wrapper's SERVER_STARTED record (reading one
 * small file each millisecond costs far less than walking /proc).
 */
export async function serverPidOf(backup: string, wrapperPid: number): Promise<number | undefined> {
  return await watchFile(path.join(backup, SERVER_STATUS), (text) => {
    for (const line of text.split("\n")) {
      if (!line.includes('"SERVER_STARTED"')) continue;
      const r = JSON.parse(line) as { pid?: number; data?: { pid?: number } };
      if (r.pid === wrapperPid) return r.data?.pid;
    }
    return undefined;
  }, () => false, 20_000, 1);
}

/** How long the server of a normal run that makes an archive lives: the window random moments are drawn from. */
export async function serverLife(fx: ServerFixture, rand: () => number): Promise<number> {
  mutateTree(fx.src, rand, "warm-up");
  const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
  const pid = await serverPidOf(fx.backup, w.pid);
  const t0 = performance.now();
  if (pid) await waitGone(pid, "the warm-up server", 30_000);
  const life = performance.now() - t0;
  expect(await boundedExit(w, "warm-up")).toBe(0);
  return life;
}

/**
 * A server's backup directory made by hand (fast: no run of its own), a new archive published
 * when asked, and a client configured to pull it, over the test sshd or from the local path.
 */
export class PullLane {
  readonly backup: string;
  readonly dest: string;
  /** dest_dir/<name>: the verified copies. */
  readonly copies: string;
  readonly config: string;
  /** Archive name → MD5 of the genuine archive: what a verified copy must be. */
  readonly truth = new Map<string, string>();
  private made = 0;
  constructor(
    readonly root: string,
    readonly name: string,
    readonly rand: () => number,
    opts: { sshd?: SshServer; bwlimit?: string; client?: Partial<ClientSpec> } = {},
  ) {
    this.backup = path.join(root, name, "server");
    this.dest = path.join(root, name, "dest");
    this.copies = path.join(this.dest, name);
    fs.mkdirSync(this.backup, { recursive: true });
    this.config = path.join(root, name, "client.toml");
    this.configure(opts);
  }

  /** (Re)write the client's configuration: another sshd, port, limit or [client] setting. */
  configure(opts: { sshd?: SshServer; port?: number; bwlimit?: string; client?: Partial<ClientSpec> }): void {
    const limit = opts.bwlimit ? { bwlimit: opts.bwlimit } : {};
    const source = opts.sshd
      ? sshSource(opts.sshd, this.name, this.backup, { ...limit, ...(opts.port ? { port: opts.port } : {}) })
      : { name: this.name, remote: this.backup, ...limit };
    writeClientConfig(this.config, {
      dest: this.dest, keep: 2, ...(opts.sshd ? { known_hosts: opts.sshd.knownHosts } : {}), ...opts.client, sources: [source],
    });
  }

  /** A new archive on the "server" (names an hour apart, in order) and a fresh status naming it. */
  async publish(bytes = 768 * 1024): Promise<{ file: string; size: number; md5: string }> {
    const when = new Date(Date.UTC(2026, 0, 1) + this.made++ * 3_600_000);
    const info = await writeArchive(this.backup, archiveName(this.name, when, "gzip"), randomBytes(this.rand, bytes));
    this.truth.set(info.file, info.md5);
    writeServerStatus(this.backup, info, { final: this.made === 1 ? "FIRST_ARCHIVE" : "NEW_ARCHIVE" });
    return info;
  }

  /** The copies verify and none differs from what the server made. */
  check(context: string, afterCrash: boolean): void {
    checkArchives(this.copies, context, { orphansOk: afterCrash });
    checkNoCorruptAccepted(this.copies, this.truth, context, path.join(this.dest, "client.status"));
  }

  /** Run the client, bounded; a hang is counted. */
  async pull(timeoutMs = 60_000) {
    try {
      return await runClient(this.config, this.dest, [], timeoutMs);
    } catch (e) {
      if (/hung and was killed/.test(String(e))) tally.hangs++;
      throw e;
    }
  }

  /** A normal pull: it must end golden and leave no staging directory or lock. */
  async normalRun(context: string): Promise<void> {
    const r = await this.pull();
    expect({ context, code: r.code, message: r.code === 0 ? "" : r.outcome.sources[0]?.message }).toEqual({ context, code: 0, message: "" });
    checkClean(this.dest, context);
    this.check(context, false);
  }
}
