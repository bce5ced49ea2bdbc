/**
 * The trust boundary, tried with hostile archives built byte by byte (corpus.ts): each one is
 * restored by the real `shoot restore` into a target inside a sandbox full of canaries, as
 * root and as an unprivileged user, and also extracted by GNU tar and bsdtar as the same
 * user. Then:
 *
 * - nothing outside the target changed: content, mode, owner, times, link count, names;
 * - shoot ended with a named code (never 1, never a stack trace), the one the archive's class
 *   calls for where it matters;
 * - shoot made nothing GNU tar did not make, and what it made, it made as GNU tar did
 *   (type, content, mode, owner as root, time, link target); when it said OK, it made all
 *   that GNU tar made;
 * - `shoot list` and `shoot verify --deep` over the same corpus end with a named code each,
 *   agreeing with restore on which archives are damaged.
 *
 * bsdtar reads some dialects otherwise than GNU tar (pax global headers, names over
 * PATH_MAX): the archives where the two disagree are counted and printed, and shoot answers
 * to GNU tar, whose reading it follows.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { shootArgv } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fixture.ts";
import { makeSandbox, changes, emptyDir, outside, removeTree, restored, NOBODY, type Restored, type Sandbox } from "../helpers/sandbox.ts";
import { EXT } from "../helpers/tar-builder.ts";
import { requireTool } from "../helpers/tools.ts";
import { ShootError } from "../../src/core/common/errors.ts";
import { runRestore, type RestoreResult } from "../../src/core/restore/restore.ts";
import { describeArchive } from "../../src/core/restore/verify.ts";
import { readEntries } from "../../src/core/restore/read.ts";
import { hostileCorpus, type Hostile } from "./corpus.ts";
import { NAMED, crashes, differences, sameTrees, type User } from "./judge.ts";

const TAR = requireTool("tar");
const BSDTAR = requireTool("bsdtar");
const SETPRIV = requireTool("setpriv");
const USERS: readonly User[] = ["root", "nobody"];

/** Archives tried at once, each in a sandbox of its own. */
const LANES = 2;

let base: string;
/** The archives tried (read only, and not watched: hashing them all twice per restore would cost more than the restores). */
let archives: string;
let lanes: Array<{ sb: Sandbox; scratch: string }>;
let scratch: string;
let corpus: Array<Hostile & { file: string }>;
const started = BigInt(Date.now()) * 1_000_000n;

beforeAll(() => {
  expect(process.getuid?.()).toBe(0); // CI runs as root: the root runs, mounts and the unprivileged user need it
  base = tempDir("shoot-differential-");
  fs.chmodSync(base, 0o755);
  scratch = path.join(base, "scratch");
  fs.mkdirSync(scratch, { mode: 0o777 });
  fs.chmodSync(scratch, 0o777);
  lanes = Array.from({ length: LANES }, (_, i) => {
    const dir = path.join(scratch, String(i));
    fs.mkdirSync(dir, { mode: 0o777 });
    fs.chmodSync(dir, 0o777);
    return { sb: makeSandbox(path.join(base, `watched-${i}`)), scratch: dir };
  });
  const dir = (archives = path.join(base, "archives"));
  fs.mkdirSync(dir, { mode: 0o755 });
  // the absolute names of the corpus aim at the first sandbox; the others' are as far from them as any path
  // SHOOT_DIFFERENTIAL_ONLY=regexp tries only the archives whose class or name it matches (to look into one)
  const only = process.env.SHOOT_DIFFERENTIAL_ONLY ? new RegExp(process.env.SHOOT_DIFFERENTIAL_ONLY) : undefined;
  corpus = hostileCorpus(lanes[0]!.sb.box).filter((h) => !only || only.test(`${h.cls} / ${h.name}`)).map((h, i) => {
    const file = path.join(dir, `${String(i).padStart(3, "0")}-${h.name}${EXT[h.compression]}`);
    fs.writeFileSync(file, h.bytes, { mode: 0o644 });
    // a checksum that matches: the readers must find what is wrong inside
    fs.writeFileSync(`${file}.md5`, `${new Bun.CryptoHasher("md5").update(h.bytes).digest("hex")}  ${path.basename(file)}\n`, { mode: 0o644 });
    return { ...h, file };
  });
}, 120_000);

