/**
 * `shoot client` against a real sshd on 127.0.0.1 and real rsync: `shoot wrapper` makes the
 * server's backups where a real run can, hand-made backup directories stand in for servers in
 * states a run does not produce on demand (two days old, failed, lying).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { listTree, md5sumCheck, runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { processesMentioning } from "../helpers/faults.ts";
import { serverFixture, statusRecords, tempDir, writeTree, type ServerFixture } from "../helpers/fixture.ts";
import { randomBytes, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { freePort, startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { archiveName } from "../../src/core/state/naming.ts";
import { deltaBlockSize, TRANSFER_MALLOC_TUNABLES } from "../../src/core/transfer/rsync.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";

const T = 120_000;
let sshd: SshServer;
const cleanups: Array<() => void> = [];

beforeAll(async () => {
  requireTool("rsync");
  sshd = await startSshd();
}, 30_000);
afterAll(async () => {
  await sshd?.stop();
}, 30_000);
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function root(): string {
  const r = tempDir("shoot-client-");
  cleanups.push(() => fs.rmSync(r, { recursive: true, force: true }));
  return r;
}

function fixture(): ServerFixture {
  const fx = serverFixture();
  cleanups.push(() => fx.cleanup());
  return fx;
}

async function wrapper(fx: ServerFixture): Promise<Record<string, any>> {
  const r = await runShoot(["wrapper", "--config", fx.config]);
  expect(r.code).toBe(0);
  return statusRecords(path.join(fx.backup, "server.status")).filter((x) => x.archive).at(-1)!;
}

/** A crafted backup directory for source `name` under `base`, with an archive of `size` random bytes. */
async function craftedServer(base: string, name: string, size = 20_000, ageMs = 0) {
  const dir = path.join(base, name, "backup");
  const file = archiveName(name, new Date(Date.now() - ageMs), "gzip");
  const archive = await writeArchive(dir, file, randomBytes(size));
  return { dir, archive };
}

