/**
 * One backup host, a hundred servers. Each server is a backup directory with a real archive
 * (GNU tar extracts it), served over ssh: most by the suite's sshd on 127.0.0.1, some from
 * network namespaces this test makes, each with an sshd of its own behind a bad link (200 ms
 * each way, 5 % of the packets lost, 1 MiB/s), one behind a link that drops every packet, one
 * that accepts the connection and never answers, and one whose server stopped running.
 * `shoot client` pulls them all at concurrency 8, configured through [client.defaults] and a
 * sources_dir of a hundred files, while this test samples its descriptors, its memory and
 * the ssh processes it started. Then: every reachable server pulled and verified (and its copy
 * extracted by GNU tar equal to its source), the dead and the silent ones ended with their
 * codes within their own time-outs, no slot ever stood idle while a source waited (so the dead
 * delayed no one), the wall time within 1.2 × (the sum of the pulls ÷ concurrency) plus the
 * longest single source (its time-outs, or a slow link), one report mailed, and nothing left in the temporary directory.
 *
 * This kernel has no netem (CONFIG_NET_SCH_NETEM): delay and loss come from a link in user
 * space (test/helpers/wan-link.ts); the 1 MiB/s link is tc's tbf on a veth pair.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { startShoot, runShoot } from "../helpers/cli.ts";
import { md5sumCheck } from "../helpers/client.ts";
import { faultFile, injected } from "../helpers/faults.ts";
import { tempDir, statusRecords } from "../helpers/fixture.ts";
import { Namespaces, type Link } from "../helpers/netns.ts";
import { startRelay, type TestRelay } from "../helpers/smtp.ts";
import { payloadTree, randomBytes, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";
import { archiveName } from "../../src/core/state/naming.ts";
import { lastPullDurations } from "../../src/core/client/schedule.ts";
import { spawner } from "../../src/io/process.ts";

faultFile(import.meta.path);

const CONCURRENCY = 8;
const CONNECT_TIMEOUT_S = 3;
const TRIES = 2;
const RETRY_WAIT_S = 1;
const KiB = 1024;

type Kind = "good" | "stale" | "slow" | "delay" | "loss" | "dead" | "silent";

interface Server {
  name: string;
  kind: Kind;
  backup: string;
  /** The tree its archive holds, for comparing what GNU tar extracts from the copy. */
  tree: string;
  remote: string;
  port?: number;
  link?: Link;
  file?: string;
}

let root: string;
let sshd: SshServer;
let relay: TestRelay;
const namespaces = new Namespaces();
const nsSshds: SshServer[] = [];
let silent: net.Server;
const servers: Server[] = [];
let config: string;
let dest: string;
let tmp: string;

/** Sizes that give the pulls different lengths; every tenth is larger. */
function sizeOf(i: number, kind: Kind): number {
  if (kind === "slow") return 2048 * KiB;
  if (kind === "loss") return 1024 * KiB;
  if (kind === "delay") return 256 * KiB;
  return i % 10 === 3 ? 1536 * KiB : (64 + ((i * 37) % 192)) * KiB;
}

function kindOf(i: number): Kind {
  return (["stale", "slow", "delay", "loss", "dead", "silent"] as const)[i - 94] ?? "good";
}

async function makeServer(i: number): Promise<Server> {
  const name = `srv${String(i).padStart(3, "0")}`;
  const kind = kindOf(i);
  const backup = path.join(root, "servers", name);
  const tree = path.join(root, "trees", name);
  const bytes = randomBytes(sizeOf(i, kind));
  const info = await writeArchive(backup, archiveName(name, new Date(Date.UTC(2026, 0, 1, 3)), "gzip"), bytes);
  payloadTree(tree, bytes);
  writeServerStatus(backup, info, { final: "FIRST_ARCHIVE", ageMs: kind === "stale" ? 3 * 86_400_000 : 60_000 });
  const s: Server = { name, kind, backup, tree, remote: `${sshd.user}@127.0.0.1:${backup}`, file: info.file };
  if (kind === "slow" || kind === "delay" || kind === "loss" || kind === "dead") {
    s.link = kind === "slow" ? await namespaces.veth({ rateBytes: 1024 * KiB })
      : kind === "delay" ? await namespaces.wan({ delayMs: 200 })
      : kind === "loss" ? await namespaces.wan({ loss: 0.05, seed: i })
      : await namespaces.wan({ loss: 1 });
    s.remote = `${sshd.user}@${s.link.nsAddr}:${backup}`;
    s.port = 22;
    if (kind !== "dead") {
      const inner = await startSshd({ netns: s.link.ns, address: s.link.nsAddr });
      inner.authorize(sshd.userKey.publicLine);
      nsSshds.push(inner);
    }
  }
  if (kind === "silent") s.port = (silent.address() as net.AddressInfo).port;
  return s;
}

