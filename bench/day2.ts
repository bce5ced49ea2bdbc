/**
 * Day 2 on the wire, for five kinds of change, each a row: a day-1 archive pulled, the tree
 * changed, a day-2 archive pulled; the bytes counted by a TCP proxy between ssh and sshd
 * (proxy.ts), both ways, for `shoot client` (everything it sends and receives: status, checksum,
 * file list and archive) and for its peer, GNU tar with the rsyncable compressor and plain
 * `rsync -e ssh` of the archive with day 1's archive as its basis.
 *
 * The changes are made to a copy of the benchmark tree and undone after each kind (rsync from
 * the untouched tree). Each kind has a day 1 of its own, made after the tree was put back: the
 * files the undo rewrote have new inodes and ctimes, which are no part of the next change.
 */
import fs from "node:fs";
import path from "node:path";
import { code } from "../src/core/common/codes.ts";
import { startSshd, type SshServer } from "../test/helpers/sshd.ts";
import { makeRng, randomBytes, textLike } from "./gen.ts";
import { measure, MiB, verdict, type Row } from "./lib.ts";
import { knownHostsThrough, startCountingProxy, type CountingProxy } from "./proxy.ts";
import { clientRun, freshDir, serverRun, writeClientConfig, writeServerConfig, type BenchContext } from "./shoot.ts";

const FIRST = code("FIRST_ARCHIVE");
const NEW = code("NEW_ARCHIVE");
const SOURCE = "bench";

/** The peer's compressor for each compression, run by GNU tar with -I. */
export const RSYNCABLE = { gzip: { tar: "pigz --rsyncable", ext: "tgz" }, zstd: { tar: "zstd -3 --rsyncable", ext: "tzst" } } as const;

interface Pattern {
  name: string;
  /** Change the working tree; returns a few words on what was changed. */
  apply(tree: string): string;
}

/** Every file under `dir` whose path matches, sorted (the same list on every run). */
function filesUnder(dir: string, match: (rel: string) => boolean): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = path.join(e.parentPath, e.name);
    if (match(path.relative(dir, p))) out.push(p);
  }
  return out.sort();
}

/** Insert `bytes` into `file` at `at` (the file is rewritten, as an editor saves it). */
function insertInto(file: string, at: number, bytes: Uint8Array): void {
  const old = fs.readFileSync(file);
  fs.writeFileSync(file, Buffer.concat([old.subarray(0, at), bytes, old.subarray(at)]));
}

export const PATTERNS: Pattern[] = [
  {
    name: "spread-thin appends",
    apply(tree) {
      const rng = makeRng(21);
      const small = filesUnder(tree, (r) => r.startsWith("small/"));
      let n = 0;
      for (let i = 50; i < small.length; i += 100, n++) fs.appendFileSync(small[i]!, `changed on day two, file ${i}\n`);
      const big = filesUnder(tree, (r) => r.startsWith("big/"));
      fs.appendFileSync(big[0]!, randomBytes(rng, 300 * 1024));
      const medium = filesUnder(tree, (r) => r.startsWith("medium/"));
      fs.rmSync(medium[medium.length - 1]!);
      fs.writeFileSync(path.join(tree, "small", "new-on-day-two.txt"), textLike(rng, 50 * 1024));
      return `${n} small files appended to, 300 KiB appended to a large file, a file deleted, a file added`;
    },
  },
  {
    name: "inserts in the middle of large files",
    apply(tree) {
      const rng = makeRng(22);
      const big = filesUnder(tree, (r) => r.startsWith("big/")).slice(0, 3);
      for (const f of big) insertInto(f, Math.floor(fs.statSync(f).size / 2), randomBytes(rng, 4096));
      return `4 KiB inserted in the middle of ${big.length} large files`;
    },
  },
  {
    name: "a directory renamed",
    apply(tree) {
      const dirs = fs.readdirSync(path.join(tree, "small")).filter((d) => d.startsWith("d")).sort();
      const d = dirs[Math.floor(dirs.length / 3)]!;
      const files = fs.readdirSync(path.join(tree, "small", d)).length;
      fs.renameSync(path.join(tree, "small", d), path.join(tree, "small", `${d}-renamed`));
      return `small/${d} (${files} files) renamed`;
    },
  },
  {
    name: "many deletions",
    apply(tree) {
      const small = filesUnder(tree, (r) => r.startsWith("small/"));
      let n = 0;
      for (let i = 0; i < small.length; i += 10, n++) fs.rmSync(small[i]!);
      return `${n} of ${small.length} small files deleted`;
    },
  },
  {
    name: "one large file rewritten in place",
    apply(tree) {
      const rng = makeRng(25);
      const file = filesUnder(tree, (r) => r.startsWith("big/") && r.endsWith(".dat"))[0]!;
      const size = fs.statSync(file).size;
      const pages = Math.floor(size / 4096);
      const fd = fs.openSync(file, "r+");
      let n = 0;
      try {
        // one page in a hundred, scattered, as a database writes its pages back
        for (let p = rng() % 100; p < pages; p += 50 + (rng() % 100), n++) fs.writeSync(fd, randomBytes(rng, 4096), 0, 4096, p * 4096);
      } finally {
        fs.closeSync(fd);
      }
      return `${n} of ${pages} 4 KiB pages of ${path.basename(file)} (${(size / MiB).toFixed(0)} MiB) rewritten in place`;
    },
  },
];