describe("shoot client over ssh", () => {
  test("one ssh login serves both transfers: the archive goes through the connection started beside the status pull, closed after; with no room for its socket, each transfer logs in on its own", async () => {
    const fx = fixture();
    await wrapper(fx);
    const runWith = async (tmp: string, dest: string) => {
      fs.mkdirSync(tmp, { recursive: true });
      const cfg = writeClientConfig(path.join(fx.root, `client-${path.basename(dest)}.toml`), { dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "web1", fx.backup)] });
      const r = await runShoot(["client", "--config", cfg], { env: { TMPDIR: tmp }, timeoutMs: 90_000 });
      expect(r.code).toBe(0);
      expect(r.stderr).not.toMatch(/\[(warn|error)\]/);
      return statusRecords(path.join(dest, "client.status")).find((x) => x.name === "PULLED")!.data;
    };
    const tmp = path.join(fx.root, "tmp");
    expect((await runWith(tmp, path.join(fx.root, "dest1"))).sharedSsh).toBe(true);
    // the socket's directory is gone, and so is the ssh that held it
    expect(fs.readdirSync(tmp)).toEqual([]);
    expect(processesMentioning(tmp)).toEqual([]);

    // a socket path must stay under ~100 bytes: a long TMPDIR means no shared connection, the same pull
    const long = path.join(fx.root, "t".repeat(120));
    const data = await runWith(long, path.join(fx.root, "dest2"));
    expect(data.sharedSsh).toBe(false);
    expect(data.received).toBeGreaterThan(0);
    expect(fs.readdirSync(long)).toEqual([]);
  }, T);

  test("happy path: pulls what `shoot wrapper` made, verified (md5sum -c passes), then 9, then 4 with retention", async () => {
    const fx = fixture();
    const first = await wrapper(fx);
    const dest = path.join(fx.root, "dest");
    const cfg = writeClientConfig(path.join(fx.root, "client.toml"), { dest, keep: 2, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "web1", fx.backup)] });

    const r1 = await runClient(cfg, dest);
    expect({ exit: r1.code, codes: r1.codes }).toEqual({ exit: 0, codes: { web1: 30 } });
    expect(md5sumCheck(path.join(dest, "web1"))).toEqual([first.archive.file]);
    // the copy is exactly the server's archive
    expect(Bun.hash(fs.readFileSync(path.join(dest, "web1", first.archive.file)))).toBe(Bun.hash(fs.readFileSync(path.join(fx.backup, first.archive.file))));
    expect(r1.records[0]!.name).toBe("RUN_START");
    expect(r1.records.map((x) => x.name)).toContain("PULLED");
    expect(r1.records.find((x) => x.name === "SOURCE_DONE")!.data).toMatchObject({ source: "web1", code: 30, name: "FIRST_ARCHIVE", tries: 1 });
    expect(r1.records.at(-1)!.code).toBe(30);
    // nothing but the copy, its checksum and shoot's own files
    expect(listTree(dest)).toEqual(["client.status", "web1/.shoot-copies", `web1/${first.archive.file}`, `web1/${first.archive.file}.list`, `web1/${first.archive.file}.md5`]);

    // the server says 9 and the client holds that archive: nothing pulled, still a success
    expect((await wrapper(fx)).code).toBe(9);
    const r2 = await runClient(cfg, dest);
    expect({ exit: r2.code, codes: r2.codes }).toEqual({ exit: 0, codes: { web1: 9 } });
    expect(r2.records.map((x) => x.name)).not.toContain("PULLED");
    expect(fs.existsSync(path.join(dest, "client.status.1"))).toBe(true);

    // two new archives: keep = 2 leaves the two newest
    const names = [first.archive.file];
    for (const text of ["change one\n", "change two\n"]) {
      fs.writeFileSync(path.join(fx.src, "etc/hosts"), text);
      const rec = await wrapper(fx);
      expect(rec.code).toBe(4);
      names.push(rec.archive.file);
      const r = await runClient(cfg, dest);
      expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { web1: 4 } });
    }
    expect(md5sumCheck(path.join(dest, "web1"))).toEqual(names.slice(1));
  }, T);

  test("the newest copy held is rsync's basis: a slightly changed archive mostly matches, the old copy stays untouched", async () => {
    const base = root();
    const dest = path.join(base, "dest");
    const backup = path.join(base, "server");
    const bytes = randomBytes(2 * 1024 * 1024);
    const day1 = await writeArchive(backup, archiveName("web1", new Date(Date.now() - 86_400_000), "gzip"), bytes);
    writeServerStatus(backup, day1, { final: "FIRST_ARCHIVE" });
    const cfg = writeClientConfig(path.join(base, "client.toml"), { dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "web1", backup)] });
    expect((await runClient(cfg, dest)).codes).toEqual({ web1: 30 });
    const held = path.join(dest, "web1", day1.file);
    const before = fs.statSync(held);

    const changed = Uint8Array.from(bytes);
    changed.set(randomBytes(100), 1024 * 1024);
    const day2 = await writeArchive(backup, archiveName("web1", new Date(), "gzip"), changed);
    writeServerStatus(backup, day2, { final: "NEW_ARCHIVE" });
    const r = await runClient(cfg, dest);
    expect(r.codes).toEqual({ web1: 4 });
    const data = r.records.find((x) => x.name === "PULLED")!.data as { matched: number; literal: number; received: number; sent: number };
    expect(data.matched).toBeGreaterThan(2 * 1024 * 1024 - 64 * 1024);
    expect(data.received).toBeLessThan(128 * 1024);
    // what went the other way: the block checksums of the basis, a small share of it
    expect(data.sent).toBeGreaterThan(0);
    expect(data.sent).toBeLessThan(128 * 1024);
    const after = fs.statSync(held);
    expect([after.ino, after.nlink, after.mtimeMs]).toEqual([before.ino, 1, before.mtimeMs]);
    expect(md5sumCheck(path.join(dest, "web1"))).toEqual([day1.file, day2.file]);
  }, T);

  /** A source holding a 12 MiB file of random bytes, made and pulled once; `rewrite` changes 4 KiB pages of it. */
  async function pagesPulled() {
    requireTool("tar");
    const fx = fixture();
    const big = path.join(fx.src, "var/db/pages.dat");
    fs.mkdirSync(path.dirname(big));
    fs.writeFileSync(big, randomBytes(12 << 20));
    await wrapper(fx);
    const dest = path.join(fx.root, "dest");
    const cfg = writeClientConfig(path.join(fx.root, "client.toml"), { dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "web1", fx.backup)] });
    const first = await runClient(cfg, dest);
    expect(first.codes).toEqual({ web1: 30 });
    // a first pull has no basis to match: nothing to gain from compressed tokens
    expect(first.records.find((x) => x.name === "PULLED")!.data).toMatchObject({ compress: false });
    const rewrite = (...mibs: number[]) => {
      const fd = fs.openSync(big, "r+");
      for (const mib of mibs) fs.writeSync(fd, randomBytes(4096), 0, 4096, mib << 20);
      fs.closeSync(fd);
    };
    /** The newest copy passes md5sum -c, and GNU tar restores it equal to the tree. */
    const restores = (file: string) => {
      expect(md5sumCheck(path.join(dest, "web1")).at(-1)).toBe(file);
      const out = path.join(fx.root, "restored");
      fs.mkdirSync(out);
      expect(Bun.spawnSync(["tar", "-xpzf", path.join(dest, "web1", file), "-C", out]).exitCode).toBe(0);
      expect(treeDifferences(fx.src, path.join(out, fx.src.slice(1)), { mtimeResolutionNs: 1000 })).toEqual([]);
    };
    return { fx, dest, cfg, rewrite, restores };
  }

  test("a large file rewritten in three pages: the server counts four places from its pieces, and the pull's delta blocks are sized by them", async () => {
    const { fx, dest, cfg, rewrite, restores } = await pagesPulled();
    rewrite(2, 6, 10);
    const made = await wrapper(fx);
    const r = await runClient(cfg, dest);
    expect(r.codes).toEqual({ web1: 4 });
    const size: number = made.archive.size;
    const data = r.records.find((x) => x.name === "PULLED")!.data as Record<string, number | boolean>;
    // the scan saw one changed entry, which would have left the block to rsync
    expect(deltaBlockSize(size, 1)).toBeUndefined();
    expect(data).toMatchObject({ places: 4, exactPlaces: true, blockSize: deltaBlockSize(size, 4, true)!, compress: true });
    // matched blocks went as runs of tokens: less than a byte each beyond the literal bytes, where
    // without --compress each costs 4
    const blocks = size / (data.blockSize as number);
    expect((data.received as number) - (data.literal as number)).toBeLessThan(blocks);
    // four pieces of at most 256 KiB of tar stream each went again, the rest was matched
    expect(data.literal as number).toBeLessThan(4 * 300 * 1024);
    expect(data.matched as number).toBeGreaterThan(size - 4 * 300 * 1024);
    restores(made.archive.file);
  }, T);

  test("days missed: the server counted its places against an archive not held here, so the delta blocks are no larger than rsync's own", async () => {
    const { fx, dest, cfg, rewrite, restores } = await pagesPulled();
    rewrite(2);
    const missed = await wrapper(fx); // made on the server, never pulled here
    rewrite(10);
    const made = await wrapper(fx);
    const written = statusRecords(path.join(fx.backup, "server.status")).findLast((x) => x.name === "ARCHIVE_WRITTEN")!;
    expect(written.data).toMatchObject({ file: made.archive.file, placesAgainst: missed.archive.file });
    const places = written.data.places as number;
    const r = await runClient(cfg, dest);
    expect(r.codes).toEqual({ web1: 4 });
    const data = r.records.find((x) => x.name === "PULLED")!.data as Record<string, number | boolean>;
    expect(data).toMatchObject({ places, exactPlaces: false, compress: true });
    // counted as exact, the few places would have chosen blocks larger than rsync's
    expect(deltaBlockSize(made.archive.size, places, true)).toBeGreaterThan(Math.sqrt(made.archive.size));
    expect(data.blockSize).toBe(deltaBlockSize(made.archive.size, places, false));
    restores(made.archive.file);
  }, T);

  test("refusals: stale, failed, busy, unsafe names, corrupted, lying about its size, reusing a held name — each its own code, nothing bad kept, nothing outside dest_dir", async () => {
    const base = root();
    const dest = path.join(base, "client", "dest");
    const two = 2 * 86_400_000;

    const stale = await craftedServer(base, "stale", 20_000, two);
    writeServerStatus(stale.dir, stale.archive, { final: "NEW_ARCHIVE", ageMs: two });

    const failed = await craftedServer(base, "failed");
    writeServerStatus(failed.dir, undefined, { final: "NO_SPACE", msg: "not enough free space in /var/backups/shoot" });

    const busy = await craftedServer(base, "busy");
    writeServerStatus(busy.dir, undefined, { final: "none" });

    // names that would reach outside dest_dir or be read as an option, with files there to find
    const dotdot = await craftedServer(base, "dotdot");
    writeTree(path.join(base, "dotdot"), { "etc/x": "taken from outside the backup directory" });
    writeServerStatus(dotdot.dir, dotdot.archive, { final: "NEW_ARCHIVE", archive: { file: "../../etc/x" } });
    const option = await craftedServer(base, "option");
    writeTree(option.dir, { "-e sh": "an option in disguise" });
    writeServerStatus(option.dir, option.archive, { final: "NEW_ARCHIVE", archive: { file: "-e sh" } });

    // corrupted on the server after its checksum was written (same size, one byte changed)
    const corrupt = await craftedServer(base, "corrupt", 200_000);
    writeServerStatus(corrupt.dir, corrupt.archive, { final: "NEW_ARCHIVE" });
    const fd = fs.openSync(path.join(corrupt.dir, corrupt.archive.file), "r+");
    fs.writeSync(fd, Buffer.from([0xff ^ fs.readFileSync(path.join(corrupt.dir, corrupt.archive.file))[1000]!]), 0, 1, 1000);
    fs.closeSync(fd);

    // a status that claims a small archive while the file is large: never transferred
    const liar = await craftedServer(base, "liar", 3 * 1024 * 1024);
    writeServerStatus(liar.dir, liar.archive, { final: "NEW_ARCHIVE", archive: { size: 1000 } });

    // a status naming an archive the client already holds, with other contents: the copy held stays
    const reused = await craftedServer(base, "reused");
    writeServerStatus(reused.dir, reused.archive, { final: "NEW_ARCHIVE" });
    const heldCopy = path.join(dest, "reused", reused.archive.file);
    writeTree(path.join(dest, "reused"), { [reused.archive.file]: "the copy held", [`${reused.archive.file}.md5`]: `${"0".repeat(32)}  ${reused.archive.file}\n` });

    const sources = [stale, failed, busy, dotdot, option, corrupt, liar, reused].map((s) => sshSource(sshd, path.basename(path.dirname(s.dir)), s.dir));
    const cfg = writeClientConfig(path.join(base, "client", "client.toml"), { dest, concurrency: 8, known_hosts: sshd.knownHosts, sources });
    const before = listTree(base).filter((p) => !p.startsWith("client/"));
    const r = await runClient(cfg, dest);

    expect(r.codes).toEqual({ stale: 44, failed: 45, busy: 46, dotdot: 47, option: 47, corrupt: 50, liar: 50, reused: 43 });
    expect(r.code).toBe(50); // the most severe: a copy that does not match its checksum
    const msg = (n: string) => r.outcome.sources.find((s) => s.name === n)!.message;
    expect(msg("stale")).toContain("has not run");
    expect(msg("failed")).toContain("23 NO_SPACE: not enough free space in /var/backups/shoot");
    expect(msg("busy")).toContain("middle of a run");
    expect(msg("dotdot")).toContain("../../etc/x");
    expect(msg("option")).toContain("-e sh");
    expect(msg("corrupt")).toMatch(/its SHA-256 is [0-9a-f]{64}, the server recorded /);
    expect(msg("liar")).toContain("larger");
    expect(msg("reused")).toContain("it is kept and nothing was pulled");
    expect(fs.readFileSync(heldCopy, "utf8")).toBe("the copy held");
    // nothing outside dest_dir changed, and dest_dir holds no archive, no copy of the bad one
    expect(listTree(base).filter((p) => !p.startsWith("client/"))).toEqual(before);
    expect(listTree(dest)).toEqual(["client.status", `reused/${reused.archive.file}`, `reused/${reused.archive.file}.md5`]);
    expect(r.records.filter((x) => x.name === "SOURCE_DONE")).toHaveLength(8);
  }, T);

  test("unreachable: a closed port (never tried again) and a silent one (tried again: nothing came) end with UNREACHABLE within their time-outs", async () => {
    const base = root();
    const dest = path.join(base, "dest");
    const closed = await freePort();
    // accepts connections and never answers: only ssh's ConnectTimeout ends the wait
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    cleanups.push(() => silent.close());
    const silentPort = (silent.address() as net.AddressInfo).port;
    const cfg = writeClientConfig(path.join(base, "client.toml"), {
      dest, concurrency: 2, connect_timeout: "3s", known_hosts: sshd.knownHosts, tries: 2, retry_wait: "1s",
      sources: [sshSource(sshd, "closed", "/nowhere", { port: closed }), sshSource(sshd, "silent", "/nowhere", { port: silentPort })],
    });
    const t0 = performance.now();
    const r = await runClient(cfg, dest);
    const secs = (performance.now() - t0) / 1000;
    expect(r.codes).toEqual({ closed: 40, silent: 40 });
    expect(r.code).toBe(40);
    expect(r.outcome.sources[0]!.message).toContain("Connection refused");
    expect(r.outcome.sources[1]!.message).toMatch(/timed out/i);
    expect(r.outcome.sources.map((s) => [s.name, (s as { tries?: number }).tries])).toEqual([["closed", 1], ["silent", 2]]);
    expect(r.records.filter((x) => x.name === "RETRY").map((x) => x.data.source)).toEqual(["silent"]);
    // two 3 s connect time-outs, a pause of at most 1.5 s and start-up: far from rsync's 30 s and the test's limit
    expect(secs).toBeLessThan(25);
  }, T);

  test("host keys: unknown → HOST_KEY_FAILED; accept_new_host_key learns it; a changed key is refused even then", async () => {
    const fx = fixture();
    await wrapper(fx);
    const dest = path.join(fx.root, "dest");
    const kh = path.join(fx.root, "known_hosts");
    fs.writeFileSync(kh, "");
    const spec = { dest, known_hosts: kh, sources: [sshSource(sshd, "web1", fx.backup)] };
    const strict = writeClientConfig(path.join(fx.root, "strict.toml"), spec);
    const lenient = writeClientConfig(path.join(fx.root, "lenient.toml"), { ...spec, accept_new_host_key: true });

    const r1 = await runClient(strict, dest);
    expect({ exit: r1.code, codes: r1.codes }).toEqual({ exit: 41, codes: { web1: 41 } });
    expect(r1.outcome.sources[0]!.message).toContain(`the server's host key is unknown: no ED25519 key for [127.0.0.1]:${sshd.port} is in ${kh}.`);
    expect(r1.outcome.sources[0]!.message).toContain(`\`ssh-keyscan -p ${sshd.port} -t ed25519 127.0.0.1 > server.key\``);

    const r2 = await runClient(lenient, dest);
    expect({ exit: r2.code, codes: r2.codes }).toEqual({ exit: 0, codes: { web1: 30 } });
    expect(fs.readFileSync(kh, "utf8")).toContain(fs.readFileSync(sshd.knownHosts, "utf8").split(" ")[2]!.trim());

    // another server's key for this address: a changed host key
    const other = (await sshd.newKey("not-the-host")).publicLine.split(" ").slice(0, 2).join(" ");
    fs.writeFileSync(kh, `[127.0.0.1]:${sshd.port} ${other}\n`);
    const r3 = await runClient(lenient, dest);
    expect({ exit: r3.code, codes: r3.codes }).toEqual({ exit: 41, codes: { web1: 41 } });
    const changed = r3.outcome.sources[0]!.message;
    expect(changed).toContain(`the server's host key has CHANGED: it is not the key recorded for [127.0.0.1]:${sshd.port} in ${kh}, line 1.`);
    expect(changed).toContain(`\`ssh-keygen -f ${kh} -R '[127.0.0.1]:${sshd.port}'\``);
    md5sumCheck(path.join(dest, "web1"));
  }, T);

  test("before the server's first backup: no status file yet, asks whether the wrapper has run there (over ssh and from a local path)", async () => {
    const fx = fixture(); // configured, but no wrapper has run: backup_dir holds nothing
    const dest = path.join(fx.root, "dest");
    for (const source of [sshSource(sshd, "web1", fx.backup), { name: "web1", remote: fx.backup }]) {
      const cfg = writeClientConfig(path.join(fx.root, "client.toml"), { dest, known_hosts: sshd.knownHosts, sources: [source] });
      const r = await runClient(cfg, dest);
      expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 42, codes: { web1: 42 } });
      expect(r.outcome.sources[0]!.message).toBe(
        `the server has no status file yet (${fx.backup}/server.status does not exist there): has \`shoot wrapper\` run there, and is remote its backup_dir?`,
      );
    }
  }, T);

  test("two sources are pulled at the same time; NAME… pulls only those; an unknown NAME is SOURCE_UNKNOWN", async () => {
    const base = root();
    const dest = path.join(base, "dest");
    // 1.5 MiB at 1 MiB/s each: long enough that the two transfers overlap when run together
    const a = await craftedServer(base, "alpha", 1536 * 1024);
    writeServerStatus(a.dir, a.archive, { final: "FIRST_ARCHIVE" });
    const b = await craftedServer(base, "beta", 1536 * 1024);
    writeServerStatus(b.dir, b.archive, { final: "FIRST_ARCHIVE" });
    const sources = [sshSource(sshd, "alpha", a.dir, { bwlimit: "1MiB" }), sshSource(sshd, "beta", b.dir, { bwlimit: "1MiB" })];
    const cfg = writeClientConfig(path.join(base, "client.toml"), { dest, concurrency: 2, known_hosts: sshd.knownHosts, sources });

    const only = await runClient(cfg, dest, ["beta"]);
    expect({ exit: only.code, codes: only.codes }).toEqual({ exit: 0, codes: { beta: 30 } });
    expect(fs.existsSync(path.join(dest, "alpha"))).toBe(false);
    fs.rmSync(dest, { recursive: true });

    const r = await runClient(cfg, dest);
    expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { alpha: 30, beta: 30 } });
    const pullStarts = r.records.map((x, i) => [x, i] as const).filter(([x]) => x.name === "STEP" && /pulling (alpha|beta)-/.test(x.msg)).map(([, i]) => i);
    const firstPulled = r.records.findIndex((x) => x.name === "PULLED");
    expect(pullStarts).toHaveLength(2);
    // both archive transfers began before either ended
    expect(Math.max(...pullStarts)).toBeLessThan(firstPulled);
    md5sumCheck(path.join(dest, "alpha"));
    md5sumCheck(path.join(dest, "beta"));

    const unknown = await runShoot(["client", "--config", cfg, "gamma"]);
    expect(unknown.code).toBe(53);
    expect(unknown.stderr).toContain('unknown source "gamma" (configured: alpha, beta)');
  }, T);
});