beforeAll(async () => {
  requireTool("ip");
  requireTool("tc");
  root = tempDir("shoot-scale-");
  tmp = path.join(root, "tmp");
  fs.mkdirSync(tmp);
  sshd = await startSshd();
  relay = await startRelay({ tls: "none" });
  await namespaces.open();
  // accepts every connection and never says a word: only ssh's ConnectTimeout ends the wait
  silent = net.createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
  for (let i = 0; i < 100; i++) servers.push(await makeServer(i));
  const knownHosts = path.join(root, "known_hosts");
  fs.writeFileSync(knownHosts, [sshd, ...nsSshds].map((s) => fs.readFileSync(s.knownHosts, "utf8")).join(""));
  const sourcesDir = path.join(root, "sources.d");
  fs.mkdirSync(sourcesDir);
  // one small file per server, as configuration management drops them in; the name is the file's
  for (const s of servers) fs.writeFileSync(path.join(sourcesDir, `${s.name}.toml`), `remote = ${JSON.stringify(s.remote)}\n${s.port ? `port = ${s.port}\n` : ""}`);
  dest = path.join(root, "dest");
  config = path.join(root, "shoot.toml");
  fs.writeFileSync(config, [
    "[client]",
    `dest_dir = ${JSON.stringify(dest)}`,
    'reserve = "0"',
    `concurrency = ${CONCURRENCY}`,
    'timeout = "10s"',
    `connect_timeout = "${CONNECT_TIMEOUT_S}s"`,
    `tries = ${TRIES}`,
    `retry_wait = "${RETRY_WAIT_S}s"`,
    `known_hosts = ${JSON.stringify(knownHosts)}`,
    `sources_dir = ${JSON.stringify(sourcesDir)}`,
    "",
    "[client.defaults]",
    `identity = ${JSON.stringify(sshd.userKey.key)}`,
    `port = ${sshd.port}`,
    "",
    "[mail]",
    'to = ["ops@example.com"]',
    'from = "shoot@backup1.example.com"',
    `smtp = ${JSON.stringify(relay.url)}`,
    'when = "always"',
    "",
    "[monitor]",
    `metrics_file = ${JSON.stringify(path.join(root, "shoot.prom"))}`,
    "",
  ].join("\n"));
}, 120_000);

afterAll(async () => {
  for (const s of nsSshds) await s.stop().catch(() => undefined);
  await sshd?.stop();
  await relay?.close();
  silent?.close();
  // whatever happened above: no namespace, link or qdisc of this run stays
  await namespaces.close();
  expect(await namespaces.remaining()).toEqual([]);
  if (root) fs.rmSync(root, { recursive: true, force: true });
}, 60_000);

interface Samples {
  fds: number;
  rssKiB: number;
  hwmKiB: number;
  ssh: number;
  rsync: number;
  samples: number;
}

function procStatusKiB(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** ssh and rsync processes whose command line names `marker` (the key every source logs in with). */
function processesWith(marker: string): { ssh: number; rsync: number } {
  let ssh = 0;
  let rsync = 0;
  for (const e of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
      if (!argv.some((a) => a.includes(marker))) continue;
      const prog = path.basename(argv[0] ?? "");
      if (prog === "ssh") ssh++;
      else if (prog === "rsync") rsync++;
    } catch {
      // ended while we looked
    }
  }
  return { ssh, rsync };
}

