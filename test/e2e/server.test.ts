import { afterEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadConfig, requireServer } from "../../src/core/common/config.ts";
import { realDeps, silentLog } from "../../src/core/common/deps.ts";
import { runServer } from "../../src/core/server/server.ts";
import { runShoot } from "../helpers/cli.ts";
import { archivesIn, serverFixture, statusRecords, tempDir, type ServerFixture } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";
import { mountTmpfs, type Mount } from "../helpers/tmpfs.ts";

const T = 60_000;
let fx: ServerFixture;
afterEach(() => fx?.cleanup());

async function server(): Promise<{ code: number; final: Record<string, any>; out: string }> {
  const r = await runShoot(["server", "--config", fx.config]);
  const recs = statusRecords(path.join(fx.backup, "server.status"));
  return { code: r.code, final: recs.at(-1)!, out: r.stdout + r.stderr };
}

function md5sumCheck(dir: string): void {
  requireTool("md5sum");
  for (const a of archivesIn(dir)) {
    const r = Bun.spawnSync(["md5sum", "-c", `${a}.md5`], { cwd: dir });
    expect({ archive: a, code: r.exitCode, out: r.stdout.toString() }).toEqual({ archive: a, code: 0, out: `${a}: OK\n` });
  }
}

describe("shoot server", () => {
  test("first run makes the first archive (30), an unchanged second run makes none (9)", async () => {
    fx = serverFixture();
    // enough directories for the unchanged check to hand subtrees to worker threads
    for (let d = 0; d < 40; d++) fs.mkdirSync(path.join(fx.src, `data/d${d}/sub`), { recursive: true });
    const first = await server();
    expect(first.code).toBe(0);
    expect(first.final.code).toBe(30);
    expect(first.final.name).toBe("FIRST_ARCHIVE");
    expect(first.final.archive.file).toMatch(/^test-\d{8}-\d{6}\.tar\.gz$/);
    const recs = statusRecords(path.join(fx.backup, "server.status"));
    expect(recs[0]!.code).toBe(60);
    expect(recs[0]!.format).toBe("shoot-status");
    expect(recs[0]!.v).toBe(1);
    md5sumCheck(fx.backup);
    expect(archivesIn(fx.backup)).toHaveLength(1);

    const second = await server();
    expect(second.code).toBe(0);
    expect(second.final.code).toBe(9);
    expect(second.final.archive.file).toBe(first.final.archive.file);
    expect(archivesIn(fx.backup)).toHaveLength(1);
    // decided by the walk on every core (in a compiled binary too: the worker is an entry point
    // of its own), every thread looking entries up with statx (bun:ffi works there too)
    const scanned = statusRecords(path.join(fx.backup, "server.status")).find((r) => r.name === "SCANNED")!;
    expect(scanned.msg).toMatch(new RegExp(`^scanned \\d+ entries in \\d+ ms \\(${Math.min(4, os.availableParallelism())} threads?, statx\\): nothing changed`));
    // the previous run's status is kept
    expect(statusRecords(path.join(fx.backup, "server.status.1")).at(-1)!.code).toBe(30);
  }, T);

  // what changed, and how the SCANNED record counts it (a directory whose contents changed counts too)
  const changes: Array<[string, (src: string) => void, string]> = [
    ["edit", (s) => fs.appendFileSync(path.join(s, "etc/hosts"), "10.0.0.1 db\n"), "0 new, 1 changed, 0 deleted (changed /SRC/etc/hosts)"],
    ["add", (s) => fs.writeFileSync(path.join(s, "home/ann/new.txt"), "new"), "1 new, 1 changed, 0 deleted (changed /SRC/home/ann, new /SRC/home/ann/new.txt)"],
    ["delete", (s) => fs.rmSync(path.join(s, "var/www/index.html")), "0 new, 1 changed, 1 deleted (changed /SRC/var/www, deleted /SRC/var/www/index.html)"],
    ["chmod", (s) => fs.chmodSync(path.join(s, "etc/app/app.conf"), 0o600), "0 new, 1 changed, 0 deleted (changed /SRC/etc/app/app.conf)"],
    ["empty dir added", (s) => fs.mkdirSync(path.join(s, "home/ann/empty/deeper")), "1 new, 1 changed, 0 deleted (changed /SRC/home/ann/empty, new /SRC/home/ann/empty/deeper)"],
    ["same size, mtime set back", (s) => {
      const p = path.join(s, "etc/app/app.conf");
      const st = fs.statSync(p);
      fs.writeFileSync(p, "answer = 43\n");
      fs.utimesSync(p, st.atime, st.mtime);
    }, "0 new, 1 changed, 0 deleted (changed /SRC/etc/app/app.conf)"],
  ];
  test("SCANNED says in how many places the archive differs: entries whose ctime alone changed are none", async () => {
    fx = serverFixture();
    expect((await server()).final.code).toBe(30);
    // modes changed and put back: a new ctime, archived alike
    const restamped = ["etc/hosts", "etc/app/app.conf", "var/www/index.html"].map((f) => path.join(fx.src, f));
    for (const f of restamped) {
      const mode = fs.statSync(f).mode & 0o7777;
      fs.chmodSync(f, 0o600);
      fs.chmodSync(f, mode);
    }
    fs.appendFileSync(path.join(fx.src, "home/ann/notes.txt"), "one more line\n");
    expect((await server()).final.code).toBe(4);
    const scanned = statusRecords(path.join(fx.backup, "server.status")).find((x) => x.name === "SCANNED")!;
    expect(scanned.data).toMatchObject({ changed: 4, places: 1 });
  }, T);

  test("ARCHIVE_WRITTEN counts the places from the pieces: a large file rewritten in three pages is four (its header and the pages), where the scan sees one", async () => {
    requireTool("tar");
    fx = serverFixture();
    const big = path.join(fx.src, "var/db/pages.dat");
    fs.mkdirSync(path.dirname(big));
    fs.writeFileSync(big, randomBytes(12 << 20));
    const first = await server();
    expect(first.final.code).toBe(30);
    const day1 = statusRecords(path.join(fx.backup, "server.status")).find((x) => x.name === "ARCHIVE_WRITTEN")!;
    expect(day1.data.places).toBeUndefined(); // nothing to compare with
    const fd = fs.openSync(big, "r+");
    for (const mib of [2, 6, 10]) fs.writeSync(fd, randomBytes(4096), 0, 4096, mib << 20);
    fs.closeSync(fd);
    const second = await server();
    expect(second.final.code).toBe(4);
    const recs = statusRecords(path.join(fx.backup, "server.status"));
    expect(recs.find((x) => x.name === "SCANNED")!.data).toMatchObject({ changed: 1, places: 1 });
    expect(recs.find((x) => x.name === "ARCHIVE_WRITTEN")!.data).toMatchObject({ file: second.final.archive.file, places: 4, placesAgainst: first.final.archive.file });
    const names = fs.readdirSync(fx.backup);
    for (const a of archivesIn(fx.backup)) expect(names).toContain(`${a}.pieces`);
    // the archive the count describes restores
    const out = tempDir();
    expect(Bun.spawnSync(["tar", "-xpzf", path.join(fx.backup, second.final.archive.file), "-C", out]).exitCode).toBe(0);
    expect(treeDifferences(fx.src, path.join(out, fx.src.slice(1)), { mtimeResolutionNs: 1000 })).toEqual([]);
    fs.rmSync(out, { recursive: true, force: true });
  }, T);

  test("a piece index that is damaged costs no archive: the run says so and records no count from the pieces (4)", async () => {
    fx = serverFixture();
    const first = await server();
    expect(first.final.code).toBe(30);
    fs.writeFileSync(path.join(fx.backup, `${first.final.archive.file}.pieces`), "not an index");
    fs.appendFileSync(path.join(fx.src, "etc/hosts"), "10.0.0.2 web\n");
    const second = await server();
    expect(second.final.code).toBe(4);
    const recs = statusRecords(path.join(fx.backup, "server.status"));
    expect(recs.find((x) => x.name === "ARCHIVE_WRITTEN")!.data.places).toBeUndefined();
    expect(recs.map((x) => x.msg)).toContainEqual(`${first.final.archive.file}.pieces is not a piece index; delta blocks will follow the scan's count`);
    expect(fs.existsSync(path.join(fx.backup, `${second.final.archive.file}.pieces`))).toBe(true);
    md5sumCheck(fx.backup);
  }, T);

  for (const [what, change, counted] of changes) {
    test(`${what} → new archive (4), counted; then unchanged (9)`, async () => {
      fx = serverFixture();
      expect((await server()).final.code).toBe(30);
      change(fx.src);
      const r = await server();
      expect(r.final.code).toBe(4);
      expect(r.code).toBe(0);
      const scanned = statusRecords(path.join(fx.backup, "server.status")).find((x) => x.name === "SCANNED")!;
      expect(scanned.msg).toMatch(/^scanned \d+ entries in \d+ ms: /);
      expect(scanned.msg.replace(/^scanned \d+ entries in \d+ ms: /, "")).toBe(counted.replaceAll("/SRC", fx.src));
      expect(archivesIn(fx.backup)).toHaveLength(2);
      md5sumCheck(fx.backup);
      // the list written for the new archive is exactly what the next walk finds
      expect((await server()).final.code).toBe(9);
      expect(fs.readdirSync(fx.backup).filter((n) => n.startsWith(".shoot-tmp-"))).toEqual([]);
    }, T);
  }

  test("a parallel walk that gets too far ahead of its comparison gives way to one thread, comparing as it goes (9)", async () => {
    fx = serverFixture();
    expect((await server()).final.code).toBe(30);
    const cfg = requireServer(loadConfig(fx.config));
    const o = await runServer(cfg, realDeps(silentLog), { parallelHoldBytes: 0 });
    expect(o.code).toBe(9);
    const recs = statusRecords(path.join(fx.backup, "server.status"));
    expect(recs.map((r) => r.msg)).toContain("the walk on every core got more than 0 B of lines ahead of its comparison: walking again on one thread, which compares as it goes");
    expect(recs.find((r) => r.name === "SCANNED")!.msg).toMatch(/^scanned \d+ entries in \d+ ms: nothing changed since test-/);
    expect(fs.readdirSync(fx.backup).filter((n) => n.startsWith(".shoot-tmp-"))).toEqual([]);
    // and a change is still seen on that path
    fs.appendFileSync(path.join(fx.src, "etc/hosts"), "more\n");
    expect((await runServer(cfg, realDeps(silentLog), { parallelHoldBytes: 0 })).code).toBe(4);
  }, T);

  test("round trip through GNU tar restores contents and metadata", async () => {
    requireTool("tar");
    fx = serverFixture();
    fs.chmodSync(path.join(fx.src, "etc/hosts"), 0o640);
    fs.symlinkSync("../etc/hosts", path.join(fx.src, "home/ann/hosts-link"));
    fs.utimesSync(path.join(fx.src, "home/ann/notes.txt"), new Date("2020-01-02T03:04:05Z"), new Date("2020-01-02T03:04:05Z"));
    const r = await server();
    expect(r.final.code).toBe(30);
    const out = tempDir();
    const x = Bun.spawnSync(["tar", "-xpzf", path.join(fx.backup, r.final.archive.file), "-C", out]);
    expect(x.exitCode).toBe(0);
    const restored = path.join(out, fx.src.slice(1));
    for (const rel of ["etc/hosts", "etc/app/app.conf", "home/ann/notes.txt", "var/www/index.html"]) {
      const a = fs.statSync(path.join(fx.src, rel));
      const b = fs.statSync(path.join(restored, rel));
      expect(fs.readFileSync(path.join(restored, rel))).toEqual(fs.readFileSync(path.join(fx.src, rel)));
      expect(b.mode).toBe(a.mode);
      expect(Math.floor(b.mtimeMs / 1000)).toBe(Math.floor(a.mtimeMs / 1000));
    }
    expect(fs.readlinkSync(path.join(restored, "home/ann/hosts-link"))).toBe("../etc/hosts");
    expect(fs.statSync(path.join(restored, "home/ann/empty")).isDirectory()).toBe(true);
    fs.rmSync(out, { recursive: true, force: true });
  }, T);

  test("rotation keeps exactly `keep` archives with their checksum files", async () => {
    fx = serverFixture('keep = 2');
    for (let i = 0; i < 4; i++) {
      fs.writeFileSync(path.join(fx.src, "etc/hosts"), `version ${i}\n`);
      expect((await server()).code).toBe(0);
    }
    const names = fs.readdirSync(fx.backup).sort();
    const archives = archivesIn(fx.backup);
    expect(archives).toHaveLength(2);
    expect(names.filter((n) => n.endsWith(".md5"))).toEqual(archives.map((a) => `${a}.md5`));
    expect(names.filter((n) => n.endsWith(".list"))).toEqual(archives.map((a) => `${a}.list`));
    expect(names.filter((n) => n.endsWith(".pieces"))).toEqual(archives.map((a) => `${a}.pieces`));
    expect(names.filter((n) => n.startsWith(".shoot-tmp"))).toEqual([]);
    md5sumCheck(fx.backup);
  }, T);

  test("excluded files are left out", async () => {
    fx = serverFixture('exclude = ["*.tmp", "/**/home/*/cache"]', {
      "keep.txt": "k", "drop.tmp": "d", "home/ann/cache/big": "x", "home/ann/cache2/kept": "y",
    });
    const r = await server();
    const list = Bun.spawnSync(["tar", "-tzf", path.join(fx.backup, r.final.archive.file)]).stdout.toString();
    expect(list).toContain("keep.txt");
    expect(list).toContain("cache2/kept");
    expect(list).not.toContain("drop.tmp");
    expect(list).not.toContain("cache/big");
  }, T);

  test("archives, checksums, lists and status are not readable by other users", async () => {
    fx = serverFixture();
    await server();
    for (const n of fs.readdirSync(fx.backup)) {
      expect({ n, other: fs.statSync(path.join(fx.backup, n)).mode & 0o077 }).toEqual({ n, other: 0 });
    }
  }, T);

  test("a missing source fails with SOURCE_MISSING (20) and names it", async () => {
    fx = serverFixture();
    fs.writeFileSync(fx.config, fs.readFileSync(fx.config, "utf8").replace(/sources = \[.*\]/, `sources = ["${fx.src}/nope"]`));
    const r = await server();
    expect(r.code).toBe(20);
    expect(r.final.name).toBe("SOURCE_MISSING");
    expect(r.final.msg).toContain(`${fx.src}/nope`);
  }, T);

  test("a missing backup_dir fails with BACKUP_DIR_UNUSABLE (22)", async () => {
    fx = serverFixture();
    fs.rmSync(fx.backup, { recursive: true });
    const r = await runShoot(["server", "--config", fx.config]);
    expect(r.code).toBe(22);
    expect(r.stdout + r.stderr).toContain("does not exist");
    // the report of a run that could not begin still names the run
    for (const command of ["server", "wrapper"]) {
      const again = await runShoot([command, "--config", fx.config]);
      expect(again.code).toBe(22);
      expect(again.stdout).toMatch(/\nRun: +\d{8}T\d{6}Z-\d+-[0-9a-f]{4}\n/);
    }
  }, T);
});

