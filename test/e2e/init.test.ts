/**
 * `shoot init server|client`: a valid commented configuration (mode 0600) with every key, the
 * role's directory (mode 0700), no overwriting without --force, systemd units on request; and
 * the printed next steps, followed line by line on localhost, give a server and a backup host
 * that end golden, the pull going over ssh through the printed authorized_keys line.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { KEYS, sanitizeHostname } from "../../src/core/common/config.ts";
import { spawner } from "../../src/io/process.ts";
import { ROOT, runShoot } from "../helpers/cli.ts";
import { md5sumCheck } from "../helpers/client.ts";
import { statusRecords, tempDir, writeTree } from "../helpers/fixture.ts";
import { startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";

const T = 60_000;
let tmp = "";

beforeAll(() => {
  tmp = tempDir("shoot-init-");
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const mode = (p: string) => fs.statSync(p).mode & 0o777;

/** Every key of these sections appears in the text, set or commented out. */
function expectEveryKey(text: string, sections: string[]): void {
  for (const k of KEYS.filter((d) => sections.includes(d.section))) {
    expect({ key: `${k.section}.${k.key}`, found: new RegExp(`^(# )?${k.key} = `, "m").test(text) }).toEqual({ key: `${k.section}.${k.key}`, found: true });
  }
}

/** The printed command lines (indented by five spaces) that contain `needle`. */
function printed(out: string, needle: string): string[] {
  return out.split("\n").filter((l) => l.startsWith("     ") && l.includes(needle)).map((l) => l.trim());
}

/** The command of the printed cron line (after the five time fields and the user). */
function cronCommand(out: string): string {
  const field = "[0-9*/,-]+";
  const re = new RegExp(`^(?:${field} ){4}${field}\\s+\\S+\\s+(.+)$`);
  const lines = printed(out, " --quiet").map((l) => re.exec(l)?.[1]).filter((c) => c !== undefined);
  expect(lines.length).toBe(1);
  return lines[0]!;
}

function onePrinted(out: string, needle: string): string {
  const lines = printed(out, needle);
  expect({ needle, lines: lines.length }).toEqual({ needle, lines: 1 });
  return lines[0]!;
}

/**
 * Run a printed line the way the person reading it would: pasted into a shell. That is the
 * point of this test, so here (and only here) a command is a shell string.
 */
async function sh(line: string) {
  const r = await spawner.run(["/bin/sh", "-c", line], { captureStdout: true, timeoutMs: 60_000, stderrLines: 40, env: { ...process.env, NO_COLOR: "1" } });
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderrTail.join("\n") };
}

async function shOk(line: string) {
  const r = await sh(line);
  expect({ line, code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ line, code: 0, stderr: "" });
  return r;
}