test("every ssh of a pull runs with the allocator settings that keep it from faulting its buffers in again and again; an administrator's own are kept", async () => {
  const fx = fixture();
  await wrapper(fx);
  const bin = path.join(fx.root, "bin");
  const seen = path.join(fx.root, "ssh-env");
  fs.mkdirSync(bin);
  // an ssh first on PATH that notes its tunables, then is the real one
  fs.writeFileSync(path.join(bin, "ssh"), `#!/bin/sh\nprintf '%s\\n' "\${GLIBC_TUNABLES-unset}" >> '${seen}'\nexec '${requireTool("ssh")}' "$@"\n`, { mode: 0o755 });
  const env = { PATH: `${bin}:${process.env.PATH}` };
  for (const [name, tunables, want] of [["plain", undefined, TRANSFER_MALLOC_TUNABLES], ["own", "glibc.malloc.arena_max=1", "glibc.malloc.arena_max=1"]] as const) {
    fs.rmSync(seen, { force: true });
    const dest = path.join(fx.root, `dest-${name}`);
    const cfg = writeClientConfig(path.join(fx.root, `client-${name}.toml`), { dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "web1", fx.backup)] });
    const r = await runShoot(["client", "--config", cfg], { env: tunables === undefined ? env : { ...env, GLIBC_TUNABLES: tunables } });
    expect(r.code).toBe(0);
    const lines = fs.readFileSync(seen, "utf8").trim().split("\n");
    // the shared connection, the status pull, the archive pull through it, and closing it
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(new Set(lines)).toEqual(new Set([want]));
  }
}, T);

