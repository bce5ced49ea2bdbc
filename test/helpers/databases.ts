/**
 * Real database servers for the dump tests, from Debian's packages: each started by the test
 * in a temporary directory, on a Unix socket only (no TCP port), as an unprivileged user where
 * the server refuses root, and stopped by its PID.
 *
 *   PostgreSQL: initdb + postgres as the `postgres` user (initdb refuses root), trust on the socket.
 *   MariaDB:    mariadb-install-db + mariadbd as the `mysql` user, root by unix_socket.
 */
import fs from "node:fs";
import path from "node:path";
import { describeResult, spawner } from "../../src/io/process.ts";
import { requireTool } from "./tools.ts";

const SETPRIV = () => requireTool("setpriv");

/** uid and gid of a system user, from /etc/passwd. */
function userIds(name: string): { uid: number; gid: number } {
  const line = fs.readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`the user ${name} does not exist (it comes with the database's Debian package)`);
  const f = line.split(":");
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

function asUser(ids: { uid: number; gid: number }, argv: string[]): string[] {
  return [SETPRIV(), `--reuid=${ids.uid}`, `--regid=${ids.gid}`, "--clear-groups", "--", ...argv];
}

async function run(argv: string[], opts: { env?: Record<string, string | undefined>; timeoutMs?: number; input?: string } = {}): Promise<string> {
  const r = await spawner.run(argv, { env: { ...process.env, ...opts.env }, timeoutMs: opts.timeoutMs ?? 120_000, captureStdout: true });
  if (r.exitCode !== 0) throw new Error(describeResult(r, 10));
  return r.stdout;
}

async function waitUntil(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 60_000, log?: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await probe()) return;
    await Bun.sleep(50);
  }
  const tail = log && fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").slice(-15).join("\n") : "";
  throw new Error(`timed out waiting for ${what}${tail ? `\n${tail}` : ""}`);
}

/** Stop a server we started, by its PID, and wait for it to be gone. */
async function stopPid(proc: ReturnType<typeof Bun.spawn>, signal: NodeJS.Signals): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill(signal);
  const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  await proc.exited;
  clearTimeout(timer);
}

export interface Database {
  /** What the [[server.dump]] table needs to reach it: the socket (directory or file). */
  host: string;
  /** Run SQL, return the output as plain rows ("a|b" lines). */
  sql(db: string, text: string): Promise<string>;
  createDb(db: string): Promise<void>;
  /** Load a dump file written by shoot's shortcut into `db` (created first when the dump does not). */
  load(db: string, file: string): Promise<void>;
  /** The server's PID. */
  pid: number;
  stop(): Promise<void>;
}

function newestPgBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  const bin = versions.map((v) => path.join(root, v, "bin")).find((b) => fs.existsSync(path.join(b, "initdb")));
  if (!bin) throw new Error("PostgreSQL's server is not installed; install it with: apt-get install -y postgresql");
  return bin;
}

/** A PostgreSQL server in `dir`, listening on a socket in dir/sock only. */
export async function startPostgres(dir: string): Promise<Database> {
  const bin = newestPgBin();
  const psql = requireTool("psql");
  const ids = userIds("postgres");
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, "data");
  const sock = path.join(dir, "sock");
  for (const d of [data, sock]) {
    fs.mkdirSync(d, { mode: 0o700 });
    fs.chownSync(d, ids.uid, ids.gid);
  }
  await run(asUser(ids, [path.join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]));
  const log = path.join(sock, "server.log");
  const proc = Bun.spawn(asUser(ids, [path.join(bin, "postgres"), "-D", data, "-k", sock, "-c", "listen_addresses=", "-c", "fsync=off", "-c", "full_page_writes=off", "-c", `logging_collector=off`]), {
    stdin: "ignore", stdout: "ignore", stderr: Bun.file(log),
  });
  const base = [psql, "-X", "-q", "-h", sock, "-U", "postgres", "-v", "ON_ERROR_STOP=1"];
  await waitUntil("PostgreSQL to accept connections", async () => {
    if (proc.exitCode !== null) throw new Error(`postgres exited with ${proc.exitCode}: ${fs.readFileSync(log, "utf8")}`);
    return (await spawner.run([...base, "-d", "postgres", "-c", "select 1"], { timeoutMs: 5000 })).exitCode === 0;
  }, 60_000, log);
  return {
    host: sock,
    pid: proc.pid,
    sql: (db, text) => run([...base, "-A", "-t", "-d", db, "-c", text]),
    createDb: async (db) => void (await run([...base, "-d", "postgres", "-c", `create database ${db}`])),
    load: async (db, file) => {
      await run([...base, "-d", "postgres", "-c", `create database ${db}`]);
      await run([...base, "-d", db, "-f", file]);
    },
    stop: () => stopPid(proc, "SIGINT"),
  };
}

/** A MariaDB server in `dir`, on the socket dir/mysqld.sock only (no networking). */
export async function startMariadb(dir: string): Promise<Database> {
  const installDb = requireTool("mariadb-install-db");
  const mariadbd = requireTool("mariadbd");
  const client = requireTool("mariadb");
  const ids = userIds("mysql");
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, "data");
  fs.mkdirSync(data, { mode: 0o700 });
  fs.chownSync(data, ids.uid, ids.gid);
  fs.chownSync(dir, ids.uid, ids.gid);
  const sock = path.join(dir, "mysqld.sock");
  const log = path.join(dir, "error.log");
  const common = ["--no-defaults", `--datadir=${data}`, "--user=mysql"];
  await run([installDb, ...common, "--skip-test-db", "--auth-root-authentication-method=socket"], { timeoutMs: 180_000 });
  const proc = Bun.spawn([mariadbd, ...common, `--socket=${sock}`, "--skip-networking", `--pid-file=${path.join(dir, "mariadbd.pid")}`, `--log-error=${log}`, "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=32M"], {
    stdin: "ignore", stdout: "ignore", stderr: "ignore",
  });
  const base = [client, "--no-defaults", `--socket=${sock}`, "--user=root"];
  await waitUntil("MariaDB to accept connections", async () => {
    if (proc.exitCode !== null) throw new Error(`mariadbd exited with ${proc.exitCode}: ${fs.existsSync(log) ? fs.readFileSync(log, "utf8") : ""}`);
    return (await spawner.run([...base, "-e", "select 1"], { timeoutMs: 5000 })).exitCode === 0;
  }, 90_000, log);
  return {
    host: sock,
    pid: proc.pid,
    sql: (db, text) => run([...base, "--batch", "--skip-column-names", db, "-e", text]).then((o) => o.replace(/\t/g, "|")),
    createDb: async (db) => void (await run([...base, "-e", `create database ${db}`])),
    // the shortcut's dump names its database (--databases): loading it creates it
    load: async (_db, file) => void (await run([...base, "-e", `source ${file}`])),
    stop: () => stopPid(proc, "SIGTERM"),
  };
}