describe("shoot init server", () => {
  test("writes a valid commented config (0600) and backup_dir (0700), refuses to overwrite, writes systemd units", async () => {
    const d = path.join(tmp, "server1");
    const cfg = path.join(d, "etc/shoot.toml");
    const backup = path.join(d, "backup");
    const units = path.join(d, "units");
    fs.mkdirSync(path.join(d, "data"), { recursive: true });
    const args = ["init", "server", "--config", cfg, "--dir", backup, "--sources", path.join(d, "data"), "--systemd", units, "--bin", "/opt/shoot/shoot"];
    const r = await runShoot(args);
    expect(r.code).toBe(0);
    const text = fs.readFileSync(cfg, "utf8");
    expect(mode(cfg)).toBe(0o600);
    expect(mode(path.dirname(cfg))).toBe(0o700);
    expect(mode(backup)).toBe(0o700);
    expectEveryKey(text, ["server", "monitor", "mail"]);
    expect(text).toContain(`backup_dir = ${JSON.stringify(backup)}`);
    expect(text).toMatch(/^# \[mail\]$/m);
    const check = await runShoot(["check-config", "--config", cfg]);
    expect({ code: check.code, first: check.stdout.split("\n")[0] }).toEqual({ code: 0, first: `${cfg}: valid ([server])` });
    // what the file resolves to: the keys init set, and the defaults it left commented out
    expect(check.stdout).toContain(`\n[server]\nname = ${JSON.stringify(sanitizeHostname(os.hostname()))}\n`);
    expect(check.stdout).toContain(`\nbackup_dir = ${JSON.stringify(backup)}\n`);
    expect(check.stdout).toContain('\nmax_runtime = "6h"\n');
    expect(check.stdout).not.toContain("warning:");
    // a source that goes away is pointed out, as init pointed it out
    fs.rmSync(path.join(d, "data"), { recursive: true });
    const gone = await runShoot(["check-config", "--config", cfg]);
    expect(gone.code).toBe(0);
    expect(gone.stdout).toContain(`warning: the source ${path.join(d, "data")} does not exist (yet): a run fails with 20 SOURCE_MISSING until it does`);
    fs.mkdirSync(path.join(d, "data"));

    // --name is what the archives and the reports go by, and what init says it set up
    const named = await runShoot(["init", "server", "--name", "web1", "--config", path.join(d, "named.toml"), "--dir", backup, "--sources", path.join(d, "data")]);
    expect(named.code).toBe(0);
    expect(named.stdout).toStartWith(`Wrote ${path.join(d, "named.toml")} (mode 0600): [server] web1, backing up ${path.join(d, "data")} into ${backup}.`);

    // the next steps name the cron line and the units written
    expect(r.stdout).toContain(`15 2 * * *  root  /opt/shoot/shoot wrapper --config ${cfg} --quiet`);
    const service = fs.readFileSync(path.join(units, "shoot-server.service"), "utf8");
    const timer = fs.readFileSync(path.join(units, "shoot-server.timer"), "utf8");
    expect(service).toContain("Type=oneshot");
    expect(service).toContain(`ExecStart=/opt/shoot/shoot wrapper --config ${cfg} --quiet`);
    // backup_dir stays writable under the hardening
    expect(service).toContain(`ReadWritePaths=-${backup}`);
    expect(service).not.toContain("ProtectSystem=strict");
    expect(timer).toMatch(/^OnCalendar=\S+/m);
    expect(timer).toContain("WantedBy=timers.target");
    expect(r.stdout).toContain(path.join(units, "shoot-server.timer"));

    // an existing file is never overwritten without --force
    fs.appendFileSync(cfg, "# edited by hand\n");
    const again = await runShoot(args);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`${cfg}, ${path.join(units, "shoot-server.service")}, ${path.join(units, "shoot-server.timer")} exist already`);
    expect(again.stderr).toContain("--force");
    expect(fs.readFileSync(cfg, "utf8")).toEndWith("# edited by hand\n");

    const forced = await runShoot([...args, "--force", "--name", "web7"]);
    expect(forced.code).toBe(0);
    expect(fs.readFileSync(cfg, "utf8")).toContain('name = "web7"');
    expect(mode(cfg)).toBe(0o600);
  }, T);

  test("wrong use is a usage error that names the problem", async () => {
    const cfg = path.join(tmp, "usage/shoot.toml");
    const cases: Array<[string[], string]> = [
      [["init"], "init needs the role"],
      [["init", "backup", "--config", cfg], 'unknown role "backup"'],
      [["init", "server", "--config", cfg, "--remote", "root@h:/x"], "--remote is not for shoot init server"],
      [["init", "client", "--config", cfg, "--port", "70000"], "--port 70000"],
      [["init", "client", "--config", cfg, "--remote", "web1:relative"], "--remote"],
      [["init", "client", "--config", cfg, "--remote", "web1.example.com:/var/backups/shoot"], '--remote "web1.example.com:/var/backups/shoot": name the user the key logs in as, e.g. root@web1.example.com:/var/backups/shoot'],
      [["init", "server", "--config", cfg, "--name", "-bad name"], "--name"],
    ];
    for (const [args, message] of cases) {
      const r = await runShoot(args);
      expect({ args, code: r.code, has: r.stderr.includes(message) }).toEqual({ args, code: 2, has: true });
    }
    expect(fs.existsSync(cfg)).toBe(false);
  }, T);
});