describe("configuration errors", () => {
  const cases: Array<[string, string, number, RegExp]> = [
    ["missing file", "", 10, /does not exist/],
    ["syntax", "[server\nsources = [\"/x\"]\n", 11, /:1: TOML syntax error/],
    ["unknown key", "[server]\nsources = [\"/x\"]\nbackup_dir = \"/tmp\"\nkepe = 3\n", 11, /:4: \[server\] kepe: unknown key/],
    ["wrong type", "[server]\nsources = [\"/x\"]\nbackup_dir = \"/tmp\"\nkeep = \"two\"\n", 11, /:4: \[server\] keep: expected a whole number/],
    ["missing required", "[server]\nbackup_dir = \"/tmp\"\n", 11, /\[server\] sources: missing required key/],
    ["relative path", "[server]\nsources = [\"etc\"]\nbackup_dir = \"/tmp\"\n", 11, /sources: expected an array of absolute paths/],
    ["bad size", "[server]\nsources = [\"/x\"]\nbackup_dir = \"/tmp\"\nreserve = \"lots\"\n", 11, /reserve: expected a size/],
    ["bad duration", "[server]\nsources = [\"/x\"]\nbackup_dir = \"/tmp\"\nmax_runtime = \"6 hours\"\n", 11, /max_runtime: expected a duration/],
    ["no [server]", "[client]\ndest_dir = \"/srv\"\n[[client.source]]\nname = \"a\"\nremote = \"/x\"\n", 10, /\[server\]: missing/],
  ];
  for (const [what, text, want, re] of cases) {
    test(`${what} → ${want}, naming file, line and key`, async () => {
      const dir = tempDir();
      const file = path.join(dir, "shoot.toml");
      if (text) fs.writeFileSync(file, text);
      const r = await runShoot(["server", "--config", file]);
      expect(r.code).toBe(want);
      expect(r.stderr).toContain(file);
      expect(r.stderr).toMatch(re);
      fs.rmSync(dir, { recursive: true, force: true });
    }, T);
  }
});