interface Side {
  backup: string;
  dest: string;
  config: string;
  client: string;
}

/** A server and a client configuration whose client goes through the proxy. */
function sides(dir: string, tree: string, c: "gzip" | "zstd", sshd: SshServer, proxy: CountingProxy, fresh = true): Side {
  const backup = path.join(dir, "backup");
  const dest = path.join(dir, "dest");
  if (fresh) {
    freshDir(backup);
    freshDir(dest);
  }
  const config = writeServerConfig(path.join(dir, "server.toml"), { name: SOURCE, sources: [tree], backupDir: backup, compression: c });
  const knownHosts = knownHostsThrough(sshd.knownHosts, proxy.port, path.join(dir, "known_hosts"));
  const client = writeClientConfig(path.join(dir, "client.toml"), {
    dest,
    knownHosts,
    source: { name: SOURCE, remote: `${sshd.user}@127.0.0.1:${backup}`, port: proxy.port, identity: sshd.userKey.key },
  });
  return { backup, dest, config, client };
}

/** The ssh command rsync runs for the peer: the same key and host check, through the proxy. */
function peerSsh(sshd: SshServer, proxy: CountingProxy, knownHosts: string): string {
  return ["ssh", "-p", String(proxy.port), "-i", sshd.userKey.key, "-o", "BatchMode=yes", "-o", `UserKnownHostsFile=${knownHosts}`, "-o", "StrictHostKeyChecking=yes"].join(" ");
}

interface Wire {
  bytes: number;
  size: number;
}

/** GNU tar with the rsyncable compressor, as the peer makes each day's archive. */
function peerTar(c: "gzip" | "zstd", tree: string, out: string): Promise<unknown> {
  return measure(["tar", "-I", RSYNCABLE[c].tar, "-cf", out, "-C", "/", tree.slice(1)]);
}

/** The peer's day 2: day 1's archive as the basis under day 2's name on the client, rsync through the proxy. */
async function peerDay2(dir: string, tree: string, c: "gzip" | "zstd", day1: string, sshd: SshServer, proxy: CountingProxy): Promise<Wire> {
  const server = freshDir(path.join(dir, "peer-server"));
  const client = freshDir(path.join(dir, "peer-client"));
  const name = `gnu-day2.${RSYNCABLE[c].ext}`;
  fs.copyFileSync(day1, path.join(client, name));
  await peerTar(c, tree, path.join(server, name));
  const knownHosts = knownHostsThrough(sshd.knownHosts, proxy.port, path.join(dir, "peer_known_hosts"));
  proxy.reset();
  await measure(["rsync", "--times", "-e", peerSsh(sshd, proxy, knownHosts), "--", `${sshd.user}@127.0.0.1:${path.join(server, name)}`, `${client}/`]);
  const wire = { bytes: proxy.up + proxy.down, size: fs.statSync(path.join(server, name)).size };
  fs.rmSync(server, { recursive: true, force: true });
  fs.rmSync(client, { recursive: true, force: true });
  return wire;
}

/**
 * Day 1 of one compression before one change: shoot's first server run and first pull (in
 * `dir`/shoot, where day 2 follows) and the peer's first archive, whose path is returned.
 */
