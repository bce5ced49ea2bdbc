/**
 * Bad configuration, generated from the KEYS table so a key added later is attacked too:
 * every key with values of the wrong type, every required key missing, unknown keys and
 * sections, and then paths that do not exist and identity files ssh cannot use, on real runs.
 * Each must end with its own code and a message naming the file, the line and the key; no run
 * with a bad configuration may touch the backups already made.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { serverFixture, tempDir, type ServerFixture } from "../helpers/fixture.ts";
import {
  PullLane, bounded, caseSeed, checkGoodKept, faultFile, faultSshd, goldenWrapper, injected, snapshotGood,
} from "../helpers/faults.ts";
import { seeded } from "../helpers/random.ts";
import { KEYS, parseConfig, type KeyDef, type KeyType, type Section } from "../../src/core/common/config.ts";
import { mapLimit } from "../../src/core/client/client.ts";

faultFile(import.meta.path);

/** Values (TOML) that no key of the type accepts; the compiler insists every type has some. */
const WRONG: Record<KeyType, readonly string[]> = {
  string: ["42", "true", '""', "[\"a\"]"],
  strings: ['"/not/an/array"', "[1, 2]", '[""]', "{ a = 1 }"],
  name: ['"bad name"', '"-leading-dash"', "7", `"${"n".repeat(65)}"`],
  int: ['"seven"', "1.5", "true", "[1]"],
  bool: ['"yes"', "1", '"true"'],
  size: ['"lots"', "true", '"12 parsecs"', "[1]"],
  duration: ['"soon"', "90", '"-5m"', "false"],
  path: ['"relative/path"', "42", '""', '["/a"]'],
  paths: ['"/not/an/array"', '["relative"]', "[]", "[1]"],
  enum: ['"bogus"', "1", '["gzip"]'],
  "smtp-url": ['"http://mail.example.com"', '"not a url"', "25"],
  every: ['"weekly"', "0", "1.5", '"-7d"', "true", "[7]"],
  // a command written as one string is the classic mistake: it would need a shell to split it
  argv: ['"pg_dump shop"', "[]", "[1]", '[""]', '{ cmd = "x" }'],
};

/** A valid configuration with every section; keys as TOML literals. */
function baseDoc(dir: string): Record<Section, Record<string, string>> {
  return {
    server: { sources: JSON.stringify([dir]), backup_dir: JSON.stringify(path.join(dir, "backup")) },
    "server.dump": { name: '"shop"', postgresql: '"shop"' },
    client: { dest_dir: JSON.stringify(path.join(dir, "dest")) },
    "client.source": { name: '"web1"', remote: '"backup@web1.example.com:/var/backups/shoot"' },
    mail: { to: '["ops@example.com"]', from: '"shoot@example.com"', smtp: '"smtp://mail.example.com:587"' },
    monitor: {},
    offsite: { name: '"aws"', endpoint: '"https://s3.eu-central-1.amazonaws.com"', bucket: '"backups-offsite"' },
  };
}

function render(doc: Record<Section, Record<string, string>>): string {
  const out: string[] = [];
  for (const section of ["server", "server.dump", "client", "client.source", "mail", "monitor", "offsite"] as const) {
    out.push(section === "client.source" || section === "server.dump" || section === "offsite" ? `[[${section}]]` : `[${section}]`);
    for (const [k, v] of Object.entries(doc[section])) out.push(`${k} = ${v}`);
    out.push("");
  }
  return out.join("\n");
}

/** The label ConfigError gives a key: "[server] keep", "[[client.source]] #1 port". */
const label = (d: KeyDef) => (d.section === "client.source" || d.section === "server.dump" || d.section === "offsite" ? `[[${d.section}]] #1 ${d.key}` : `[${d.section}] ${d.key}`);