/** The fixture with its backup directory on a tmpfs of `size`; unmount when done. */
function backupOnTmpfs(size: string): Mount {
  const m = mountTmpfs(size);
  fx = serverFixture();
  fs.writeFileSync(fx.config, fs.readFileSync(fx.config, "utf8").replace(/backup_dir = .*/, `backup_dir = ${JSON.stringify(m.dir)}`));
  fx.backup = m.dir;
  return m;
}

describe("free space", () => {
  test("a backup directory on a tiny tmpfs → NO_SPACE (23), earlier archives untouched, no temp file", async () => {
    const m = backupOnTmpfs("1m");
    try {
      const first = await server();
      expect(first.final.code).toBe(30);
      const before = fs.readFileSync(path.join(m.dir, first.final.archive.file));
      // incompressible data larger than the file system: the estimate refuses it
      fs.writeFileSync(path.join(fx.src, "big.bin"), crypto.getRandomValues(new Uint8Array(2 * 1024 * 1024)));
      const r = await server();
      expect(r.code).toBe(23);
      expect(r.final.name).toBe("NO_SPACE");
      expect(fs.readFileSync(path.join(m.dir, first.final.archive.file))).toEqual(before);
      expect(fs.readdirSync(m.dir).filter((n) => n.startsWith(".shoot-tmp"))).toEqual([]);
      expect(archivesIn(m.dir)).toEqual([first.final.archive.file]);
    } finally {
      m.unmount();
    }
  }, T);

  test("the file system filling up during the write → NO_SPACE, partial archive removed", async () => {
    const m = backupOnTmpfs("3m");
    try {
      const first = await server();
      expect(first.final.code).toBe(30);
      // compressible by the estimate's guess (the last archive was tiny), not in fact
      fs.writeFileSync(path.join(fx.src, "big.bin"), crypto.getRandomValues(new Uint8Array(1024 * 1024)));
      fs.writeFileSync(path.join(fx.src, "big2.bin"), crypto.getRandomValues(new Uint8Array(1024 * 1024)));
      fs.writeFileSync(path.join(fx.src, "big3.bin"), crypto.getRandomValues(new Uint8Array(1024 * 1024)));
      fs.writeFileSync(path.join(fx.src, "big4.bin"), crypto.getRandomValues(new Uint8Array(1024 * 1024)));
      const r = await server();
      expect(r.code).toBe(23);
      expect(fs.readdirSync(m.dir).filter((n) => n.startsWith(".shoot-tmp"))).toEqual([]);
      expect(archivesIn(m.dir)).toEqual([first.final.archive.file]);
    } finally {
      m.unmount();
    }
  }, T);
});