/** Sample the client every 150 ms until it exits: descriptors, memory, ssh and rsync processes. */
async function sampled(proc: ReturnType<typeof startShoot>, marker: string): Promise<Samples> {
  const peak: Samples = { fds: 0, rssKiB: 0, hwmKiB: 0, ssh: 0, rsync: 0, samples: 0 };
  let done = false;
  void proc.exited.then(() => (done = true));
  while (!done) {
    try {
      peak.fds = Math.max(peak.fds, fs.readdirSync(`/proc/${proc.pid}/fd`).length);
    } catch {
      // exited
    }
    peak.rssKiB = Math.max(peak.rssKiB, procStatusKiB(proc.pid, "VmRSS"));
    peak.hwmKiB = Math.max(peak.hwmKiB, procStatusKiB(proc.pid, "VmHWM"));
    const p = processesWith(marker);
    peak.ssh = Math.max(peak.ssh, p.ssh);
    peak.rsync = Math.max(peak.rsync, p.rsync);
    peak.samples++;
    await Bun.sleep(150);
  }
  return peak;
}

interface Try {
  source: string;
  start: number;
  end: number;
}

/** Each try of each source from client.status: from its "pulling server.status" to its RETRY or SOURCE_DONE. */
function triesOf(records: Array<Record<string, any>>): Try[] {
  const open = new Map<string, number>();
  const out: Try[] = [];
  for (const r of records) {
    const source = r.data?.source;
    if (typeof source !== "string") continue;
    const t = Date.parse(r.t);
    if (r.name === "STEP" && String(r.msg).endsWith("pulling server.status")) open.set(source, t);
    if (r.name === "RETRY" || r.name === "SOURCE_DONE") {
      const start = open.get(source);
      if (start !== undefined) out.push({ source, start, end: t });
      open.delete(source);
    }
  }
  return out;
}

