/**
 * Database dumps with real databases (Debian's packages), each started here on a Unix socket in
 * a temporary directory and stopped by its PID: rows written, a wrapper run, the database left
 * idle (9), rows changed, another run; each archive extracted with GNU tar (files compared with
 * the source), its dump restored with `shoot restore` and loaded into a fresh database, whose
 * rows must be the ones the database held at that run. Then every way a dump fails: killed
 * midway (kill -9), hanging past its time-out, missing, ending unwhole: each a named code, and
 * the previous archive stays the newest good one.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runShoot, startShoot } from "../helpers/cli.ts";
import { runClient, writeClientConfig } from "../helpers/client.ts";
import { startMariadb, startPostgres, type Database } from "../helpers/databases.ts";
import { alive, cmdline, descendants, killPid, waitFor } from "../helpers/faults.ts";
import { archivesIn, statusRecords } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";

const TAR = requireTool("tar");
const q = JSON.stringify;
let base: string;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-dumps-"));
  fs.chmodSync(base, 0o755);
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

async function database(kind: "postgres" | "mariadb", name: string): Promise<Database> {
  const db = kind === "postgres" ? await startPostgres(path.join(base, name)) : await startMariadb(path.join(base, name));
  cleanups.push(() => db.stop());
  return db;
}

interface Host {
  root: string;
  src: string;
  backup: string;
  config: string;
  write(dumps: string): void;
}

/** A server with a small tree of files and the [[server.dump]] tables given. */
function host(name: string, dumps: string, compression = "gzip"): Host {
  const root = path.join(base, name);
  const src = path.join(root, "src");
  const backup = path.join(root, "backup");
  fs.mkdirSync(path.join(src, "etc"), { recursive: true });
  fs.mkdirSync(backup, { mode: 0o700 });
  fs.writeFileSync(path.join(src, "etc/app.conf"), "listen = 8080\n");
  const config = path.join(root, "shoot.toml");
  const h: Host = {
    root, src, backup, config,
    write(d: string) {
      fs.writeFileSync(config, `[server]\nname = "db1"\nsources = [${q(src)}]\nbackup_dir = ${q(backup)}\nreserve = "0"\ncompression = ${q(compression)}\nkeep = 5\n\n${d}\n`);
    },
  };
  h.write(dumps);
  return h;
}

async function wrapper(h: Host, env: Record<string, string | undefined> = {}): Promise<{ code: number; out: string }> {
  const r = await runShoot(["wrapper", "--config", h.config, "--quiet"], { timeoutMs: 120_000, env });
  return { code: r.code, out: r.stdout + r.stderr };
}

/** treeDifferences, with times to the microsecond: a server's file list, which the archive is written from, keeps no finer. */
function differences(a: string, b: string): string[] {
  return treeDifferences(a, b).filter((d) => {
    const m = /: mtimeNs (\d+), expected (\d+)$/.exec(d);
    return !m || (BigInt(m[1]!) - BigInt(m[2]!) > 1000n || BigInt(m[2]!) - BigInt(m[1]!) > 1000n);
  });
}

/**
 * The newest archive: GNU tar extracts it (files compared with the source), `shoot restore`
 * restores its dump; the dump file's path.
 */
async function checkNewest(h: Host, entry: string): Promise<string> {
  const archive = path.join(h.backup, archivesIn(h.backup).at(-1)!);
  const x = fs.mkdtempSync(path.join(h.root, "tar-"));
  const t = Bun.spawnSync([TAR, "-xpf", archive, "-C", x]);
  expect({ tar: t.exitCode, err: t.stderr.toString() }).toEqual({ tar: 0, err: "" });
  expect(differences(h.src, path.join(x, h.src))).toEqual([]);
  const to = fs.mkdtempSync(path.join(h.root, "restored-"));
  const r = await runShoot(["restore", archive, "--to", to, "--quiet"], { timeoutMs: 60_000 });
  expect({ code: r.code, err: r.stderr }).toMatchObject({ code: 0 });
  const restored = path.join(to, entry);
  // shoot restore and GNU tar give the same dump, byte for byte
  expect(fs.readFileSync(restored).equals(fs.readFileSync(path.join(x, entry)))).toBe(true);
  expect(fs.statSync(restored).mode & 0o777).toBe(0o600);
  return restored;
}

const finals = (h: Host) => statusRecords(path.join(h.backup, "server.status")).filter((r) => r.role === "wrapper" && [4, 9, 30].includes(r.code) || r.code >= 100);

