/**
 * A seeded fuzz run of the readers: valid archives of every compression (gzip, zstd, none),
 * mutated at random (bits flipped, bytes set, blocks cut, repeated, moved, header fields
 * rewritten with their checksum made right again, the tar stream mutated under a fresh
 * compression), each with a checksum file that matches. For each case, restore, list and
 * verify --deep run in this process (the core functions the CLI calls), restore into a target
 * inside a sandbox of canaries; then:
 *
 * - each ends with a result or a ShootError of a named code, never anything else;
 * - nothing outside the target changed;
 * - list and verify --deep agree with restore on whether the archive is damaged;
 * - what restore made, GNU tar makes the same from the same archive (and all of it, when
 *   restore said OK).
 *
 * Every CLI_EVERY-th case also goes through the real CLI, as root and as an unprivileged user.
 * The seed is printed with the tally of outcomes; SHOOT_FUZZ_SEED replays a run,
 * SHOOT_FUZZ_CASES changes its length.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { shootArgv } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fixture.ts";
import { seeded, randomBytes } from "../helpers/random.ts";
import { changes, emptyDir, makeSandbox, outside, removeTree, restored, NOBODY, type Sandbox } from "../helpers/sandbox.ts";
import * as B from "../helpers/tar-builder.ts";
import { requireTool } from "../helpers/tools.ts";
import { ShootError } from "../../src/core/common/errors.ts";
import { TarParser } from "../../src/core/archive/tar.ts";
import { runRestore } from "../../src/core/restore/restore.ts";
import { readEntries } from "../../src/core/restore/read.ts";
import { describeArchive, verifyArchive } from "../../src/core/restore/verify.ts";
import { NAMED, crashes, differences } from "./judge.ts";

const SEED = Number(process.env.SHOOT_FUZZ_SEED ?? 20261202);
const CASES = Number(process.env.SHOOT_FUZZ_CASES ?? 2000);
const CLI_EVERY = 100;
const TAR = requireTool("tar");
const SETPRIV = requireTool("setpriv");

let base: string;
let sb: Sandbox;
let work: string;
const since = BigInt(Date.now()) * 1_000_000n;

beforeAll(() => {
  expect(process.getuid?.()).toBe(0);
  base = tempDir("shoot-fuzz-");
  fs.chmodSync(base, 0o755);
  sb = makeSandbox(path.join(base, "watched"));
  work = path.join(base, "work");
  fs.mkdirSync(work, { mode: 0o777 });
  fs.chmodSync(work, 0o777);
});

afterAll(() => {
  if (base) removeTree(base);
}, 60_000);

/** The valid archives the mutations start from (tar streams). */
function bases(): Uint8Array[] {
  const rand = seeded(SEED ^ 0x5eed);
  const sizes = [0, 1, 511, 512, 513, 5000];
  const full = new Uint8Array(20_000);
  for (let i = 0; i < 3; i++) full.set(randomBytes(rand, 1500), 1000 + i * 6000);
  const map: B.SparseMap = [[1000, 1500], [7000, 1500], [13000, 1500], [20_000, 0]];
  return [
    B.tar(B.dir("d", { mode: 0o750 }), ...sizes.map((n, i) => B.file(`d/f${i}`, randomBytes(rand, n), { mode: 0o640 + i })), B.symlink("d/l", "f1"), B.hardlink("d/h", "d/f2"), B.dir("d/e")),
    B.tar(B.pax([["path", `${"long/".repeat(30)}pax été`], ["mtime", "1600000000.123456789"]]), B.file("x", "pax\n"), B.gnuLong("L", `${"gnu/".repeat(40)}f`), B.file("y", "gnu\n", { magic: "gnu" }), B.pax([["linkpath", "x"]]), B.symlink("s", "ignored")),
    B.tar(B.oldGnuSparse("sp-old", full, map), B.paxSparse("1.0", "sp-new", full, map), B.paxSparse("0.1", "sp-01", full, map)),
    B.tar(B.pax([["mtime", "1500000000"]], "g"), ...Array.from({ length: 40 }, (_, i) => B.file(`many/${i}`, `file ${i}\n`))),
    B.tar(B.dir("z"), B.file("z/noise", randomBytes(rand, 70_000)), B.file("z/text", "text line\n".repeat(3000))),
  ];
}