describe("shoot init client", () => {
  test("writes a valid config (0600) and dest_dir (0700), prints the key and authorized_keys steps, writes units", async () => {
    const d = path.join(tmp, "client1");
    const cfg = path.join(d, "etc/shoot.toml");
    const dest = path.join(d, "dest");
    const units = path.join(d, "units");
    const r = await runShoot(["init", "client", "--config", cfg, "--dir", dest, "--remote", "root@web1.example.com:/var/backups/shoot", "--port", "2222", "--systemd", units, "--bin", "/opt/shoot/shoot"]);
    expect(r.code).toBe(0);
    const text = fs.readFileSync(cfg, "utf8");
    expect(mode(cfg)).toBe(0o600);
    expect(mode(dest)).toBe(0o700);
    expectEveryKey(text, ["client", "client.source", "monitor", "mail"]);
    const check = await runShoot(["check-config", "--config", cfg, "--json"]);
    expect(check.code).toBe(0);
    const resolved = JSON.parse(check.stdout);
    expect(resolved.client).toMatchObject({
      dest_dir: dest,
      known_hosts: path.join(d, "etc/known_hosts"),
      sources: [{ name: "web1", remote: "root@web1.example.com:/var/backups/shoot", port: 2222, identity: path.join(d, "etc/id_ed25519") }],
    });

    expect(onePrinted(r.stdout, "ssh-keygen -t")).toBe(`ssh-keygen -t ed25519 -N '' -C shoot@${sanitizeHostname(os.hostname())} -f ${path.join(d, "etc/id_ed25519")}`);
    expect(onePrinted(r.stdout, "restrict ssh-")).toMatch(/^command="\/opt\/shoot\/shoot serve --read-only \/var\/backups\/shoot",restrict ssh-ed25519 AAAA… shoot@\S+$/);
    expect(onePrinted(r.stdout, "ssh-keyscan")).toBe(`ssh-keyscan -p 2222 -t ed25519 web1.example.com > ${path.join(d, "etc/web1.hostkey")}`);
    expect(r.stdout).toContain("PermitRootLogin forced-commands-only");
    expect(r.stdout).toContain(`30 5 * * *  root  /opt/shoot/shoot client --config ${cfg} --quiet`);
    const service = fs.readFileSync(path.join(units, "shoot-client.service"), "utf8");
    expect(service).toContain("Type=oneshot");
    expect(service).toContain(`ExecStart=/opt/shoot/shoot client --config ${cfg} --quiet`);
    expect(service).toContain(`ReadWritePaths=-${dest}`);
    expect(fs.existsSync(path.join(units, "shoot-client.timer"))).toBe(true);
  }, T);
});

