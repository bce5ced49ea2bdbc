/**
 * A client run of many sources when the host or the run itself sets limits: an sshd whose
 * MaxStartups refuses connections beyond its limit during the key exchange (as sshd does by
 * default beyond 10 at once, and bastions, NATs and fail2ban do), a whole-run deadline
 * (max_runtime) reached while sources are still being pulled or waiting for a slot, and a
 * client stopped with SIGTERM or killed with SIGKILL in the middle: what finished is kept, and
 * no socket directory or temporary is left behind.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { startShoot } from "../helpers/cli.ts";
import { md5sumCheck, runClient, sshSource, writeClientConfig, type ClientSpec } from "../helpers/client.ts";
import { boundedExit, faultFile, injected, processesMentioning, waitFor } from "../helpers/faults.ts";
import { statusRecords, tempDir } from "../helpers/fixture.ts";
import { payloadTree, randomBytes, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";
import { archiveName, isArchiveName } from "../../src/core/state/naming.ts";
import { spawner } from "../../src/io/process.ts";

faultFile(import.meta.path);

let root: string;
let sshd: SshServer;
const stops: Array<() => Promise<void>> = [];

beforeAll(async () => {
  root = tempDir("shoot-slots-");
  sshd = await startSshd();
  stops.push(() => sshd.stop());
});

afterAll(async () => {
  for (const s of stops.reverse()) await s().catch(() => undefined);
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

interface Served {
  name: string;
  backup: string;
  tree: string;
  file: string;
  size: number;
}

/** `sizes.length` servers, each a backup directory with a real archive of the given size and a fresh status. */
async function servers(group: string, sizes: readonly number[]): Promise<Served[]> {
  const out: Served[] = [];
  for (const [i, size] of sizes.entries()) {
    const name = `${group}${String(i).padStart(2, "0")}`;
    const backup = path.join(root, group, "servers", name);
    const tree = path.join(root, group, "trees", name);
    const bytes = randomBytes(size);
    const info = await writeArchive(backup, archiveName(name, new Date(Date.UTC(2026, 0, 1, 3)), "gzip"), bytes);
    payloadTree(tree, bytes);
    writeServerStatus(backup, info, { final: "FIRST_ARCHIVE", ageMs: 60_000 });
    out.push({ name, backup, tree, file: info.file, size: info.size });
  }
  return out;
}

/** The copy of `s` held in `dest` verifies (md5sum -c) and GNU tar extracts its tree. */
async function checkCopy(dest: string, s: Served): Promise<void> {
  expect({ s: s.name, copies: md5sumCheck(path.join(dest, s.name)) }).toEqual({ s: s.name, copies: [s.file] });
  const to = path.join(root, "extracted", s.name);
  fs.rmSync(to, { recursive: true, force: true });
  fs.mkdirSync(to, { recursive: true });
  const r = await spawner.run([requireTool("tar"), "-x", "-p", "--numeric-owner", "-f", path.join(dest, s.name, s.file), "-C", to], { timeoutMs: 30_000 });
  expect({ s: s.name, tar: r.exitCode, diffs: treeDifferences(s.tree, to, { owners: process.getuid?.() === 0 }) }).toEqual({ s: s.name, tar: 0, diffs: [] });
  fs.rmSync(to, { recursive: true, force: true });
}

function config(group: string, host: SshServer, list: readonly Served[], extra: Partial<ClientSpec>): { file: string; dest: string } {
  const dest = path.join(root, group, "dest");
  const file = writeClientConfig(path.join(root, group, "client.toml"), {
    dest, known_hosts: host.knownHosts, sources: list.map((s) => sshSource(host, s.name, s.backup)), ...extra,
  });
  return { file, dest };
}