describe("free space for the walk's list", () => {
  test("no room for the list of the walk → NO_SPACE (23) that says so, earlier archive untouched, no temp file", async () => {
    const m = backupOnTmpfs("4m");
    try {
      const first = await server();
      expect(first.final.code).toBe(30);
      const before = fs.readFileSync(path.join(m.dir, first.final.archive.file));
      // 3,000 new names make a list of some 400 KB; leave 32 KiB for it and the status records
      for (let d = 0; d < 30; d++) {
        const dir = path.join(fx.src, `spool/queue-${String(d).padStart(2, "0")}`);
        fs.mkdirSync(dir, { recursive: true });
        for (let f = 0; f < 100; f++) fs.writeFileSync(path.join(dir, `message-${String(f).padStart(4, "0")}-with-a-long-name.eml`), "");
      }
      const st = fs.statfsSync(m.dir);
      const filler = path.join(m.dir, "filler.bin");
      fs.writeFileSync(filler, new Uint8Array(Number(st.bavail) * Number(st.bsize) - 32 * 1024));
      const r = await server();
      expect(r.code).toBe(23);
      expect(r.final.name).toBe("NO_SPACE");
      expect(r.final.msg).toContain("for the list of the walk");
      expect(fs.readFileSync(path.join(m.dir, first.final.archive.file))).toEqual(before);
      expect(fs.readdirSync(m.dir).filter((n) => n.startsWith(".shoot-tmp"))).toEqual([]);
      // room again: the next run makes the archive
      fs.rmSync(filler);
      expect((await server()).final.code).toBe(4);
    } finally {
      m.unmount();
    }
  }, T);
});

