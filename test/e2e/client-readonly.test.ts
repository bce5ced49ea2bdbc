/**
 * The backup host's restricted key: authorized_keys forces `shoot serve --read-only DIR` with
 * `restrict`. `shoot client` pulls through it; writing, reading outside DIR (directly or through
 * a symlink) and running anything else are refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot, shootArgv } from "../helpers/cli.ts";
import { md5sumCheck, runClient, writeClientConfig } from "../helpers/client.ts";
import { serverFixture, statusRecords, type ServerFixture } from "../helpers/fixture.ts";
import { startSshd, type KeyPair, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { spawner } from "../../src/io/process.ts";
import { rshString, sshArgv } from "../../src/core/transfer/rsync.ts";

const T = 120_000;
let sshd: SshServer;
let fx: ServerFixture;
let ro: KeyPair;

const shQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

beforeAll(async () => {
  requireTool("rsync");
  sshd = await startSshd();
  fx = serverFixture();
  ro = await sshd.newKey("readonly");
  const command = [...shootArgv(), "serve", "--read-only", fx.backup].map(shQuote).join(" ");
  sshd.authorize(`command="${command}",restrict ${ro.publicLine}`);
}, 30_000);
afterAll(async () => {
  await sshd?.stop();
  fx?.cleanup();
}, 30_000);

/** ssh with the read-only key, the way shoot client calls it. */
function roSsh(): string[] {
  return sshArgv({ connect_timeout: 10_000, accept_new_host_key: false, known_hosts: sshd.knownHosts }, { port: sshd.port, identity: ro.key });
}

async function rsyncWithKey(args: string[]) {
  return await spawner.run(["rsync", "-t", "-e", rshString(roSsh()), ...args], { timeoutMs: 60_000, stderrLines: 20 });
}

describe("the read-only key (shoot serve --read-only)", () => {
  test("shoot client pulls through it", async () => {
    const w = await runShoot(["wrapper", "--config", fx.config]);
    expect(w.code).toBe(0);
    const final = statusRecords(path.join(fx.backup, "server.status")).filter((r) => r.archive).at(-1)!;
    const dest = path.join(fx.root, "dest");
    const cfg = writeClientConfig(path.join(fx.root, "client.toml"), {
      dest, known_hosts: sshd.knownHosts,
      sources: [{ name: "web1", remote: `${sshd.user}@127.0.0.1:${fx.backup}`, port: sshd.port, identity: ro.key }],
    });
    const r = await runClient(cfg, dest);
    expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { web1: 30 } });
    expect(md5sumCheck(path.join(dest, "web1"))).toEqual([final.archive.file]);
  }, T);

  test("refuses to write into the backup directory", async () => {
    const local = path.join(fx.root, "evil.tar.gz");
    fs.writeFileSync(local, "not a backup");
    const r = await rsyncWithKey(["--", local, `${sshd.user}@127.0.0.1:${fx.backup}/`]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderrTail.join("\n")).toContain("refused: writing is not allowed");
    expect(fs.existsSync(path.join(fx.backup, "evil.tar.gz"))).toBe(false);
  }, T);

  test("refuses to read outside the backup directory, also through a symlink inside it", async () => {
    const into = path.join(fx.root, "stolen");
    fs.mkdirSync(into, { recursive: true });
    fs.symlinkSync("/etc", path.join(fx.backup, "etc-link"));
    try {
      for (const p of ["/etc/hostname", `${fx.backup}/../shoot.toml`, `${fx.backup}/etc-link/hostname`]) {
        const r = await rsyncWithKey(["--", `${sshd.user}@127.0.0.1:${p}`, `${into}/`]);
        expect({ p, exit: r.exitCode === 0 }).toEqual({ p, exit: false });
        expect(r.stderrTail.join("\n")).toMatch(/refused: .*(outside|"\.\." is not allowed)/);
      }
      // asking rsync to follow symlinks is refused as an option
      const l = await rsyncWithKey(["-L", "--", `${sshd.user}@127.0.0.1:${fx.backup}/etc-link`, `${into}/`]);
      expect(l.exitCode).not.toBe(0);
      expect(l.stderrTail.join("\n")).toContain("option -L is not allowed");
    } finally {
      fs.rmSync(path.join(fx.backup, "etc-link"));
    }
    expect(fs.readdirSync(into)).toEqual([]);
  }, T);

  test("refuses anything that is not an rsync read: a shell command, an interactive login", async () => {
    for (const cmd of [["cat", "/etc/passwd"], ["rsync --server --sender -e.LsfxCIvu . /etc/passwd; id"]]) {
      const r = await spawner.run([...roSsh(), "-l", sshd.user, "127.0.0.1", ...cmd], { timeoutMs: 60_000, captureStdout: true });
      expect(r.exitCode).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderrTail.join("\n")).toContain("refused:");
    }
    const login = await spawner.run([...roSsh(), "-l", sshd.user, "127.0.0.1"], { timeoutMs: 60_000, captureStdout: true });
    expect(login.exitCode).toBe(2);
    expect(login.stderrTail.join("\n")).toContain("refused: no command");
  }, T);
});