afterAll(() => {
  if (base) removeTree(base);
}, 120_000);

function asUser(user: User, argv: string[]): string[] {
  return user === "root" ? argv : [SETPRIV, `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", ...argv];
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  /** Killed after the time it was given. */
  killed?: boolean;
}

const timing = new Map<string, number>();
function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  return f().finally(() => timing.set(what, (timing.get(what) ?? 0) + performance.now() - t0));
}

async function run(argv: string[], timeoutMs = 120_000): Promise<Ran> {
  const proc = Bun.spawn(argv, {
    stdin: "ignore", stdout: "pipe", stderr: "pipe", cwd: scratch,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: scratch, TMPDIR: scratch, NO_COLOR: "1", LC_ALL: "C.UTF-8" },
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr, killed: proc.signalCode === "SIGKILL" };
}

/** A tmpfs over `dir` for the bombs (size and inodes), given to `uid`; the returned function unmounts it. */
function mountOver(dir: string, t: NonNullable<Hostile["tmpfs"]>, uid: number): () => void {
  const opts = [`size=${t.size}`, "mode=0755", `uid=${uid}`, `gid=${uid}`, ...(t.inodes ? [`nr_inodes=${t.inodes}`] : [])].join(",");
  const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir]);
  if (r.exitCode !== 0) throw new Error(`mount tmpfs on ${dir}: ${r.stderr.toString()}`);
  return () => {
    Bun.spawnSync(["umount", dir]);
  };
}

/** A fresh directory for an extraction by `user`, on a tmpfs when the archive calls for one. */
function freshTarget(dir: string, user: User, h: Hostile): () => void {
  fs.mkdirSync(dir, { recursive: true });
  const uid = user === "root" ? 0 : NOBODY;
  emptyDir(dir, uid);
  return h.tmpfs ? mountOver(dir, h.tmpfs, uid) : () => {};
}

const tally = new Map<string, Map<string, number>>();
function count(cls: string, what: string): void {
  const m = tally.get(cls) ?? new Map<string, number>();
  m.set(what, (m.get(what) ?? 0) + 1);
  tally.set(cls, m);
}

/** restore codes as root, by archive: list and verify must agree on which are damaged. */
const restoreCodes = new Map<string, number>();

let viaCli = 0;

/** `shoot list` in this process: the first read, as the CLI makes it before it prints. */
async function listHere(file: string): Promise<Ran> {
  try {
    let out = "";
    await readEntries(file, (entries) => {
      for (const e of entries) out += `${e.name}\n`;
    });
    return { code: 0, stdout: out, stderr: "" };
  } catch (e) {
    if (e instanceof ShootError) return { code: e.code, stdout: "", stderr: e.message };
    return { code: 1, stdout: "", stderr: `internal error: ${e instanceof Error ? e.stack : String(e)}` };
  }
}

/** `shoot restore` in this process, as the CLI would run it: its code, or 1 and the stack for a throw that is not a ShootError. */
async function restoreHere(file: string, to: string): Promise<Ran> {
  try {
    const x = await runRestore(describeArchive(file, "file", "")!, { to });
    return { code: x.code, stdout: x.message, stderr: "" };
  } catch (e) {
    if (e instanceof ShootError) return { code: e.code, stdout: "", stderr: e.message };
    return { code: 1, stdout: "", stderr: `internal error: ${e instanceof Error ? e.stack : String(e)}` };
  }
}

/** One archive through shoot, GNU tar and bsdtar, as each user; what went wrong into `problems`. */
async function tryArchive(h: Hostile & { file: string }, sb: Sandbox, laneScratch: string, problems: string[]): Promise<void> {
  const scratchDir = scratch;
  const say = (user: User, what: string) => problems.push(`${h.cls} / ${h.name} (${user}): ${what}`);
  for (const user of USERS) {
    const done = freshTarget(sb.target, user, h);
    let mine: Map<string, Restored>;
    let r: Ran;
    try {
      // every sandbox is watched by every run: the corpus's absolute names aim at the first
      const watch = () => outside(base, [scratchDir, archives, ...lanes.map((l) => l.sb.target)]);
      const before = watch();
      // as root in this process (the core function the CLI calls: a throw that is not a named
      // code is the internal error the CLI would exit 1 with), every 10th also through the CLI;
      // as the unprivileged user always through the CLI
      r = await timed("shoot restore", () => (user === "root" ? restoreHere(h.file, sb.target) : run(asUser(user, [...shootArgv(), "restore", h.file, "--to", sb.target, "--quiet"]))));
      if (r.killed) say(user, "restore did not end within 2 minutes");
      for (const c of changes(before, watch())) say(user, `changed outside the target: ${c}`);
      mine = restored(sb.target);
    } finally {
      done();
    }
    for (const c of crashes(r)) say(user, `restore: ${c}: ${r.stderr.slice(0, 300)}`);
    if (user === "root" && corpus.indexOf(h) % 10 === 0) {
      const done2 = freshTarget(sb.target, user, h);
      try {
        const cli = await timed("shoot restore", () => run([...shootArgv(), "restore", h.file, "--to", sb.target, "--quiet"]));
        for (const c of crashes(cli)) say(user, `CLI restore: ${c}: ${cli.stderr.slice(0, 300)}`);
        if (cli.code !== r.code) say(user, `the CLI ended ${cli.code}, the core function ${r.code}`);
        viaCli++;
      } finally {
        done2();
      }
    }
    if (h.codes && !h.codes.includes(r.code)) say(user, `restore ended ${r.code}, expected ${h.codes.join(" or ")}: ${(r.stdout + r.stderr).slice(0, 400)}`);
    for (const m of h.made ?? []) if (!mine.has(m)) say(user, `${JSON.stringify(m)} was not made`);
    for (const m of h.notMade ?? []) if (mine.has(m)) say(user, `${JSON.stringify(m)} was made`);
    if (r.code === 98 && mine.size > 0) say(user, `refused for space, yet wrote ${mine.size} entries`);
    if (user === "root") restoreCodes.set(h.file, r.code);
    count(h.cls, `${user} ${r.code}`);

    const gnuDir = path.join(laneScratch, `gnu-${user}`);
    const bsdDir = path.join(laneScratch, `bsd-${user}`);
    const undo = [freshTarget(gnuDir, user, h), freshTarget(bsdDir, user, h)];
    try {
      const gnu = await timed("GNU tar", () => run(asUser(user, [TAR, "--numeric-owner", "-xpf", h.file, "-C", gnuDir])));
      if (gnu.killed) say(user, "GNU tar did not end within 2 minutes");
      const theirs = restored(gnuDir);
      for (const d of differences(mine, theirs, r.code, user, started)) say(user, d);
      // bsdtar checks every component of every name for links: on 10,000 levels that takes it minutes
      if (h.name === "ten-thousand-levels") count(h.cls, `${user}: bsdtar not run (minutes on 10,000 levels)`);
      else {
        const bsd = await timed("bsdtar", () => run(asUser(user, [BSDTAR, "--numeric-owner", "-xpf", h.file, "-C", bsdDir]), 10_000));
        if (bsd.killed) count(h.cls, `${user}: bsdtar gave up after 10 s`);
        else if (!sameTrees(theirs, restored(bsdDir))) count(h.cls, `${user}: bsdtar differs from GNU tar`);
      }
    } finally {
      for (const u of undo) u();
    }
  }
}

describe("hostile archives, restored by shoot, GNU tar and bsdtar", () => {
  test("at least 80 archives of every class, as root and as an unprivileged user: nothing outside the target changes, shoot ends with a named code and makes only what GNU tar makes, as GNU tar makes it", async () => {
    if (!process.env.SHOOT_DIFFERENTIAL_ONLY) expect(corpus.length).toBeGreaterThanOrEqual(80);
    const problems: string[] = [];
    let next = 0;
    await Promise.all(lanes.map(async (lane) => {
      while (next < corpus.length) await tryArchive(corpus[next++]!, lane.sb, lane.scratch, problems);
    }));
    console.log(`differential: ${corpus.length} archives × ${USERS.join(" and ")} (as root in process, ${viaCli} of them through the CLI too; as nobody through the CLI); time in ${[...timing].map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(", ")}; per class, restore exit codes and where bsdtar reads otherwise:`);
    for (const [cls, m] of tally) console.log(`  ${cls} (${corpus.filter((h) => h.cls === cls).length}): ${[...m].map(([k, v]) => `${k}: ${v}`).join(", ")}`);
    expect(problems).toEqual([]);
  }, 600_000);

  test("with --allow-outside-links, as root: links that point out may be made, and still nothing outside the target changes", async () => {
    const problems: string[] = [];
    const sb = lanes[0]!.sb;
    let links = 0;
    for (const h of corpus) {
      const done = freshTarget(sb.target, "root", h);
      try {
        const before = outside(base, [scratch, archives, ...lanes.map((l) => l.sb.target)]);
        const r = await runRestore(describeArchive(h.file, "file", "")!, { to: sb.target, allowOutsideLinks: true }).catch((e: unknown) => e);
        if (!(r instanceof ShootError) && (r instanceof Error || !NAMED.has((r as RestoreResult).code))) problems.push(`${h.name}: ${r instanceof Error ? r.stack : (r as RestoreResult).code}`);
        for (const c of changes(before, outside(base, [scratch, archives, ...lanes.map((l) => l.sb.target)]))) problems.push(`${h.cls} / ${h.name}: changed outside the target: ${c}`);
        for (const [, x] of restored(sb.target)) if (x.type === "symlink" && (x.link!.startsWith("/") || x.link!.includes(".."))) links++;
      } finally {
        done();
      }
    }
    console.log(`allow-outside-links: ${corpus.length} archives restored as root, ${links} links that climb or are absolute made, nothing outside changed`);
    expect(problems).toEqual([]);
  }, 300_000);

  test("list and verify --deep over the same corpus: a named code for each archive, damage where restore found it", async () => {
    expect(restoreCodes.size).toBe(corpus.length);
    const problems: string[] = [];
    const listCodes = new Map<number, number>();
    let next = 0;
    await Promise.all(lanes.map(async () => {
      while (next < corpus.length) {
        const i = next++;
        const h = corpus[i]!;
        const r = i % 10 === 0 ? await run([...shootArgv(), "list", h.file]) : await listHere(h.file);
        for (const c of crashes(r)) problems.push(`list ${h.name}: ${c}: ${r.stderr.slice(0, 300)}`);
        listCodes.set(r.code, (listCodes.get(r.code) ?? 0) + 1);
        const damaged = restoreCodes.get(h.file) === 95;
        if (damaged !== (r.code === 95)) problems.push(`list ${h.name} ended ${r.code}, restore ${restoreCodes.get(h.file)}`);
        if (r.code === 95 && r.stdout !== "") problems.push(`list ${h.name} printed entries of a damaged archive`);
      }
    }));
    const v = await run([...shootArgv(), "verify", "--deep", ...corpus.map((h) => h.file)], 300_000);
    for (const c of crashes(v)) problems.push(`verify: ${c}: ${v.stderr.slice(0, 300)}`);
    const verdicts = v.stdout.split("\n").filter((l) => /^(OK|FAILED|GONE) /.test(l));
    if (verdicts.length !== corpus.length) problems.push(`verify reported ${verdicts.length} verdicts for ${corpus.length} archives`);
    for (const h of corpus) {
      const line = verdicts.find((l) => l.includes(path.basename(h.file)));
      const damaged = restoreCodes.get(h.file) === 95;
      if (line && damaged !== line.startsWith("FAILED")) problems.push(`verify --deep says ${line.split(" ")[0]} of ${h.name}, restore ended ${restoreCodes.get(h.file)}`);
    }
    console.log(`list: exit codes ${[...listCodes].map(([k, n]) => `${k}: ${n}`).join(", ")}; verify --deep: ${verdicts.filter((l) => l.startsWith("OK")).length} OK, ${verdicts.filter((l) => l.startsWith("FAILED")).length} FAILED, exit ${v.code}`);
    expect(problems).toEqual([]);
  }, 600_000);
});