describe("files the server cannot take", () => {
  test("a FIFO and a socket are skipped with SPECIAL_SKIPPED warnings; the archive is made", async () => {
    fx = serverFixture();
    Bun.spawnSync(["mkfifo", path.join(fx.src, "etc/pipe")]);
    const sock = Bun.listen({ unix: path.join(fx.src, "etc/sock"), socket: { data() {} } });
    try {
      const r = await server();
      expect(r.final.code).toBe(30);
      const recs = statusRecords(path.join(fx.backup, "server.status"));
      const skipped = recs.filter((x) => x.name === "SPECIAL_SKIPPED").map((x) => x.msg);
      expect(skipped.some((m) => m.includes("etc/pipe") && m.includes("FIFO"))).toBe(true);
      expect(skipped.some((m) => m.includes("etc/sock") && m.includes("socket"))).toBe(true);
      expect(r.out).toContain("SPECIAL_SKIPPED");
    } finally {
      sock.stop(true);
    }
  }, T);

  test("an unreadable file (server not run as root) is a FILE_UNREADABLE warning, the rest is archived", async () => {
    requireTool("tar");
    const setpriv = Bun.which("setpriv");
    if (!setpriv) throw new Error("setpriv is required (apt-get install -y util-linux)");
    fx = serverFixture();
    fs.writeFileSync(path.join(fx.src, "etc/secret"), "no\n", { mode: 0o000 });
    Bun.spawnSync(["chown", "-R", "nobody:nogroup", fx.root]);
    fs.chmodSync(fx.root, 0o755);
    fs.chmodSync(path.join(fx.src, "etc/secret"), 0o000);
    const { shootArgv } = await import("../helpers/cli.ts");
    const argv = shootArgv();
    // bun itself must be reachable by the unprivileged user
    const r = Bun.spawnSync([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", ...argv, "server", "--config", fx.config], { env: { ...process.env, HOME: fx.root }, cwd: fx.root });
    const out = r.stdout.toString() + r.stderr.toString();
    expect({ code: r.exitCode, out }).toMatchObject({ code: 0 });
    const recs = statusRecords(path.join(fx.backup, "server.status"));
    expect(recs.at(-1)!.code).toBe(30);
    expect(recs.some((x) => x.name === "FILE_UNREADABLE" && x.msg.includes("etc/secret"))).toBe(true);
    const list = Bun.spawnSync(["tar", "-tzf", path.join(fx.backup, recs.at(-1)!.archive.file)]).stdout.toString();
    expect(list).toContain("etc/hosts");
    expect(list).not.toContain("etc/secret");
    // the file list describes the archive: the file left out is tried (and reported) again
    const again = Bun.spawnSync([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", ...argv, "server", "--config", fx.config], { env: { ...process.env, HOME: fx.root }, cwd: fx.root });
    expect(again.exitCode).toBe(0);
    const recs2 = statusRecords(path.join(fx.backup, "server.status"));
    expect(recs2.at(-1)!.code).toBe(4);
    expect(recs2.some((x) => x.name === "FILE_UNREADABLE" && x.msg.includes("etc/secret"))).toBe(true);
  }, T);
});