/** Slot-seconds left idle between the run's start and the last try's start, while tries were waiting. */
function idleSlotSeconds(tries: readonly Try[], runStart: number, concurrency: number): number {
  const lastStart = Math.max(...tries.map((t) => t.start));
  const events = tries.flatMap((t) => [[t.start, 1], [t.end, -1]] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let running = 0;
  let at = runStart;
  let idle = 0;
  for (const [t, d] of events) {
    const until = Math.min(t, lastStart);
    if (until > at) idle += Math.max(0, concurrency - running) * (until - at);
    at = Math.max(at, until);
    running += d;
  }
  return idle / 1000;
}

describe("one backup host, a hundred servers", () => {
  test("every reachable server pulled and verified, the dead and silent ones end in their own time-outs, no slot idle while sources wait, one report", async () => {
    const t0 = performance.now();
    const proc = startShoot(["client", "--config", config, "--json"], { env: { TMPDIR: tmp } });
    injected("a server behind a link that drops every packet");
    injected("a server that accepts and never answers");
    injected("a server behind a slow, lossy or distant link", 3);
    const [peak, stdout] = await Promise.all([sampled(proc, sshd.userKey.key), new Response(proc.stdout).text()]);
    const code = await proc.exited;
    const seconds = (performance.now() - t0) / 1000;
    const outcome = JSON.parse(stdout) as { code: number; message: string; sources: Array<{ name: string; code: number; message: string; tries: number; durationMs: number }> };
    const byName = new Map(outcome.sources.map((s) => [s.name, s]));

    // codes: everything reachable pulled (30: a first copy), the stale server said so, the dead and silent ones unreachable
    const want = (s: Server) => (s.kind === "stale" ? 44 : s.kind === "dead" || s.kind === "silent" ? 40 : 30);
    expect(servers.map((s) => [s.name, byName.get(s.name)?.code])).toEqual(servers.map((s) => [s.name, want(s)]));
    expect(code).toBe(44);
    expect(outcome.message).toStartWith("100 sources: 97 OK, 2 failed, 1 stale");

    // every copy verified (md5sum -c) and, extracted by GNU tar, equal to what the server archived
    const extractRoot = path.join(root, "extracted");
    for (const s of servers.filter((x) => want(x) === 30)) {
      expect({ s: s.name, copies: md5sumCheck(path.join(dest, s.name)) }).toEqual({ s: s.name, copies: [s.file!] });
      const to = path.join(extractRoot, s.name);
      fs.mkdirSync(to, { recursive: true });
      const r = await spawner.run([requireTool("tar"), "-x", "-p", "--numeric-owner", "-f", path.join(dest, s.name, s.file!), "-C", to], { timeoutMs: 30_000 });
      expect({ s: s.name, tar: r.exitCode, diffs: treeDifferences(s.tree, to, { owners: process.getuid?.() === 0 }) }).toEqual({ s: s.name, tar: 0, diffs: [] });
    }
    fs.rmSync(extractRoot, { recursive: true, force: true });

    // the dead and the silent ones: their named code, within their own time-outs (each try one
    // connect time-out, the pauses between), tried again because nothing had come
    const records = statusRecords(path.join(dest, "client.status"));
    const tries = triesOf(records);
    const spanOf = (name: string) => {
      const mine = tries.filter((t) => t.source === name);
      return (Math.max(...mine.map((t) => t.end)) - Math.min(...mine.map((t) => t.start))) / 1000;
    };
    // each try one connect time-out plus starting ssh and rsync on a busy machine, and the pauses
    const ownLimit = TRIES * (CONNECT_TIMEOUT_S + 2) + RETRY_WAIT_S * 1.5 + 2;
    for (const name of ["srv098", "srv099"]) {
      const o = byName.get(name)!;
      expect({ name, tries: o.tries, message: o.message }).toMatchObject({ name, tries: TRIES, message: expect.stringMatching(/timed out/i) });
      expect({ name, within: spanOf(name) <= ownLimit }).toEqual({ name, within: true });
    }

    // a source waits for a free slot, never for another: between the run's start and the last
    // start, the slots stood idle only for the moments of handing over
    const runStart = Date.parse(records[0]!.t);
    const runEnd = Date.parse(records.at(-1)!.t);
    const idle = idleSlotSeconds(tries, runStart, CONCURRENCY);
    expect({ idle, bound: idle <= 0.3 * tries.length }).toMatchObject({ bound: true });
    const running = (t: number) => tries.filter((x) => x.start <= t && t < x.end).length;
    expect(Math.max(...tries.map((x) => running(x.start)))).toBeLessThanOrEqual(CONCURRENCY);

    // wall time within 1.2 × (sum of the pulls ÷ concurrency) plus the longest single source: its
    // time-outs, or a slow link that happens to start last (no schedule can end before it does)
    const sum = outcome.sources.reduce((n, s) => n + s.durationMs, 0) / 1000;
    const longest = Math.max(spanOf("srv098"), spanOf("srv099"), ...outcome.sources.map((s) => s.durationMs / 1000));
    const wall = (runEnd - runStart) / 1000;
    const bound = 1.2 * (sum / CONCURRENCY) + longest;
    expect({ wall, bound, within: wall <= bound }).toMatchObject({ within: true });

    const slow = (n: string) => `${n} ${byName.get(n)!.durationMs} ms`;
    console.log([
      `scale: 100 servers (${servers.filter((s) => !s.link && s.kind !== "silent").length} through the suite's sshd on 127.0.0.1, ${servers.filter((s) => s.link).map((s) => `${s.name}: ${s.link!.describe}`).join("; ")}; srv099 accepts and never answers; srv094 stale)`,
      `scale: shoot client exit ${code} in ${seconds.toFixed(1)} s; run ${wall.toFixed(1)} s, bound ${bound.toFixed(1)} s (sum of pulls ${sum.toFixed(1)} s ÷ ${CONCURRENCY} × 1.2 + longest source ${longest.toFixed(1)} s); idle slot time ${idle.toFixed(2)} s over ${tries.length} tries`,
      `scale: peaks over ${peak.samples} samples: memory ${(peak.hwmKiB / 1024).toFixed(0)} MiB (VmHWM), ${peak.fds} descriptors, ${peak.ssh} ssh and ${peak.rsync} rsync processes at concurrency ${CONCURRENCY}`,
      `scale: the bad links: ${["srv095", "srv096", "srv097"].map(slow).join(", ")}; dead ${spanOf("srv098").toFixed(1)} s, silent ${spanOf("srv099").toFixed(1)} s (${TRIES} tries, connect_timeout ${CONNECT_TIMEOUT_S} s)`,
    ].join("\n"));

    // bounded: memory, descriptors, ssh processes; nothing left in the temporary directory
    expect(peak.hwmKiB).toBeLessThanOrEqual(150 * 1024);
    expect(peak.fds).toBeLessThanOrEqual(32 + 6 * CONCURRENCY);
    expect(peak.ssh).toBeLessThanOrEqual(3 * CONCURRENCY);
    // a slot runs the archive's rsync and, beside it, the file list's; each forks its receiver
    expect(peak.rsync).toBeLessThanOrEqual(4 * CONCURRENCY);
    expect(fs.readdirSync(tmp)).toEqual([]);
    expect(processesWith(tmp).ssh).toBe(0);
    for (const s of servers.filter((x) => want(x) === 30)) expect({ s: s.name, left: fs.readdirSync(path.join(dest, s.name)).filter((n) => n.startsWith(".shoot-tmp")) }).toEqual({ s: s.name, left: [] });

    // one report for the run, failures first, and the one-line summary
    expect(relay.received).toHaveLength(1);
    const mail = relay.received[0]!;
    expect(mail.subject).toMatch(/^\[shoot\] \S+ client FAILED 44 STATUS_STALE \(srv094, srv098, srv099\)/);
    const lines = mail.text.split("\n");
    const head = lines.findIndex((l) => l.startsWith("100 sources: 97 OK, 2 failed, 1 stale, failures first:"));
    expect(head).toBeGreaterThan(0);
    expect(lines.slice(head + 1).filter((l) => /^ {2}srv\d{3} /.test(l)).slice(0, 3).map((l) => l.trim().split(/\s+/).slice(0, 3).join(" "))).toEqual([
      "srv094 FAILED 44", "srv098 FAILED 40", "srv099 FAILED 40",
    ]);
    expect(lines.filter((l) => /^ {2}srv\d{3} +OK /.test(l))).toHaveLength(97);

    // metrics: a few series per source, labelled by name
    const prom = fs.readFileSync(path.join(root, "shoot.prom"), "utf8");
    expect(prom.split("\n").filter((l) => l.startsWith("shoot_source_healthy{"))).toHaveLength(100);

  }, 240_000);

  test("shoot status: one line per source, --json; --source NAME (repeatable) pulls only those; the order follows the last run's durations", async () => {
    const status = await runShoot(["status", "--config", config]);
    expect(status.code).toBe(44);
    const table = status.stdout.split("\n").filter((l) => /^ {2}srv\d{3} /.test(l));
    expect(table).toHaveLength(100);
    expect(status.stdout).toContain("  sources:     100 sources: 97 OK, 2 failed, 1 stale");
    const json = JSON.parse((await runShoot(["status", "--config", config, "--json"])).stdout) as { roles: Array<{ sources: Array<{ name: string; tries?: number }> }> };
    expect(json.roles[0]!.sources).toHaveLength(100);

    // the last run's durations decide the order: longest first (all three fit in the slots at once)
    const last = lastPullDurations(statusRecords(path.join(dest, "client.status")) as never);
    const picked = ["srv005", "srv007", "srv013"];
    const r = await runShoot(["client", "--config", config, "--json", "--source", "srv005", "--source=srv007", "srv013"], { env: { TMPDIR: tmp } });
    const o = JSON.parse(r.stdout) as { sources: Array<{ name: string; code: number }> };
    expect(o.sources.map((s) => [s.name, s.code])).toEqual([["srv005", 9], ["srv007", 9], ["srv013", 9]]);
    expect(r.code).toBe(0);
    const started = statusRecords(path.join(dest, "client.status")).filter((x) => x.name === "STEP").map((x) => x.data.source as string);
    expect(started).toEqual([...picked].sort((a, b) => last.get(b)! - last.get(a)!));
    const unknown = await runShoot(["client", "--config", config, "--source", "nope"]);
    expect(unknown.code).toBe(53);
    expect(fs.readdirSync(tmp)).toEqual([]);
  }, 60_000);
});