let dir: string;
beforeAll(() => {
  dir = tempDir("shoot-fault-config-");
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("bad configuration from the key table", () => {
  test("the base configuration is valid (so each case below breaks exactly one thing)", async () => {
    const file = path.join(dir, "base.toml");
    fs.writeFileSync(file, render(baseDoc(dir)));
    const r = await runShoot(["check-config", "--config", file]);
    expect({ code: r.code, err: r.stderr }).toEqual({ code: 0, err: "" });
  }, 30_000);

  test(`every key with values of the wrong type (${KEYS.length} keys): CONFIG_INVALID naming file, line and key`, async () => {
    const cases = KEYS.flatMap((d) => WRONG[d.type].map((v, i) => ({ d, v, i })))
      // enum and int keys also refuse values outside their set or range
      .concat(KEYS.filter((d) => d.type === "int" && d.max !== undefined).map((d) => ({ d, v: String(d.max! + 1), i: 90 })))
      .concat(KEYS.filter((d) => d.type === "int" && d.min !== undefined).map((d) => ({ d, v: String(d.min! - 1), i: 91 })));
    // every wrong value through the parser
    for (const { d, v } of cases) {
      const doc = baseDoc(dir);
      doc[d.section][d.key] = v;
      const text = render(doc);
      let err: unknown;
      try {
        parseConfig(text, "wrong.toml", "host");
      } catch (e) {
        err = e;
      }
      expect({ key: label(d), value: v, error: String(err) }).toMatchObject({ key: label(d), value: v, error: expect.stringContaining(`${label(d)}: expected`) });
    }
    injected("config key of the wrong type", cases.length);
    // the real command once for each type of key: what it prints and exits with
    const viaCli = cases.filter((c, n) => c.i === 0 && cases.findIndex((x) => x.i === 0 && x.d.type === c.d.type) === n);
    await mapLimit(viaCli, 4, async ({ d, v }) => {
      const doc = baseDoc(dir);
      doc[d.section][d.key] = v;
      const file = path.join(dir, `wrong-${d.section}-${d.key}.toml`);
      const text = render(doc);
      fs.writeFileSync(file, text);
      const line = text.split("\n").findIndex((l, n) => l.startsWith(`${d.key} = `) && sectionAt(text, n) === d.section) + 1;
      const r = await runShoot(["check-config", "--config", file], { timeoutMs: 30_000 });
      expect({ key: label(d), code: r.code }).toEqual({ key: label(d), code: 11 });
      expect(r.stderr).toContain(`${file}:${line}: ${label(d)}: expected`);
    });
    console.log(`wrong types: ${cases.length} values refused by the parser, ${viaCli.length} (one key of each type) through shoot check-config`);
  }, 120_000);

  test("every required key missing: CONFIG_INVALID naming the key", async () => {
    const required = KEYS.filter((d) => d.required);
    await mapLimit(required, 4, async (d) => {
      const doc = baseDoc(dir);
      delete doc[d.section][d.key];
      const file = path.join(dir, `missing-${d.section}-${d.key}.toml`);
      fs.writeFileSync(file, render(doc));
      const r = await runShoot(["check-config", "--config", file], { timeoutMs: 30_000 });
      expect({ key: label(d), code: r.code }).toEqual({ key: label(d), code: 11 });
      expect(r.stderr).toContain(`${label(d)}: missing required key`);
    });
    injected("required config key missing", required.length);
  }, 60_000);

  test("an unknown key in every section, an unknown section, a misspelt key: CONFIG_INVALID naming it", async () => {
    const sections = ["server", "server.dump", "client", "client.source", "mail", "monitor"] as const;
    const cases: Array<{ name: string; edit: (d: Record<Section, Record<string, string>>) => void; says: string; text?: string }> = [
      ...sections.map((s) => ({ name: `unknown key in ${s}`, edit: (d: Record<Section, Record<string, string>>) => (d[s].colour = '"blue"'), says: "colour: unknown key" })),
      { name: "misspelt key", edit: (d) => (d.server.keeep = "3"), says: "[server] keeep: unknown key (known keys: name, sources" },
      { name: "unknown section", edit: () => {}, says: "unknown section", text: "[sever]\nkeep = 2\n" },
    ];
    await mapLimit(cases, 4, async (c) => {
      const doc = baseDoc(dir);
      c.edit(doc);
      const file = path.join(dir, `unknown-${c.name.replace(/\W+/g, "-")}.toml`);
      fs.writeFileSync(file, `${c.text ?? ""}${render(doc)}`);
      const r = await runShoot(["check-config", "--config", file], { timeoutMs: 30_000 });
      expect({ name: c.name, code: r.code }).toEqual({ name: c.name, code: 11 });
      expect(r.stderr).toContain(c.says);
    });
    injected("unknown config key", cases.length);
  }, 60_000);

  test("retention and dump rules that do not make sense: CONFIG_INVALID naming the key", async () => {
    type Edit = (d: Record<Section, Record<string, string>>) => void;
    const cases: Array<{ name: string; edit: Edit; says: string }> = [
      { name: "misspelt tier", edit: (d) => (d.server.keep_dayly = "7"), says: "[server] keep_dayly: unknown key" },
      { name: "tier on a source misspelt", edit: (d) => (d["client.source"].keep_weeks = "4"), says: "[[client.source]] #1 keep_weeks: unknown key" },
      { name: "negative tier", edit: (d) => (d.client.keep_monthly = "-1"), says: "[client] keep_monthly: expected a whole number from 0" },
      { name: "rules that keep nothing", edit: (d) => (d.server.keep_last = "0"), says: "[server] keep_last: these keep rules keep no copy at all" },
      { name: "every tier zero", edit: (d) => Object.assign(d.client, { keep_daily: "0", keep_weekly: "0", keep_within: '"0s"' }), says: "[client] keep_daily: these keep rules keep no copy at all" },
      { name: "source keeping nothing", edit: (d) => (d["client.source"].keep_yearly = "0"), says: "[[client.source]] #1 keep_yearly: these keep rules keep no copy at all" },
      { name: "keep and keep_last", edit: (d) => Object.assign(d.server, { keep: "3", keep_last: "4" }), says: "[server] keep_last: keep and keep_last are the same rule" },
      { name: "dump with two ways", edit: (d) => (d["server.dump"].sqlite = '"/var/lib/app.db"'), says: "[[server.dump]] #1 sqlite: give exactly one of command, postgresql, mariadb, mysql, sqlite (got postgresql and sqlite)" },
      { name: "dump with none", edit: (d) => delete d["server.dump"].postgresql, says: "[[server.dump]] #1 command: give exactly one of" },
      { name: "dump command as a string", edit: (d) => Object.assign(d["server.dump"], { postgresql: undefined, command: '"pg_dump shop > /tmp/x"' }), says: "[[server.dump]] #1 command: expected a command as an array of strings" },
      { name: "host for a command", edit: (d) => { delete d["server.dump"].postgresql; Object.assign(d["server.dump"], { command: '["cat", "/x"]', host: '"db1"' }); }, says: "[[server.dump]] #1 host: host is for the postgresql, mariadb and mysql shortcuts" },
      { name: "hook as a string", edit: (d) => (d.server.before = '"systemctl stop app"'), says: "[server] before: expected a command as an array of strings" },
    ];
    await mapLimit(cases, 4, async (c) => {
      const doc = baseDoc(dir);
      c.edit(doc);
      for (const s of Object.values(doc)) for (const k of Object.keys(s)) if (s[k] === undefined) delete s[k];
      const file = path.join(dir, `rules-${c.name.replace(/\W+/g, "-")}.toml`);
      fs.writeFileSync(file, render(doc));
      const r = await runShoot(["check-config", "--config", file], { timeoutMs: 30_000 });
      expect({ name: c.name, code: r.code }).toEqual({ name: c.name, code: 11 });
      expect(r.stderr).toContain(c.says);
      expect(r.stderr).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\\d+: `));
    });
    // a second dump of the same name, through the parser
    const doc = baseDoc(dir);
    const twice = `${render(doc)}\n[[server.dump]]\nname = "shop"\nsqlite = "/var/lib/app.db"\n`;
    expect(() => parseConfig(twice, "twice.toml", "host")).toThrow('[[server.dump]] #2 name: duplicate dump "dumps/shop.sql"');
    injected("retention or dump rule that makes no sense", cases.length + 1);
  }, 60_000);
});

/** The section a line of `text` belongs to (for finding a key's line in a rendered document). */
function sectionAt(text: string, line: number): string {
  const lines = text.split("\n").slice(0, line + 1).reverse();
  const h = lines.find((l) => l.startsWith("["));
  return h ? h.replace(/^\[\[?|\]\]?$/g, "") : "";
}

describe("paths that do not exist and identity files ssh cannot use, on real runs", () => {
  const host = faultSshd("shoot-fault-config-hosts-");
  let fx: ServerFixture;
  beforeAll(() => {
    fx = serverFixture("keep = 2");
  });
  afterAll(() => {
    fx?.cleanup();
  });

  test("server: a configuration file that is missing or a directory, a source or a backup_dir that does not exist", async () => {
    await goldenWrapper(fx, "first run");
    const good = snapshotGood(fx.backup);
    const cases: Array<[string, string[], number, string]> = [
      ["config missing", ["wrapper", "--config", path.join(fx.root, "nope.toml")], 10, "does not exist"],
      ["config is a directory", ["wrapper", "--config", fx.root], 10, "is a directory"],
    ];
    for (const [name, args, code, says] of cases) {
      const r = await bounded(args);
      expect({ name, code: r.code }).toEqual({ name, code });
      expect(r.stdout + r.stderr).toContain(says);
    }
    const original = fs.readFileSync(fx.config, "utf8");
    const edits: Array<[string, string, number, string]> = [
      ["source missing", original.replace(/sources = \[(.*)\]/, (_, s) => `sources = [${s}, ${JSON.stringify(path.join(fx.root, "gone"))}]`), 20, `${path.join(fx.root, "gone")} does not exist`],
      ["backup_dir missing", original.replace(/backup_dir = .*/, `backup_dir = ${JSON.stringify(path.join(fx.root, "no-backup"))}`), 22, "does not exist"],
      ["backup_dir is a file", original.replace(/backup_dir = .*/, `backup_dir = ${JSON.stringify(fx.config)}`), 22, "not a directory"],
    ];
    for (const [name, text, code, says] of edits) {
      fs.writeFileSync(fx.config, text);
      const r = await bounded(["wrapper", "--config", fx.config, "--quiet"]);
      expect({ name, code: r.code }).toEqual({ name, code });
      expect(r.stdout + r.stderr).toContain(says);
      checkGoodKept(good, name);
    }
    injected("config path that does not exist", cases.length + edits.length);
    fs.writeFileSync(fx.config, original);
    await goldenWrapper(fx, "configuration right again");
  }, 60_000);

  test("client: dest_dir that cannot be made, known_hosts that does not exist, identity files ssh cannot use", async () => {
    const lane = new PullLane(dir, "paths", seeded(caseSeed("client bad paths")), { sshd: host.sshd });
    await lane.publish();
    await lane.normalRun("first pull");
    await lane.publish();
    const good = snapshotGood(lane.copies);
    const key = host.sshd.userKey.key;
    const dirKey = path.join(dir, "key-is-a-directory");
    fs.mkdirSync(dirKey, { recursive: true });
    const openKey = path.join(dir, "key-world-readable");
    fs.copyFileSync(key, openKey);
    fs.chmodSync(openKey, 0o644);
    const garbageKey = path.join(dir, "key-garbage");
    fs.writeFileSync(garbageKey, "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n", { mode: 0o600 });
    const cases: Array<[string, () => void, number, string]> = [
      ["dest_dir under a file", () => writeWith({ dest: path.join(lane.config, "dest") }), 52, "cannot be created"],
      ["known_hosts missing", () => writeWith({ known_hosts: path.join(dir, "no-known-hosts") }), 41, "the server's host key is unknown: no ED25519 key for [127.0.0.1]"],
      ["identity missing", () => writeWith({ identity: path.join(dir, "no-such-key") }), 42, "does not exist"],
      ["identity is a directory", () => writeWith({ identity: dirKey }), 42, "is not a regular file"],
      ["identity readable by everyone", () => writeWith({ identity: openKey }), 42, "chmod 600"],
      ["identity not a key", () => writeWith({ identity: garbageKey }), 42, "Permission denied"],
    ];
    function writeWith(o: { dest?: string; known_hosts?: string; identity?: string }): void {
      const text = fs.readFileSync(path.join(dir, "paths", "client.good.toml"), "utf8");
      let t = text;
      if (o.dest) t = t.replace(/dest_dir = .*/, `dest_dir = ${JSON.stringify(o.dest)}`);
      if (o.known_hosts) t = t.replace(/known_hosts = .*/, `known_hosts = ${JSON.stringify(o.known_hosts)}`);
      if (o.identity) t = t.replace(/identity = .*/, `identity = ${JSON.stringify(o.identity)}`);
      fs.writeFileSync(lane.config, t);
    }
    fs.copyFileSync(lane.config, path.join(dir, "paths", "client.good.toml"));
    const said: Record<string, string> = {};
    for (const [name, edit, code, says] of cases) {
      edit();
      const r = await lane.pull(30_000);
      expect({ name, code: r.code }).toEqual({ name, code });
      said[name] = r.outcome.sources?.[0]?.message ?? r.outcome.message;
      expect(said[name]).toContain(says);
      checkGoodKept(good, name);
      lane.check(name, true);
    }
    injected("client config path unusable", cases.length);
    console.log(`client with unusable paths: ${JSON.stringify(said, null, 1)}`);
    fs.copyFileSync(path.join(dir, "paths", "client.good.toml"), lane.config);
    await lane.normalRun("configuration right again");
  }, 90_000);
});