async function day1(ctx: BenchContext, dir: string, tree: string, c: "gzip" | "zstd", sshd: SshServer, proxy: CountingProxy, pattern: string): Promise<string> {
  const s = sides(path.join(dir, "shoot"), tree, c, sshd, proxy);
  const label = `server ${c}, day 1 before ${pattern}`;
  const first = (await serverRun(ctx.bin, s.config, s.backup, FIRST, { checks: ctx.checks, label, source: tree })).final.archive!;
  ctx.checks.keep(label, path.join(s.backup, first.file), { copy: true });
  await ctx.checks.checkNow(label, ctx.rows);
  await clientRun(ctx.bin, s.client, s.dest, FIRST);
  const peer = path.join(dir, `peer-day1.${RSYNCABLE[c].ext}`);
  await peerTar(c, tree, peer);
  return peer;
}

const kib = (n: number) => `${(n / 1024).toFixed(0)} KiB`;

/** Put the working tree back as the benchmark tree is (content, names, times). */
async function undo(pristine: string, work: string): Promise<void> {
  await measure(["rsync", "-a", "--delete", `${pristine}/`, `${work}/`]);
}

/**
 * Each pattern × compression: the peer's wire bytes and shoot's, as a ratio (the target: no
 * more than the peer). The tree is copied once to work on and put back after each change.
 */
export async function day2Patterns(ctx: BenchContext, compressions: ReadonlyArray<"gzip" | "zstd"> = ["gzip", "zstd"]): Promise<void> {
  const dir = path.join(ctx.dataDir, "day2");
  const work = path.join(dir, "tree");
  freshDir(dir);
  console.error(`day 2 on the wire: copying the tree to ${work} ...`);
  await measure(["cp", "-a", ctx.tree, work]);
  const sshd = await startSshd();
  const proxy = await startCountingProxy(sshd.port);
  try {
    for (const c of compressions) {
      for (const p of PATTERNS) {
        console.error(`day 2, ${p.name}, ${c}: day 1 of shoot (server and client) and of GNU tar + ${RSYNCABLE[c].tar} ...`);
        const peerDay1 = await day1(ctx, dir, work, c, sshd, proxy, p.name);
        console.error(`day 2, ${p.name}, ${c}: the change, then GNU tar + ${RSYNCABLE[c].tar} + rsync, and shoot server and client ...`);
        const what = p.apply(work);
        const peer = await peerDay2(dir, work, c, peerDay1, sshd, proxy);
        const s = sides(path.join(dir, "shoot"), work, c, sshd, proxy, false);
        const label = `server ${c}, day 2 (${p.name})`;
        const made = (await serverRun(ctx.bin, s.config, s.backup, NEW, { checks: ctx.checks, label, source: work })).final.archive!;
        ctx.checks.keep(label, path.join(s.backup, made.file), { copy: true });
        await ctx.checks.checkNow(label, ctx.rows);
        proxy.reset();
        await clientRun(ctx.bin, s.client, s.dest, NEW);
        const shoot = { bytes: proxy.up + proxy.down, size: made.size };
        await undo(ctx.tree, work);
        pushWireRows(ctx.rows, p.name, c, what, peer, shoot);
        console.error(`  wire: peer ${kib(peer.bytes)}, shoot ${kib(shoot.bytes)} (${(shoot.bytes / peer.bytes).toFixed(2)}x)`);
      }
    }
  } finally {
    await proxy.stop();
    await sshd.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function pushWireRows(rows: Row[], pattern: string, c: "gzip" | "zstd", what: string, peer: Wire, shoot: Wire): void {
  const ratio = shoot.bytes / peer.bytes;
  rows.push({ name: `day 2 peer: GNU tar + ${RSYNCABLE[c].tar} + rsync -e ssh, ${pattern}`, ratio: 1, note: `wire ${kib(peer.bytes)} (${((peer.bytes / peer.size) * 100).toFixed(2)} % of ${(peer.size / MiB).toFixed(0)} MiB); ${what}` });
  rows.push({
    name: `day 2 shoot client (${c}), ${pattern}`,
    ratio,
    note: `wire ${kib(shoot.bytes)} (${((shoot.bytes / shoot.size) * 100).toFixed(2)} % of ${(shoot.size / MiB).toFixed(0)} MiB), counted by a proxy between ssh and sshd`,
    target: "wire ≤ 1.0× peer",
    verdict: verdict(ratio, 1, 1, false),
  });
}