describe("PostgreSQL", () => {
  let db: Database;
  let fresh: Database;
  let h: Host;
  beforeAll(async () => {
    db = await database("postgres", "pg-live");
    fresh = await database("postgres", "pg-fresh");
    await db.createDb("shop");
    await db.sql("shop", "create table orders(id int primary key, item text, qty int); insert into orders select g, 'item ' || g, g % 7 from generate_series(1, 500) g");
    h = host("pg-host", `[[server.dump]]\nname = "shop"\npostgresql = "shop"\nhost = ${q(db.host)}\nuser = "postgres"\n`);
  }, 180_000);

  test("rows in, backup (30); idle, backup (9); rows changed, backup (4); each dump loads into a fresh server with the rows of its run", async () => {
    const rows1 = await db.sql("shop", "select * from orders order by id");
    expect((await wrapper(h)).code).toBe(0);
    expect(finals(h).at(-1)!.code).toBe(30);
    const dump1 = await checkNewest(h, "dumps/shop.sql");

    // an idle database gives the same dump: nothing new
    expect((await wrapper(h)).code).toBe(0);
    expect(finals(h).at(-1)!.code).toBe(9);
    expect(archivesIn(h.backup)).toHaveLength(1);

    await db.sql("shop", "update orders set qty = qty + 100 where id % 3 = 0; delete from orders where id > 490; insert into orders values (1000, 'new', 1)");
    const rows2 = await db.sql("shop", "select * from orders order by id");
    expect(rows2).not.toBe(rows1);
    expect((await wrapper(h)).code).toBe(0);
    expect(finals(h).at(-1)!.code).toBe(4);
    const dump2 = await checkNewest(h, "dumps/shop.sql");

    await fresh.load("restored1", dump1);
    await fresh.load("restored2", dump2);
    expect(await fresh.sql("restored1", "select * from orders order by id")).toBe(rows1);
    expect(await fresh.sql("restored2", "select * from orders order by id")).toBe(rows2);
    // the list records the dump; verify --deep accepts the archive with it
    const v = await runShoot(["verify", "--deep", "--config", h.config]);
    expect({ code: v.code, out: v.stdout }).toMatchObject({ code: 0 });
  }, 180_000);

  test("pg_dump killed midway (kill -9): DUMP_FAILED; waiting on a lock past its timeout: DUMP_TIMEOUT; the previous archive stays the newest", async () => {
    // enough rows that the dump takes a while: it is killed while its output streams into the archive
    await db.sql("shop", "create table big(id int, pad text); insert into big select g, repeat(md5(g::text), 8) from generate_series(1, 400000) g");
    const good = archivesIn(h.backup);
    const run = startShoot(["wrapper", "--config", h.config, "--quiet"]);
    // a temporary file listed may be gone (renamed or removed) by the time it is looked at
    const sizeOf = (n: string) => fs.statSync(path.join(h.backup, n), { throwIfNoEntry: false })?.size ?? 0;
    const tmpGrew = () => fs.readdirSync(h.backup).some((n) => n.startsWith(".shoot-tmp-") && sizeOf(n) > 2 << 20);
    const pgDump = await waitFor(() => (tmpGrew() ? descendants(run.pid).find((p) => /(^|\/)pg_dump /.test(cmdline(p))) : undefined), 60_000, 2);
    expect(pgDump).toBeDefined();
    expect(killPid(pgDump!)).toBe(true);
    expect(await run.exited).toBe(105);
    const killed = finals(h).at(-1)!;
    expect(killed.msg).toContain("was killed by SIGKILL");
    expect(killed.msg).toContain("the previous one stays the newest");
    expect(archivesIn(h.backup)).toEqual(good);
    expect(fs.readdirSync(h.backup).filter((n) => n.startsWith(".shoot-tmp-"))).toEqual([]);

    // a session holds a lock pg_dump must wait for; the dump's timeout stops it
    const lock = Bun.spawn([requireTool("psql"), "-X", "-h", db.host, "-U", "postgres", "-d", "shop", "-c", "begin; lock table orders in access exclusive mode; select pg_sleep(60);"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    cleanups.push(async () => void lock.kill("SIGKILL"));
    const held = async () => (await db.sql("shop", "select count(*) from pg_locks where relation = 'orders'::regclass and mode = 'AccessExclusiveLock' and granted")).trim() === "1";
    for (const until = Date.now() + 30_000; !(await held()); ) if (Date.now() > until) throw new Error("the lock was never taken");
    h.write(`[[server.dump]]\nname = "shop"\npostgresql = "shop"\nhost = ${q(db.host)}\nuser = "postgres"\ntimeout = "2s"\n`);
    const started = Date.now();
    const timedOut = await wrapper(h);
    // the server would notice the dead client only when pg_sleep ends: end its backend too
    lock.kill("SIGKILL");
    await lock.exited;
    await db.sql("shop", "select pg_terminate_backend(pid) from pg_locks where relation = 'orders'::regclass and mode = 'AccessExclusiveLock'");
    for (const until = Date.now() + 30_000; await held(); ) if (Date.now() > until) throw new Error("the lock was never released");
    expect(timedOut.code).toBe(106);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(finals(h).at(-1)!.msg).toContain("ran past its timeout of 2.0s");
    expect(archivesIn(h.backup)).toEqual(good);

    // the database is free again, the timeout back to its default: the next run is golden, and the archive holds the big table
    h.write(`[[server.dump]]\nname = "shop"\npostgresql = "shop"\nhost = ${q(db.host)}\nuser = "postgres"\n`);
    // memory stays bounded while ~100 MB of dump streams through: the server's peak resident set, sampled
    const big = startShoot(["wrapper", "--config", h.config, "--quiet"]);
    let peakKiB = 0;
    const sampler = setInterval(() => {
      for (const p of descendants(big.pid)) {
        if (!/ server --config /.test(cmdline(p))) continue;
        let status = "";
        try {
          status = fs.readFileSync(`/proc/${p}/status`, "utf8");
        } catch {
          continue; // it ended between the two looks
        }
        const m = /VmHWM:\s+(\d+) kB/.exec(status);
        if (m) peakKiB = Math.max(peakKiB, Number(m[1]));
      }
    }, 10);
    const bigCode = await big.exited;
    clearInterval(sampler);
    expect(bigCode).toBe(0);
    const size = (await db.sql("shop", "select pg_total_relation_size('big')")).trim();
    console.log(`PostgreSQL: a dump of a ${(Number(size) / 2 ** 20).toFixed(0)} MiB table streamed into the archive; the server's peak resident set was ${(peakKiB / 1024).toFixed(0)} MiB`);
    expect(peakKiB).toBeGreaterThan(0);
    expect(peakKiB / 1024).toBeLessThan(200);
    expect(archivesIn(h.backup)).toHaveLength(good.length + 1);
    const dump = await checkNewest(h, "dumps/shop.sql");
    await fresh.load("restored3", dump);
    expect(await fresh.sql("restored3", "select count(*), sum(length(pad)) from big")).toBe("400000|102400000\n");
  }, 240_000);
});

describe("MariaDB", () => {
  test("rows in, backup (30); idle (9); rows changed (4); each dump loads into a fresh server with the rows of its run", async () => {
    const db = await database("mariadb", "my-live");
    await db.createDb("shop");
    await db.sql("shop", "create table orders(id int primary key, item varchar(40), qty int); insert into orders select seq, concat('item ', seq), seq % 7 from seq_1_to_500");
    const h = host("my-host", `[[server.dump]]\nname = "shop"\nmariadb = "shop"\nhost = ${q(db.host)}\n`, "zstd");
    const rows1 = await db.sql("shop", "select * from orders order by id");
    expect((await wrapper(h)).code).toBe(0);
    expect(finals(h).at(-1)!.code).toBe(30);
    const dump1 = await checkNewest(h, "dumps/shop.sql");
    expect((await wrapper(h)).code).toBe(0);
    expect(finals(h).at(-1)!.code).toBe(9);
    await db.sql("shop", "update orders set qty = qty + 100 where id % 3 = 0; delete from orders where id > 490; insert into orders values (1000, 'new', 1)");
    const rows2 = await db.sql("shop", "select * from orders order by id");
    expect((await wrapper(h)).code).toBe(0);
    expect(finals(h).at(-1)!.code).toBe(4);
    const dump2 = await checkNewest(h, "dumps/shop.sql");
    await db.stop();

    const fresh = await database("mariadb", "my-fresh");
    await fresh.load("shop", dump1);
    expect(await fresh.sql("shop", "select * from orders order by id")).toBe(rows1);
    await fresh.load("shop", dump2);
    expect(await fresh.sql("shop", "select * from orders order by id")).toBe(rows2);
  }, 240_000);
});

describe("SQLite", () => {
  const sqlite = requireTool("sqlite3");
  const sql = (file: string, text: string) => {
    const r = Bun.spawnSync([sqlite, file, text]);
    if (r.exitCode !== 0) throw new Error(r.stderr.toString());
    return r.stdout.toString();
  };

  test("rows in (30), idle (9), changed (4), two dumps in one archive; each loads into a fresh file with the rows of its run", async () => {
    const file = path.join(base, "app.db");
    sql(file, "create table notes(id integer primary key, body text); insert into notes(body) values ('one'), ('two'), ('three');");
    const other = path.join(base, "cache.db");
    sql(other, "create table kv(k text primary key, v blob); insert into kv values ('a', x'00ff00');");
    const h = host("sqlite-host", `[[server.dump]]\nname = "app"\nsqlite = ${q(file)}\n\n[[server.dump]]\nname = "cache"\nsqlite = ${q(other)}\n`, "none");
    const rows1 = sql(file, "select * from notes order by id");
    expect((await wrapper(h)).code).toBe(0);
    const dump1 = await checkNewest(h, "dumps/app.sql");
    await checkNewest(h, "dumps/cache.sql");
    expect((await wrapper(h)).code).toBe(0);
    expect(finals(h).at(-1)!.code).toBe(9);
    sql(file, "update notes set body = 'TWO' where id = 2; insert into notes(body) values ('four');");
    const rows2 = sql(file, "select * from notes order by id");
    expect((await wrapper(h)).code).toBe(0);
    expect(finals(h).at(-1)!.code).toBe(4);
    const dump2 = await checkNewest(h, "dumps/app.sql");
    // the backup host pulls it and proves it (verify = "deep" reads every entry, the dumps too)
    const dest = path.join(h.root, "dest");
    const clientCfg = writeClientConfig(path.join(h.root, "client.toml"), { dest, sources: [{ name: "db1", remote: h.backup }] });
    const pulled = await runClient(clientCfg, dest);
    expect({ code: pulled.code, codes: pulled.codes }).toEqual({ code: 0, codes: { db1: 30 } });
    expect(pulled.records.find((r) => r.name === "PULLED")!.data.proof).toMatch(/^deep: 5 entries read/);
    for (const [dump, rows] of [[dump1, rows1], [dump2, rows2]] as const) {
      const fresh = path.join(h.root, `fresh-${rows.length}.db`);
      const r = Bun.spawnSync([sqlite, fresh], { stdin: Bun.file(dump) });
      expect(r.exitCode).toBe(0);
      expect(sql(fresh, "select * from notes order by id")).toBe(rows);
    }
  }, 120_000);

  test("a database file that is missing, a program that is missing, a file that is not a database, a command that fails: named codes, the previous archive stays", async () => {
    const file = path.join(base, "ok.db");
    sql(file, "create table t(a); insert into t values (1);");
    const h = host("sqlite-faults", `[[server.dump]]\nname = "ok"\nsqlite = ${q(file)}\n`);
    expect((await wrapper(h)).code).toBe(0);
    await checkNewest(h, "dumps/ok.sql");
    const good = archivesIn(h.backup);
    fs.appendFileSync(path.join(h.src, "etc/app.conf"), "changed\n");
    const garbage = path.join(base, "garbage.db");
    fs.writeFileSync(garbage, "this is not a database, but sqlite3 .dump exits 0 on it\n".repeat(100));
    const cases: Array<[string, string, number, string]> = [
      ["file missing", `sqlite = ${q(path.join(base, "gone.db"))}`, 107, "does not exist"],
      ["program missing", `command = ["/nonexistent/bin/dumper", "--all"]`, 107, "dumper is not installed"],
      ["not a database", `sqlite = ${q(garbage)}`, 105, 'does not end with "COMMIT;\\n"'],
      ["command fails halfway", `command = ["sh", "-c", "echo 'CREATE TABLE x(a);'; echo 'out of memory' >&2; exit 3"]`, 105, "exited with 3: out of memory"],
      ["command hangs", `command = ["sh", "-c", "echo partial; exec sleep 60"]\ntimeout = "1s"`, 106, "ran past its timeout of 1.0s"],
    ];
    for (const [name, line, code, says] of cases) {
      h.write(`[[server.dump]]\nname = "ok"\nsqlite = ${q(file)}\n\n[[server.dump]]\nname = "bad"\n${line}\n`);
      const r = await wrapper(h);
      expect({ name, code: r.code }).toEqual({ name, code });
      expect({ name, msg: finals(h).at(-1)!.msg }).toMatchObject({ name, msg: expect.stringContaining(says) });
      expect({ name, archives: archivesIn(h.backup) }).toEqual({ name, archives: good });
      expect(fs.readdirSync(h.backup).filter((n) => n.startsWith(".shoot-tmp-"))).toEqual([]);
    }
    // the wrapper stops a run whose dump writes nothing past max_runtime: the dump is stopped with it
    const pidFile = path.join(h.root, "dump.pid");
    h.write(`max_runtime = "2s"\nkill_grace = "2s"\n\n[[server.dump]]\nname = "stuck"\ncommand = ["sh", "-c", ${q(`echo $$ > ${pidFile}; exec sleep 60`)}]\n`);
    const stopped = await wrapper(h);
    expect(stopped.code).toBe(33);
    const dumpPid = Number(fs.readFileSync(pidFile, "utf8"));
    expect(await waitFor(() => (alive(dumpPid) ? undefined : true), 10_000)).toBe(true);
    expect(archivesIn(h.backup)).toEqual(good);
    // the right configuration again: golden
    h.write(`[[server.dump]]\nname = "ok"\nsqlite = ${q(file)}\n`);
    expect((await wrapper(h)).code).toBe(0);
    await checkNewest(h, "dumps/ok.sql");
  }, 120_000);
});