describe("the printed steps, followed as written on localhost", () => {
  let sshd: SshServer | undefined;
  afterAll(async () => {
    await sshd?.stop();
  }, 30_000);

  test("give a server whose wrapper ends golden and a backup host that pulls over ssh through the restricted key", async () => {
    requireTool("rsync");
    requireTool("ssh"); // ssh-keyscan comes with it
    const d = path.join(tmp, "pair");
    const data = path.join(d, "data");
    writeTree(data, { "etc/hosts": "127.0.0.1 localhost\n", "home/ann/notes.txt": "notes\n".repeat(50), "empty/": null });
    // From source there is no binary to name: a two-line shim stands where it would be installed.
    // A built binary ($SHOOT_BIN) names itself, which is what users see.
    const binArgs: string[] = [];
    if (!process.env.SHOOT_BIN) {
      const shim = path.join(d, "bin/shoot");
      fs.mkdirSync(path.dirname(shim), { recursive: true });
      fs.writeFileSync(shim, `#!/bin/sh\nexec '${process.execPath}' '${path.join(ROOT, "src/main.ts")}' "$@"\n`, { mode: 0o755 });
      binArgs.push("--bin", shim);
    }

    // --- the server ---
    const scfg = path.join(d, "server/shoot.toml");
    const backup = path.join(d, "server/backups");
    const s = await runShoot(["init", "server", "--config", scfg, "--dir", backup, "--sources", data, ...binArgs]);
    expect(s.code).toBe(0);
    await shOk(onePrinted(s.stdout, " check-config --config "));
    const cron = cronCommand(s.stdout);
    await shOk(cron);
    const serverFinal = statusRecords(path.join(backup, "server.status")).at(-1)!;
    expect({ role: serverFinal.role, code: serverFinal.code }).toEqual({ role: "wrapper", code: 30 });

    // --- the backup host, pulling over ssh ---
    sshd = await startSshd();
    const ccfg = path.join(d, "client/shoot.toml");
    const dest = path.join(d, "client/copies");
    const clientArgs = ["init", "client", "--config", ccfg, "--dir", dest, "--remote", `${sshd.user}@127.0.0.1:${backup}`, "--port", String(sshd.port), ...binArgs];
    const c1 = await runShoot(clientArgs);
    expect(c1.code).toBe(0);
    // step: the key pair
    await shOk(onePrinted(c1.stdout, "ssh-keygen -t ed25519"));
    // step: the authorized_keys line, built by the printed command now that the key exists
    const built = (await shOk(onePrinted(c1.stdout, "echo "))).stdout.trim();
    // running init again shows the same line with the key filled in
    const c2 = await runShoot([...clientArgs, "--force"]);
    expect(c2.code).toBe(0);
    expect(printed(c2.stdout, "ssh-keygen -t")).toEqual([]);
    const line = onePrinted(c2.stdout, "restrict ssh-");
    expect(line).toBe(built);
    expect(line).toStartWith('command="');
    expect(line).toContain(`serve --read-only ${backup}",restrict ssh-ed25519 AAAA`);
    sshd.authorize(line);
    // step: the host key, its fingerprint checked against the server's own key file
    await shOk(onePrinted(c2.stdout, "ssh-keyscan"));
    const fingerprint = (await shOk(onePrinted(c2.stdout, "ssh-keygen -lf"))).stdout.split(/\s+/)[1];
    const truth = (await shOk(`ssh-keygen -lf ${path.join(sshd.dir, "host_ed25519.pub")}`)).stdout.split(/\s+/)[1];
    expect(fingerprint).toBe(truth!);
    await shOk(onePrinted(c2.stdout, ">> "));
    // step: check and pull, then the cron line
    await shOk(onePrinted(c2.stdout, " check-config --config "));
    const byHand = printed(c2.stdout, " client --config ").filter((l) => !l.includes("--quiet"));
    expect(byHand.length).toBe(1);
    await shOk(byHand[0]!);
    const clientFinal = statusRecords(path.join(dest, "client.status")).at(-1)!;
    expect(clientFinal.code).toBe(30);
    const source = fs.readdirSync(dest).filter((n) => fs.statSync(path.join(dest, n)).isDirectory());
    expect(source).toEqual(["127.0.0.1"]);
    expect(md5sumCheck(path.join(dest, source[0]!))).toEqual([serverFinal.archive.file]);
    // the only key the client has is the one the printed line restricts to `shoot serve --read-only`
    const denied = await sh(`ssh -i ${path.join(d, "client/id_ed25519")} -p ${sshd.port} -o UserKnownHostsFile=${path.join(d, "client/known_hosts")} -o BatchMode=yes ${sshd.user}@127.0.0.1 id`);
    expect(denied.code).toBe(2);
    expect(denied.stderr).toContain("refused");

    // the cron lines once more: nothing changed, both end golden with 9
    await shOk(cron);
    expect(statusRecords(path.join(backup, "server.status")).at(-1)!.code).toBe(9);
    await shOk(cronCommand(c2.stdout));
    expect(statusRecords(path.join(dest, "client.status")).at(-1)!.code).toBe(9);
  }, 120_000);
});