describe("sshd's MaxStartups", () => {
  test("connections closed during the key exchange: THROTTLED with one try; tried again with pauses, every source pulled, the tries reported", async () => {
    // beyond 4 connections in their key exchange, sshd drops every new one (eight sources
    // starting together open 16: a status pull and a shared connection each)
    const throttled = await startSshd({ maxStartups: "4:100:4" });
    stops.push(() => throttled.stop());
    const list = await servers("kex", Array(10).fill(96 * 1024));
    const once = config("kex", throttled, list, { concurrency: 8, tries: 1, connect_timeout: "10s" });
    const first = await runClient(once.file, once.dest, [], 120_000);
    injected("connections beyond sshd's MaxStartups", 10);
    const refused = first.outcome.sources.filter((s) => s.code === 120);
    expect(refused.length).toBeGreaterThan(0);
    expect(first.outcome.sources.every((s) => s.code === 120 || s.code === 30)).toBe(true);
    // sshd closes the connection, or resets it when the client's first bytes were already there
    for (const s of refused) expect(s.message).toMatch(/kex_exchange_identification: (Connection closed by remote host|read: Connection reset by peer)/);
    expect(first.code).toBe(120);
    expect(throttled.log.some((l) => /beyond MaxStartups|exceeded MaxStartups|drop connection/i.test(l))).toBe(true);

    const again = config("kex", throttled, list, { concurrency: 8, tries: 10, retry_wait: "400ms", connect_timeout: "10s" });
    const r = await runClient(again.file, again.dest, [], 180_000);
    expect({ code: r.code, codes: Object.values(r.codes).filter((c) => c !== 30 && c !== 9) }).toEqual({ code: 0, codes: [] });
    for (const s of list) await checkCopy(again.dest, s);
    const retries = r.records.filter((x) => x.name === "RETRY");
    const tries = r.outcome.sources.map((s) => (s as { tries?: number }).tries ?? 0);
    console.log(`MaxStartups 4:100:4, 10 sources at concurrency 8: with tries = 1, ${refused.length} ended THROTTLED; with tries = 10: all pulled, tries ${JSON.stringify(tries)}, ${retries.length} RETRY records`);
    // the sources the first run refused were pulled by this one, some after more than one try
    expect(Math.max(...tries)).toBeGreaterThan(1);
    expect(retries.length).toBeGreaterThan(0);
    expect(retries[0]!.msg).toContain("the connection was closed during the key exchange");
    expect(r.outcome.sources.filter((s) => ((s as { tries?: number }).tries ?? 0) > 1).every((s) => s.message.endsWith("tries)"))).toBe(true);
  }, 240_000);
});

