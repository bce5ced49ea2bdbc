/**
 * Directories that other users may write in are refused before anything is done there, as
 * sshd's StrictModes refuses them, with the chmod or chown that fixes it (16 UNSAFE_PERMISSIONS):
 * backup_dir (wrapper and server), dest_dir and a source's directory (client), the mail spool
 * (every run that mails). An exposed password_file fails check-config and is a warning in the
 * report of every run that mails.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { listTree, runClient, writeClientConfig } from "../helpers/client.ts";
import { archivesIn, serverFixture, tempDir } from "../helpers/fixture.ts";
import { randomBytes, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { startRelay } from "../helpers/smtp.ts";
import { archiveName } from "../../src/core/state/naming.ts";

const T = 60_000;
const base = tempDir("shoot-strict-e2e-");
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

async function crafted(name: string): Promise<{ server: string; dest: string; config: string }> {
  const server = path.join(base, name, "server");
  const info = await writeArchive(server, archiveName(name, new Date(Date.now() - 60_000), "gzip"), randomBytes(4096));
  writeServerStatus(server, info, { final: "FIRST_ARCHIVE" });
  const dest = path.join(base, name, "dest");
  const config = writeClientConfig(path.join(base, name, "client.toml"), { dest, sources: [{ name, remote: server }] });
  return { server, dest, config };
}

describe("the client", () => {
  test("dest_dir writable by others: refused, nothing pulled; after the chmod it names, the pull goes on", async () => {
    const c = await crafted("loose");
    fs.mkdirSync(c.dest, { mode: 0o700 });
    fs.chmodSync(c.dest, 0o777);
    const r = await runClient(c.config, c.dest);
    expect(r.code).toBe(16);
    expect(r.outcome.message).toBe(`dest_dir ${c.dest} can be written by its group and all other users (mode 0777): run chmod go-w ${c.dest}`);
    expect(listTree(c.dest)).toEqual([]);
    const fix = Bun.spawnSync(["sh", "-c", r.outcome.message.replace(/^.*: run /, "")]);
    expect(fix.exitCode).toBe(0);
    expect((await runClient(c.config, c.dest)).codes).toEqual({ loose: 30 });
  }, T);

  test("a source's directory writable by its group: that source is refused, nothing pulled into it", async () => {
    const c = await crafted("groupw");
    fs.mkdirSync(path.join(c.dest, "groupw"), { recursive: true, mode: 0o700 });
    fs.chmodSync(path.join(c.dest, "groupw"), 0o770);
    const r = await runClient(c.config, c.dest);
    expect(r.codes).toEqual({ groupw: 16 });
    expect(r.outcome.sources[0]!.message).toContain("run chmod go-w");
    expect(listTree(c.dest)).toEqual(["client.status"]);
  }, T);

  test("dest_dir belonging to another user: refused with the chown that fixes it", async () => {
    if (process.getuid?.() !== 0) throw new Error("this test gives a directory to another user and must run as root (CI runs as root)");
    const c = await crafted("owner");
    fs.mkdirSync(c.dest, { mode: 0o700 });
    fs.chownSync(c.dest, 65534, 65534);
    const r = await runClient(c.config, c.dest);
    expect(r.code).toBe(16);
    expect(r.outcome.message).toContain(`belongs to nobody, not to root, who runs shoot: run chown root ${c.dest}`);
  }, T);
});

describe("the server", () => {
  test("backup_dir writable by its group: the wrapper and the server refuse it, no archive is made", async () => {
    const fx = serverFixture();
    try {
      fs.chmodSync(fx.backup, 0o775);
      for (const cmd of ["wrapper", "server"]) {
        const r = await runShoot([cmd, "--config", fx.config]);
        expect({ cmd, code: r.code }).toEqual({ cmd, code: 16 });
        expect(r.stdout).toContain(`backup_dir ${fx.backup} can be written by its group (mode 0775): run chmod go-w ${fx.backup}`);
      }
      expect(fs.readdirSync(fx.backup)).toEqual([]);
      fs.chmodSync(fx.backup, 0o755);
      expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
      expect(archivesIn(fx.backup)).toHaveLength(1);
    } finally {
      fx.cleanup();
    }
  }, T);
});

describe("mail", () => {
  test("a spool writable by others: the run is refused and its report goes straight to the relay, the spool untouched", async () => {
    const c = await crafted("spool");
    const relay = await startRelay({ tls: "none" });
    try {
      const spool = path.join(base, "spool", "loose-spool");
      fs.mkdirSync(spool, { recursive: true, mode: 0o700 });
      fs.chmodSync(spool, 0o777);
      fs.appendFileSync(c.config, `\n[mail]\nto = ["ops@example.com"]\nfrom = "shoot@example.com"\nsmtp = "${relay.url}"\nwhen = "failure"\ntimeout = "5s"\nspool_dir = "${spool}"\n`);
      const r = await runShoot(["client", "--config", c.config]);
      expect(r.code).toBe(16);
      expect(fs.existsSync(c.dest)).toBe(false);
      expect(fs.readdirSync(spool)).toEqual([]);
      expect(relay.received).toHaveLength(1);
      expect(relay.received[0]!.subject).toContain("16 UNSAFE_PERMISSIONS");
      expect(relay.received[0]!.text).toContain(`the mail spool ${spool} can be written by its group and all other users (mode 0777): run chmod go-w ${spool}`);
      const check = await runShoot(["check-config", "--config", c.config]);
      expect(check.code).toBe(16);
      expect(check.stderr).toContain(`the mail spool ${spool} can be written`);
    } finally {
      await relay.close();
    }
  }, T);

  test("password_file readable by others: check-config fails with the chmod, a run that mails warns in its report", async () => {
    const c = await crafted("pw");
    const relay = await startRelay({ tls: "none" });
    try {
      const pw = path.join(base, "pw", "smtp.pass");
      fs.writeFileSync(pw, "secret\n", { mode: 0o644 });
      fs.chmodSync(pw, 0o644);
      fs.appendFileSync(c.config, `\n[mail]\nto = ["ops@example.com"]\nfrom = "shoot@example.com"\nsmtp = "${relay.url}"\nwhen = "always"\ntimeout = "5s"\npassword_file = "${pw}"\n`);
      const check = await runShoot(["check-config", "--config", c.config]);
      expect(check.code).toBe(16);
      expect(check.stderr).toContain(`password_file ${pw} can be read or written by its group and all other users (mode 0644): run chmod 600 ${pw}`);
      const r = await runShoot(["client", "--config", c.config]);
      expect(r.code).toBe(0);
      expect(relay.received).toHaveLength(1);
      expect(relay.received[0]!.text).toContain(`73 PASSWORD_EXPOSED: password_file ${pw} can be read or written`);
      fs.chmodSync(pw, 0o600);
      expect((await runShoot(["check-config", "--config", c.config])).code).toBe(0);
    } finally {
      await relay.close();
    }
  }, T);
});