/** Where each entry's first header starts in a tar stream: the places a header mutation aims at. */
function headerOffsets(t: Uint8Array): number[] {
  const out: number[] = [];
  new TarParser().push(t, (e) => out.push(e.offset ?? 0));
  return out;
}

function fixChecksum(t: Uint8Array, at: number): void {
  if (at + 512 > t.length) return;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : t[at + i]!;
  t.set(new TextEncoder().encode(`${sum.toString(8).padStart(6, "0")}\u0000 `), at + 148);
}

type Rand = () => number;
const pick = <T,>(r: Rand, a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
const int = (r: Rand, n: number) => Math.floor(r() * n);

/** One mutation of a tar stream, with a header's checksum made right again most of the time; its name. */
function mutateTar(r: Rand, t: Uint8Array, headers: number[]): [Uint8Array, string] {
  const h = headers.length > 0 && r() < 0.8 ? pick(r, headers) : int(r, Math.max(1, t.length / 512)) * 512;
  const fields: Array<[string, number, number]> = [["name", 0, 100], ["mode", 100, 8], ["uid", 108, 8], ["size", 124, 12], ["mtime", 136, 12], ["type", 156, 1], ["link", 157, 100], ["magic", 257, 8], ["prefix", 345, 155], ["sparse", 386, 126]];
  const kind = pick(r, ["field", "field", "field", "bit", "cut", "block-out", "block-twice", "block-swap", "zero-block", "garbage-tail"]);
  const out = t.slice();
  switch (kind) {
    case "field": {
      const [name, off, width] = pick(r, fields);
      const n = 1 + int(r, Math.min(width, 4));
      const vals = [0x00, 0x20, 0x2f, 0x2e, 0x30, 0x37, 0x38, 0x80, 0xff, 0x35, 0x32, 0x31, 0x53, 0x78, 0x67, 0x4c, 0x4b, ...Array.from({ length: 8 }, () => int(r, 256))];
      for (let i = 0; i < n; i++) if (h + off + width <= out.length) out[h + off + int(r, width)] = pick(r, vals);
      const fixed = r() < 0.7;
      if (fixed) fixChecksum(out, h);
      return [out, `field ${name}${fixed ? " (checksum fixed)" : ""}`];
    }
    case "bit":
      out[int(r, out.length)]! ^= 1 << int(r, 8);
      return [out, "bit"];
    case "cut":
      return [out.subarray(0, int(r, out.length)), "cut"];
    case "block-out":
      return [B.concat([out.subarray(0, h), out.subarray(h + 512)]), "block out"];
    case "block-twice":
      return [B.concat([out.subarray(0, h + 512), out.subarray(h, h + 512), out.subarray(h + 512)]), "block twice"];
    case "block-swap": {
      const blocks = Math.floor(out.length / 512);
      if (blocks < 2 || h + 512 > out.length) return [out, "blocks swapped (none)"];
      const g = int(r, blocks) * 512;
      const a = out.slice(h, h + 512);
      out.set(out.subarray(g, g + 512), h);
      out.set(a, g);
      return [out, "blocks swapped"];
    }
    case "zero-block":
      out.fill(0, h, h + 512);
      return [out, "zero block"];
    default:
      return [B.concat([out, randomBytes(r, 1 + int(r, 2000))]), "garbage after"];
  }
}

/** One mutation of compressed bytes. */
function mutateBytes(r: Rand, c: Uint8Array): [Uint8Array, string] {
  const out = c.slice();
  const at = int(r, out.length);
  switch (pick(r, ["bit", "byte", "cut", "delete", "insert", "repeat"])) {
    case "bit":
      out[at]! ^= 1 << int(r, 8);
      return [out, "bit"];
    case "byte":
      out[at] = int(r, 256);
      return [out, "byte"];
    case "cut":
      return [out.subarray(0, at), "cut"];
    case "delete":
      return [B.concat([out.subarray(0, at), out.subarray(at + 1 + int(r, 64))]), "bytes out"];
    case "insert":
      return [B.concat([out.subarray(0, at), randomBytes(r, 1 + int(r, 64)), out.subarray(at)]), "bytes in"];
    default:
      return [B.concat([out.subarray(0, at + 64), out.subarray(at, at + 64), out.subarray(at + 64)]), "bytes twice"];
  }
}

/** A case: a base, a compression, one to three mutations (of the tar stream, or of the compressed bytes). */
function makeCase(r: Rand, bs: Uint8Array[], headers: number[][]): { bytes: Uint8Array; compression: B.Compression; how: string } {
  const i = int(r, bs.length);
  const compression = pick(r, ["none", "gzip", "zstd"] as const);
  const hows: string[] = [];
  const onTar = compression === "none" || r() < 0.5;
  if (onTar) {
    let t = bs[i]!;
    for (let n = 1 + int(r, 3); n > 0; n--) {
      const [m, how] = mutateTar(r, t, headers[i]!);
      t = m;
      hows.push(how);
    }
    return { bytes: B.compress(t, compression), compression, how: `${compression} tar: ${hows.join(", ")}` };
  }
  let c = B.compress(bs[i]!, compression);
  for (let n = 1 + int(r, 2); n > 0; n--) {
    const [m, how] = mutateBytes(r, c);
    c = m;
    hows.push(how);
  }
  return { bytes: c, compression, how: `${compression} stream: ${hows.join(", ")}` };
}

/** A code (and message) from what a core call returned or threw; an error for anything but a ShootError (a crash). */
async function codeOf<T>(f: () => Promise<T>, code: (v: T) => number, message?: (v: T) => string): Promise<{ code?: number; message?: string; error?: unknown }> {
  try {
    const v = await f();
    return { code: code(v), message: message?.(v) };
  } catch (e) {
    return e instanceof ShootError ? { code: e.code, message: e.message } : { error: e };
  }
}

function spawn(argv: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(argv, { stdin: "ignore", cwd: work, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work, TMPDIR: work, NO_COLOR: "1" } });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const openFds = () => new Map(fs.readdirSync("/proc/self/fd").map((fd) => [fd, (() => { try { return fs.readlinkSync(`/proc/self/fd/${fd}`); } catch { return "?"; } })()]));

test(`seeded fuzz of restore, list and verify --deep: mutated archives of every compression end in a right result or a named code, never a change outside the target`, async () => {
  const r = seeded(SEED);
  const bs = bases();
  const headers = bs.map(headerOffsets);
  const file = path.join(work, "case.tar");
  const gnuDir = path.join(work, "gnu");
  fs.mkdirSync(gnuDir);
  const problems: string[] = [];
  const tally = new Map<string, number>();
  const examples = new Map<number, string[]>();
  const add = (k: string) => tally.set(k, (tally.get(k) ?? 0) + 1);
  // taken after the first case: the runtime opens its own (an event poll, an eventfd) on first use
  let fdsBefore = new Map<string, string>();
  let gnuCompared = 0;
  let viaCli = 0;
  for (let n = 0; n < CASES; n++) {
    const c = makeCase(r, bs, headers);
    const say = (what: string) => problems.push(`case ${n} (${c.how}): ${what}`);
    fs.writeFileSync(file, c.bytes);
    fs.writeFileSync(`${file}.md5`, `${new Bun.CryptoHasher("md5").update(c.bytes).digest("hex")}  case.tar\n`);
    const held = describeArchive(file, "file", "")!;
    emptyDir(sb.target);
    const before = outside(sb.base, [sb.target]);
    const rs = await codeOf(() => runRestore(held, { to: sb.target }), (x) => x.code, (x) => x.message);
    for (const ch of changes(before, outside(sb.base, [sb.target]))) say(`changed outside the target: ${ch}`);
    const ls = await codeOf(() => readEntries(file, () => {}), () => 0);
    const vf = await codeOf(() => verifyArchive(held, { deep: true }), (v) => v.code);
    for (const [what, o] of [["restore", rs], ["list", ls], ["verify", vf]] as const) {
      if (o.error !== undefined) say(`${what} threw ${o.error instanceof Error ? o.error.stack : String(o.error)}`);
      else if (!NAMED.has(o.code!)) say(`${what} ended with ${o.code}, not a named code`);
    }
    add(`restore ${rs.code ?? "crash"}`);
    if (rs.message && rs.code !== 0 && rs.code !== 95 && (examples.get(rs.code!) ?? []).length < 2) examples.set(rs.code!, [...(examples.get(rs.code!) ?? []), `${c.how}: ${rs.message.slice(0, 240)}`]);
    if ((rs.code === 95) !== (ls.code === 95) || (rs.code === 95) !== (vf.code === 95)) say(`restore ${rs.code}, list ${ls.code}, verify --deep ${vf.code}: they disagree on damage`);
    // whatever restore made, GNU tar makes the same
    const mine = restored(sb.target);
    if (mine.size > 0 || rs.code === 0) {
      emptyDir(gnuDir);
      spawn([TAR, "--numeric-owner", "-xpf", file, "-C", gnuDir]);
      for (const d of differences(mine, restored(gnuDir), rs.code ?? -1, "root", since)) say(d);
      gnuCompared++;
    }
    if (n % CLI_EVERY === 0) {
      viaCli++;
      for (const user of ["root", "nobody"] as const) {
        emptyDir(sb.target, user === "root" ? 0 : NOBODY);
        const b = outside(sb.base, [sb.target]);
        const pre = user === "root" ? [] : [SETPRIV, `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups"];
        const cli = spawn([...pre, ...shootArgv(), "restore", file, "--to", sb.target, "--quiet"]);
        for (const ch of changes(b, outside(sb.base, [sb.target]))) say(`CLI restore as ${user} changed outside the target: ${ch}`);
        for (const x of crashes(cli)) say(`CLI restore as ${user}: ${x}: ${cli.stderr.slice(0, 300)}`);
        if (user === "root" && cli.code !== rs.code) say(`CLI restore ended ${cli.code}, in process ${rs.code}`);
      }
      const l = spawn([...shootArgv(), "list", file]);
      const v = spawn([...shootArgv(), "verify", "--deep", "--quiet", file]);
      for (const x of crashes(l)) say(`CLI list: ${x}`);
      for (const x of crashes(v)) say(`CLI verify: ${x}`);
    }
    if (n === 0) fdsBefore = openFds();
  }
  // descriptors only garbage still holds (the pipes of a process another test file started and
  // never read) are closed by a collection; a descriptor restore, list or verify left open is
  // a number no collection closes
  Bun.gc(true);
  const after = openFds();
  // "?": the descriptor that listed them, closed by the time it is looked at
  const leaked = [...after].filter(([fd, what]) => what !== "?" && fdsBefore.get(fd) !== what).map(([fd, what]) => `${fd} ${what}`);
  console.log(`fuzz: seed ${SEED} (SHOOT_FUZZ_SEED replays it), ${CASES} cases, ${viaCli} of them also through the CLI as root and as nobody, ${gnuCompared} compared with GNU tar; outcomes: ${[...tally].sort().map(([k, v]) => `${k}: ${v}`).join(", ")}`);
  for (const [k, v] of examples) for (const e of v) console.log(`  e.g. ${k}: ${e}`);
  expect(leaked).toEqual([]);
  expect(problems.slice(0, 30)).toEqual([]);
}, 600_000);