describe("max_runtime", () => {
  test("the deadline stops the source still being pulled (its data kept to resume), starts no other, keeps what finished", async () => {
    // one slow source (4 MiB at 256 KiB/s) and many quick ones, two slots, a 6 s deadline: the
    // quick ones share the one slot the slow one leaves, and there are more of them than it can
    // pull in 6 s (a quick pull takes about half a second here: twelve were sometimes all done)
    const list = await servers("deadline", [4 * 1024 * 1024, ...Array(24).fill(64 * 1024)]);
    const c = config("deadline", sshd, list, { concurrency: 2, max_runtime: "6s" });
    const text = fs.readFileSync(c.file, "utf8").replace(/(name = "deadline00"\nremote = .*\nport = .*\nidentity = .*)/, '$1\nbwlimit = "256KiB"');
    fs.writeFileSync(c.file, text);
    const t0 = performance.now();
    const r = await runClient(c.file, c.dest, [], 60_000);
    const secs = (performance.now() - t0) / 1000;
    injected("max_runtime reached");
    const slow = r.outcome.sources.find((s) => s.name === "deadline00")!;
    expect({ code: slow.code, message: slow.message }).toMatchObject({ code: 58, message: expect.stringContaining("the run reached max_runtime (6.0s) while this source was being pulled: the transfer was stopped; what arrived is kept") });
    const done = r.outcome.sources.filter((s) => s.code === 30);
    const notStarted = r.outcome.sources.filter((s) => s.code === 58 && s.message.startsWith("not started"));
    expect(done.length).toBeGreaterThan(0);
    expect(notStarted.length).toBeGreaterThan(0);
    // a quick one may have been running when the deadline came: it was stopped too
    expect(r.outcome.sources.slice(1).every((s) => s.code === 30 || s.code === 58)).toBe(true);
    expect(r.code).toBe(58);
    expect(secs).toBeLessThan(6 + 15);
    for (const s of list.filter((x) => done.some((d) => d.name === x.name))) await checkCopy(c.dest, s);
    // the slow one's data stays for the next run, never as a copy
    const partial = path.join(c.dest, "deadline00", ".shoot-tmp-pull", ".shoot-partial");
    expect(fs.readdirSync(partial).filter((n) => isArchiveName(n))).toEqual([list[0]!.file]);
    expect(fs.readdirSync(path.join(c.dest, "deadline00")).filter((n) => isArchiveName(n))).toEqual([]);
    console.log(`max_runtime 6s: ${done.length} pulled, deadline00 stopped with ${fs.statSync(path.join(partial, list[0]!.file)).size} bytes kept, ${notStarted.length} not started; the run took ${secs.toFixed(1)} s`);

    // without the deadline the next run ends what was left, the stopped transfer resumed
    fs.writeFileSync(c.file, text.replace('max_runtime = "6s"', 'max_runtime = "1h"').replace('bwlimit = "256KiB"', ""));
    const next = await runClient(c.file, c.dest, [], 120_000);
    expect({ code: next.code, bad: next.outcome.sources.filter((s) => s.code !== 30 && s.code !== 9).map((s) => s.name) }).toEqual({ code: 0, bad: [] });
    const pulled = next.records.find((x) => x.name === "PULLED" && x.data.source === "deadline00")!;
    expect(pulled.data.matched).toBeGreaterThan(0);
    for (const s of list) await checkCopy(c.dest, s);
  }, 180_000);
});

describe("a client stopped in the middle", () => {
  /** Start the client on slow sources; resolves once `n` transfers of its are running. */
  async function startedPulling(c: { file: string }, tmp: string, n: number) {
    const proc = startShoot(["client", "--config", c.file, "--json"], { env: { TMPDIR: tmp } });
    const seen = await waitFor(() => (processesMentioning(tmp).length >= n ? true : undefined), 30_000, 50);
    expect({ pulling: seen }).toEqual({ pulling: true });
    return proc;
  }

  test("SIGTERM: INTERRUPTED, what finished kept, every shared connection closed and its socket directory removed", async () => {
    const list = await servers("term", Array(8).fill(1024 * 1024));
    const tmp = path.join(root, "term", "tmp");
    fs.mkdirSync(tmp, { recursive: true });
    const c = config("term", sshd, list, { concurrency: 4 });
    fs.writeFileSync(c.file, fs.readFileSync(c.file, "utf8").replace(/^identity = (.*)$/gm, 'identity = $1\nbwlimit = "256KiB"'));
    const proc = await startedPulling(c, tmp, 4);
    proc.kill("SIGTERM");
    injected("SIGTERM of a client with many sources");
    expect(await boundedExit(proc, "SIGTERM", 60_000)).toBe(34);
    expect(fs.readdirSync(tmp)).toEqual([]);
    expect(processesMentioning(tmp)).toEqual([]);
  }, 90_000);

  test("SIGKILL: once its orphaned transfers are gone, the next run removes the socket directories the killed one left", async () => {
    const list = await servers("kill", Array(6).fill(1024 * 1024));
    const tmp = path.join(root, "kill", "tmp");
    fs.mkdirSync(tmp, { recursive: true });
    const c = config("kill", sshd, list, { concurrency: 3 });
    const slowText = fs.readFileSync(c.file, "utf8").replace(/^identity = (.*)$/gm, 'identity = $1\nbwlimit = "256KiB"');
    fs.writeFileSync(c.file, slowText);
    const proc = await startedPulling(c, tmp, 3);
    proc.kill("SIGKILL");
    await proc.exited;
    injected("SIGKILL of a client with many sources");
    const left = fs.readdirSync(tmp);
    expect(left.length).toBeGreaterThan(0);
    // its rsync and ssh processes live on without it: they end (here by SIGTERM, as a shutdown would)
    for (const p of processesMentioning(tmp)) process.kill(p, "SIGTERM");
    expect(await waitFor(() => (processesMentioning(tmp).length === 0 ? true : undefined), 30_000, 100)).toBe(true);
    fs.writeFileSync(c.file, slowText.replace(/\nbwlimit = "256KiB"/g, ""));
    const r = await runClient(c.file, c.dest, [], 120_000, { TMPDIR: tmp });
    expect(r.code).toBe(0);
    for (const s of list) await checkCopy(c.dest, s);
    expect(fs.readdirSync(tmp)).toEqual([]);
    console.log(`SIGKILL: the killed client left ${left.length} socket director${left.length === 1 ? "y" : "ies"}; the next run removed them`);
  }, 120_000);
});

