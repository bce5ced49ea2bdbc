/** The dump command lines, case by case (pure), and the key pg_dump gets for its \restrict line. */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseConfig } from "../../src/core/common/config.ts";
import { dumpArgv, restrictKey } from "../../src/core/server/dumps.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-dumps-unit-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The dumps of a [server] with these [[server.dump]] tables. */
function dumps(tables: string) {
  return parseConfig(`[server]\nsources = ["/etc"]\nbackup_dir = "/var/backups/shoot"\n${tables}`, "t.toml", "host").server!.dumps;
}

describe("dump command lines", () => {
  const rows: Array<[string, string, string[], string?]> = [
    ["postgresql, defaults", 'name = "shop"\npostgresql = "shop"', ["pg_dump", "--no-password", "--dbname", "shop"]],
    ["postgresql, socket directory, port, user, options, restrict key", 'name = "shop"\npostgresql = "shop"\nhost = "/run/postgresql"\nport = 5433\nuser = "backup"\noptions = ["--no-owner"]',
      ["pg_dump", "--no-password", "--host", "/run/postgresql", "--port", "5433", "--username", "backup", "--restrict-key=K", "--no-owner", "--dbname", "shop"], "K"],
    ["mariadb over its socket", 'name = "shop"\nmariadb = "shop"\nhost = "/run/mysqld/mysqld.sock"\nuser = "root"',
      ["mariadb-dump", "--single-transaction", "--skip-dump-date", "--routines", "--events", "--socket=/run/mysqld/mysqld.sock", "--user=root", "--databases", "shop"]],
    ["mysql over TCP", 'name = "crm"\nmysql = "crm"\nhost = "db1.example.com"\nport = 3307',
      ["mysqldump", "--single-transaction", "--skip-dump-date", "--routines", "--events", "--host=db1.example.com", "--port=3307", "--databases", "crm"]],
    ["sqlite with an option", 'name = "app"\nsqlite = "/var/lib/app/app.db"\noptions = ["-cmd", ".timeout 5000"]', ["sqlite3", "-readonly", "-bail", "-cmd", ".timeout 5000", "/var/lib/app/app.db", ".dump"]],
    ["a command as written", 'name = "ldap"\ncommand = ["slapcat", "-n", "1"]\nextension = "ldif"', ["slapcat", "-n", "1"]],
    ["a shell only when written", 'name = "x"\ncommand = ["sh", "-c", "pg_dumpall | cat"]', ["sh", "-c", "pg_dumpall | cat"]],
  ];
  for (const [name, table, argv, key] of rows) {
    test(name, () => {
      const [d] = dumps(`[[server.dump]]\n${table}\n`);
      expect(dumpArgv(d!, key)).toEqual(argv);
    });
  }

  test("entry names, time-outs", () => {
    const ds = dumps('[[server.dump]]\nname = "shop"\npostgresql = "shop"\n\n[[server.dump]]\nname = "ldap"\ncommand = ["slapcat"]\nextension = "ldif"\ntimeout = "5m"\n');
    expect(ds.map((d) => [d.entry, d.timeout])).toEqual([["dumps/shop.sql", 3_600_000], ["dumps/ldap.ldif", 300_000]]);
    expect(() => dumps('[[server.dump]]\nname = "x"\npostgresql = "--help"\n')).toThrow('[[server.dump]] #1 postgresql: a database name cannot start with "-"');
    expect(() => dumps(`[[server.dump]]\nname = "${"n".repeat(60)}"\nsqlite = "/a.db"\nextension = "${"e".repeat(50)}"\n`)).toThrow("longer than 100 characters");
  });

  test("the restrict key: the same for a name from run to run, another for another name or another host's secret", () => {
    const a = path.join(dir, "a");
    const b = path.join(dir, "b");
    fs.mkdirSync(a);
    fs.mkdirSync(b);
    const k = restrictKey(a, "shop");
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(restrictKey(a, "shop")).toBe(k);
    expect(restrictKey(a, "crm")).not.toBe(k);
    expect(restrictKey(b, "shop")).not.toBe(k);
    expect(fs.statSync(path.join(a, ".shoot-dump-secret")).mode & 0o777).toBe(0o600);
  });
});