test("a local-path remote is pulled with rsync alone (no ssh on PATH)", async () => {
  const fx = fixture();
  const rec = await wrapper(fx);
  const dest = path.join(fx.root, "dest");
  const bin = path.join(fx.root, "bin");
  fs.mkdirSync(bin);
  fs.symlinkSync(requireTool("rsync"), path.join(bin, "rsync"));
  const cfg = writeClientConfig(path.join(fx.root, "client.toml"), { dest, sources: [{ name: "self", remote: fx.backup }] });
  const r = await runShoot(["client", "--config", cfg, "--json"], { env: { PATH: bin } });
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).sources[0].code).toBe(30);
  expect(md5sumCheck(path.join(dest, "self"))).toEqual([rec.archive.file]);
}, T);

test("rsync or ssh missing: TOOL_MISSING (14) naming the package to install", async () => {
  const base = root();
  const dest = path.join(base, "dest");
  const onlyRsync = path.join(base, "only-rsync");
  const nothing = path.join(base, "nothing");
  fs.mkdirSync(onlyRsync);
  fs.mkdirSync(nothing);
  fs.symlinkSync(requireTool("rsync"), path.join(onlyRsync, "rsync"));
  const cfg = writeClientConfig(path.join(base, "client.toml"), { dest, sources: [{ name: "far", remote: "backup@192.0.2.1:/var/backups/shoot" }] });
  const noSsh = await runShoot(["client", "--config", cfg], { env: { PATH: onlyRsync } });
  expect(noSsh.code).toBe(14);
  expect(noSsh.stdout).toContain("far  FAILED 14 TOOL_MISSING\n       ssh is not installed");
  expect(noSsh.stdout).toContain("apt-get install openssh-client");
  const noRsync = await runShoot(["client", "--config", cfg], { env: { PATH: nothing } });
  expect(noRsync.code).toBe(14);
  expect(noRsync.stdout).toContain("rsync is not installed");
}, T);