describe("a shared connection that goes silent after the login", () => {
  test("the transfers through it are given up within timeout (rsync's own --timeout does not end the wait there)", async () => {
    const [s] = await servers("silent", [512 * 1024]);
    const tmp = path.join(root, "silent", "tmp");
    fs.mkdirSync(tmp, { recursive: true });
    // a proxy to the sshd that stops forwarding the server's bytes once told to
    let quiet = false;
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((c) => {
      const up = net.connect(sshd.port, "127.0.0.1");
      for (const x of [c, up]) {
        sockets.add(x);
        x.on("error", () => {});
      }
      c.on("data", (d) => up.write(d));
      up.on("data", (d) => quiet || c.write(d));
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    stops.push(async () => {
      for (const x of sockets) x.destroy();
      proxy.close();
    });
    const port = (proxy.address() as net.AddressInfo).port;
    const knownHosts = path.join(root, "silent", "known_hosts");
    fs.writeFileSync(knownHosts, fs.readFileSync(sshd.knownHosts, "utf8").replace(`]:${sshd.port} `, `]:${port} `));
    const dest = path.join(root, "silent", "dest");
    const file = writeClientConfig(path.join(root, "silent", "client.toml"), {
      dest, known_hosts: knownHosts, timeout: "2s", connect_timeout: "3s", tries: 1,
      sources: [sshSource(sshd, s!.name, s!.backup, { port })],
    });
    const t0 = performance.now();
    const proc = startShoot(["client", "--config", file, "--json"], { env: { TMPDIR: tmp } });
    // the shared connection is up once its socket is there: from then on the server says nothing
    const up = await waitFor(() => (fs.readdirSync(tmp).some((d) => fs.existsSync(path.join(tmp, d, "s"))) ? true : undefined), 30_000, 2);
    quiet = true;
    injected("a shared connection silent after the login");
    const out = JSON.parse(await new Response(proc.stdout).text()) as { sources: Array<{ code: number; message: string }> };
    const code = await boundedExit(proc, "silent after the login", 60_000);
    const secs = (performance.now() - t0) / 1000;
    // ended by the watch on the pull, or by rsync's own --timeout when its session had begun
    expect({ up, code, source: out.sources[0] }).toMatchObject({ up: true, code: expect.any(Number), source: { message: expect.stringMatching(/no data arrived for 2\.0s|io timeout after 2 seconds/) } });
    expect([42, 49]).toContain(code);
    // connect, a 2 s watch from the login (plus its slack), close: far below the pull's own time limit (35 s)
    expect(secs).toBeLessThan(20);
    expect(fs.readdirSync(tmp)).toEqual([]);
  }, 90_000);
});
