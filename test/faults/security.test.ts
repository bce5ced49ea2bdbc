/**
 * The trust boundary, tested: each claim in docs/security.md that a test can back is backed here
 * (or in the e2e file docs/security.md names). A compromised backup host holding the restricted
 * key; a compromised server writing whatever it likes into server.status and its backup
 * directory; secrets watched for in every process's arguments and environment while real runs
 * go on, and in every file and message they leave; modes of everything shoot creates under a
 * umask that would let the world read it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot, shootArgv, startShoot } from "../helpers/cli.ts";
import { listTree, runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { serverFixture, statusRecords, type ServerFixture } from "../helpers/fixture.ts";
import {
  PullLane, addSshdConfig, boundedExit, caseSeed, cmdline, descendants, faultFile, faultSshd, goldenWrapper, injected,
  seedTree, snapshotGood,
} from "../helpers/faults.ts";
import { seeded } from "../helpers/random.ts";
import { writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { relayFixture } from "../helpers/smtp.ts";
import type { KeyPair } from "../helpers/sshd.ts";
import { archiveName } from "../../src/core/state/naming.ts";
import { PASSWORD_ENV } from "../../src/core/common/config.ts";
import { rshString, sshArgv } from "../../src/core/transfer/rsync.ts";
import { spawner } from "../../src/io/process.ts";

faultFile(import.meta.path);

const PASSWORD = `pw-${Math.floor(seeded(caseSeed("smtp password"))() * 1e12).toString(36)}-secret`;
const mail = relayFixture("shoot-fault-sec-mail-", PASSWORD);

const host = faultSshd("shoot-fault-sec-");
let ro: KeyPair;
let fx: ServerFixture;
const shQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

beforeAll(async () => {
  // sftp served to full-access keys, so that refusing it to the restricted key means something
  await addSshdConfig(host.sshd, "Subsystem sftp /usr/lib/openssh/sftp-server");
  fx = serverFixture("keep = 2");
  seedTree(fx.src, seeded(caseSeed("security tree")), 40, 1024 * 1024);
  ro = await host.sshd.newKey("restricted");
  const command = [...shootArgv(), "serve", "--read-only", fx.backup].map(shQuote).join(" ");
  host.sshd.authorize(`command="${command}",restrict ${ro.publicLine}`);
  await goldenWrapper(fx, "first backup");
}, 60_000);
afterAll(() => {
  fx?.cleanup();
});

function sshWith(key: string): string[] {
  return sshArgv({ connect_timeout: 10_000, accept_new_host_key: false, known_hosts: host.sshd.knownHosts }, { port: host.sshd.port, identity: key });
}

describe("a compromised backup host holding the restricted key", () => {
  test("cannot remove files on the server (rsync --remove-source-files), nor read a list of files named by the server's own files (--files-from)", async () => {
    const archive = statusRecords(path.join(fx.backup, "server.status")).filter((r) => r.archive).at(-1)!.archive.file as string;
    const into = path.join(host.base, "taken");
    fs.mkdirSync(into, { recursive: true });
    const attempts = [
      ["--remove-source-files", "--", `${host.sshd.user}@127.0.0.1:${fx.backup}/${archive}`, `${into}/`],
      ["--files-from=:/etc/passwd", `${host.sshd.user}@127.0.0.1:/`, `${into}/`],
    ];
    for (const args of attempts) {
      const r = await spawner.run(["rsync", "-t", "-e", rshString(sshWith(ro.key)), ...args], { timeoutMs: 60_000, stderrLines: 20 });
      injected("restricted key misused");
      expect({ args: args[0], refused: r.exitCode !== 0 }).toEqual({ args: args[0], refused: true });
      expect(r.stderrTail.join("\n")).toContain("refused:");
    }
    expect(fs.existsSync(path.join(fx.backup, archive))).toBe(true);
    expect(fs.readdirSync(into)).toEqual([]);
  }, 60_000);

  test("cannot use sftp, forward a connection (ssh -W) or get a terminal, which the full-access key can", async () => {
    const target = `127.0.0.1:${host.sshd.port}`;
    const sftpBatch = path.join(host.base, "sftp.batch");
    fs.writeFileSync(sftpBatch, `get ${fx.config} ${path.join(host.base, "sftp-got")}\n`);
    const sftp = (key: string) => spawner.run(["sftp", "-b", sftpBatch, "-i", key, "-P", String(host.sshd.port), "-o", `UserKnownHostsFile=${host.sshd.knownHosts}`, "-o", "BatchMode=yes", `${host.sshd.user}@127.0.0.1`], { timeoutMs: 30_000, stderrLines: 20 });
    const forward = (key: string) => spawner.run([...sshWith(key), "-l", host.sshd.user, "-W", target, "127.0.0.1"], { timeoutMs: 30_000, captureStdout: true, stderrLines: 20 });
    const tty = (key: string) => spawner.run([...sshWith(key), "-tt", "-l", host.sshd.user, "127.0.0.1", "tty"], { timeoutMs: 30_000, captureStdout: true, stderrLines: 20 });
    // the full-access key: all three work, so the refusals below are the restricted key's doing
    expect((await sftp(host.sshd.userKey.key)).exitCode).toBe(0);
    fs.rmSync(path.join(host.base, "sftp-got"));
    expect((await forward(host.sshd.userKey.key)).stdout).toStartWith("SSH-2.0-");
    expect((await tty(host.sshd.userKey.key)).stdout).toMatch(/^\/dev\/pts\//);

    const s = await sftp(ro.key);
    expect(s.exitCode).not.toBe(0);
    expect(fs.existsSync(path.join(host.base, "sftp-got"))).toBe(false);
    const f = await forward(ro.key);
    expect({ exit: f.exitCode === 0, banner: f.stdout.includes("SSH-2.0") }).toEqual({ exit: false, banner: false });
    const t = await tty(ro.key);
    expect(t.stdout).not.toMatch(/\/dev\/pts\//);
    expect(t.exitCode).not.toBe(0);
    injected("restricted key misused", 3);
  }, 60_000);
});

describe("a compromised server", () => {
  test("hostile server.status and backup directories: nothing written outside dest_dir, nothing run, nothing bad kept", async () => {
    const root = path.join(host.base, "hostile");
    const canary = path.join(root, "canary");
    const dest = path.join(root, "client", "dest");
    const hostile: Array<{ name: string; archive?: Record<string, unknown>; prepare?: (dir: string, file: string) => void; final?: "NEW_ARCHIVE" | "SERVER_FAILED"; msg?: string }> = [
      { name: "subst", archive: { file: `$(touch ${canary})` } },
      { name: "backtick", archive: { file: `\`touch ${canary}\`.tar.gz` } },
      { name: "semicolon", archive: { file: `x-20260101-000000.tar.gz; touch ${canary}` } },
      { name: "newline", archive: { file: "x-20260101-000000.tar.gz\n-e touch" } },
      { name: "absolute", archive: { file: "/etc/passwd" } },
      { name: "updir", archive: { file: "../../../../etc/x-20260101-000000.tar.gz" } },
      { name: "staging", archive: { file: ".shoot-tmp-pull" } },
      { name: "md5", archive: { md5: `$(touch ${canary})` } },
      { name: "size", archive: { size: -1 } },
      { name: "hugesize", archive: { size: 1e300 } },
      // names of the right pattern, but what the server holds under them is not a plain file
      { name: "symlink", prepare: (dir, file) => { fs.rmSync(path.join(dir, file)); fs.symlinkSync("/etc/passwd", path.join(dir, file)); } },
      { name: "directory", prepare: (dir, file) => { fs.rmSync(path.join(dir, file)); fs.mkdirSync(path.join(dir, file)); } },
      { name: "md5names", prepare: (dir, file) => fs.writeFileSync(path.join(dir, `${file}.md5`), `${"0".repeat(32)}  ../../../etc/passwd\n`) },
      { name: "statuslink", prepare: (dir) => { fs.rmSync(path.join(dir, "server.status")); fs.symlinkSync("/etc/passwd", path.join(dir, "server.status")); } },
      { name: "escapes", final: "SERVER_FAILED", msg: "\u001b]0;owned\u0007\u001b[2J\u001b[31mred\r\nFAKE LINE: all is well\u0000" },
    ];
    const sources = [];
    for (const h of hostile) {
      const dir = path.join(root, h.name, "backup");
      const file = archiveName(h.name, new Date(), "gzip");
      const info = await writeArchive(dir, file, new Uint8Array(4096).fill(7));
      writeServerStatus(dir, h.final === "SERVER_FAILED" ? undefined : info, { final: h.final ?? "NEW_ARCHIVE", msg: h.msg, archive: h.archive });
      h.prepare?.(dir, file);
      sources.push(sshSource(host.sshd, h.name, dir));
    }
    const config = writeClientConfig(path.join(root, "client", "client.toml"), { dest, concurrency: 4, known_hosts: host.sshd.knownHosts, sources });
    const outside = () => listTree(root).filter((p) => !p.startsWith("client/"));
    const before = outside();
    injected("hostile server.status", hostile.length);
    const r = await runClient(config, dest, [], 90_000);
    console.log(`hostile servers: ${JSON.stringify(r.codes)}`);
    for (const h of hostile) expect({ name: h.name, refused: r.codes[h.name] !== 0 && r.codes[h.name] !== undefined }).toEqual({ name: h.name, refused: true });
    expect(fs.existsSync(canary)).toBe(false);
    expect(outside()).toEqual(before);
    // dest_dir holds shoot's own files and empty source directories: no copy of anything
    expect(listTree(dest)).toEqual(["client.status"]);
    // what the server said reaches the terminal without its control characters
    expect(r.stdout + r.stderr).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
  }, 120_000);

  test("what it CAN do: serve `keep` new archives of its choosing, which push the oldest good copy out", async () => {
    const lane = new PullLane(host.base, "pushed", seeded(caseSeed("pushed out")), { sshd: host.sshd });
    await lane.publish();
    await lane.normalRun("the good copy");
    const good = snapshotGood(lane.copies)!;
    // valid-looking archives with true checksums: the backup host cannot tell junk from data
    for (let i = 0; i < 2; i++) {
      await lane.publish(1024);
      await lane.normalRun(`junk ${i}`);
    }
    expect(fs.existsSync(path.join(lane.copies, good.name))).toBe(false);
    injected("compromised server rotates good copies out", 0);
  }, 60_000);
});

describe("secrets", () => {
  /** Run a shoot command, watching the arguments and environment of it and every child until it ends. */
  async function watched(args: string[], env: Record<string, string | undefined>, leaks: string[], seen: Set<string>): Promise<number> {
    const proc = startShoot(args, { env });
    const look = () => {
      const own = cmdline(proc.pid);
      for (const pid of [proc.pid, ...descendants(proc.pid)]) {
        const cmd = cmdline(pid);
        if (!cmd) continue;
        // a child caught between fork and exec still shows its parent's image (arguments and environment)
        if (pid !== proc.pid && cmd === own) continue;
        seen.add(cmd.split(" ")[0]!.split("/").pop()!);
        if (cmd.includes(PASSWORD)) leaks.push(`argv of ${cmd.slice(0, 80)}`);
        // the shoot process itself was given the password in its environment; its children must not inherit it
        if (pid === proc.pid) continue;
        try {
          if (fs.readFileSync(`/proc/${pid}/environ`, "utf8").includes(PASSWORD)) leaks.push(`environment of ${cmd.slice(0, 80)}`);
        } catch {
          // ended meanwhile
        }
      }
    };
    while (proc.exitCode === null) {
      look();
      await Bun.sleep(3);
    }
    return await boundedExit(proc, args[0]!);
  }

  test("the SMTP password never appears in any process's arguments, a child's environment, a status file, a report or a spool", async () => {
    const relay = await mail.relay();
    const mailSection = (url: string, viaFile: boolean) =>
      `\n[mail]\nto = ["ops@example.com"]\nfrom = "shoot@example.com"\nsmtp = ${JSON.stringify(url)}\nuser = "shoot"\n${viaFile ? `password_file = ${JSON.stringify(mail.pwFile)}\n` : ""}ca_file = ${JSON.stringify(mail.cert.certFile)}\ntimeout = "5s"\nwhen = "always"\n`;
    const sec = serverFixture("keep = 2");
    try {
      seedTree(sec.src, seeded(caseSeed("secrets tree")), 40, 2 * 1024 * 1024);
      fs.appendFileSync(sec.config, mailSection(relay.url, true));
      const dest = path.join(sec.root, "dest");
      const clientConfig = writeClientConfig(path.join(sec.root, "client.toml"), { dest, known_hosts: host.sshd.knownHosts, sources: [sshSource(host.sshd, "web1", sec.backup, { bwlimit: "4MiB" })] });
      fs.appendFileSync(clientConfig, mailSection(relay.url, false));
      const leaks: string[] = [];
      const seen = new Set<string>();
      // the wrapper reads the password from its file; the client gets it from the environment
      expect(await watched(["wrapper", "--config", sec.config], { [PASSWORD_ENV]: undefined }, leaks, seen)).toBe(0);
      expect(await watched(["client", "--config", clientConfig], { [PASSWORD_ENV]: PASSWORD }, leaks, seen)).toBe(0);
      // a relay that refuses the login: the error says so without repeating what was tried
      fs.writeFileSync(clientConfig, fs.readFileSync(clientConfig, "utf8"));
      const wrongPw = `${PASSWORD}-wrong`;
      const wrong = await runShoot(["client", "--config", clientConfig], { env: { [PASSWORD_ENV]: wrongPw } });
      expect(wrong.code).toBe(0);
      injected("secret watched for", 3);
      console.log(`secrets: watched ${[...seen].sort().join(", ")}`);
      for (const p of ["bun", "rsync", "ssh"]) expect(seen.has(p) || seen.has(`${p}.exe`) || [...seen].some((s) => s.startsWith(p))).toBe(true);
      expect(leaks).toEqual([]);
      expect(relay.received.length).toBeGreaterThanOrEqual(2);
      const everything = [
        ...relay.received.map((m) => `${m.subject}\n${m.text}`),
        wrong.stdout, wrong.stderr,
        ...[sec.backup, dest].flatMap((d) => listTree(d).map((p) => fs.readFileSync(path.join(d, p), "latin1"))),
      ].join("\n");
      expect(everything.includes(PASSWORD)).toBe(false);
      expect(everything.includes(wrongPw)).toBe(false);
      expect(everything).toMatch(/auth|login|535/i);
    } finally {
      sec.cleanup();
    }
  }, 120_000);
});

describe("permissions", () => {
  /** Modes of everything under `dirs` that lets group or others in; `kinds` collects what was seen. */
  function looseModes(dirs: string[], kinds: Set<string>): string[] {
    const loose: string[] = [];
    for (const dir of dirs) {
      let names: string[];
      try {
        names = ["", ...fs.readdirSync(dir, { recursive: true }).map(String)];
      } catch {
        continue;
      }
      for (const rel of names) {
        const st = fs.lstatSync(path.join(dir, rel), { throwIfNoEntry: false });
        if (!st || st.isSymbolicLink()) continue;
        kinds.add(path.basename(rel).replace(/^(\.shoot-tmp-)?.*\.(tar\.gz|md5|list)$/, "$1*.$2").replace(/^\..*\.tar\.gz\.\w{6}$/, "<rsync temporary>").replace(/^\d{8}T.*\.mail$/, "<spooled report>"));
        if ((st.mode & 0o077) !== 0) loose.push(`${path.join(dir, rel)} ${(st.mode & 0o777).toString(8)}`);
      }
    }
    return loose;
  }

  /** Run shoot, looking at the modes under `dirs` every few milliseconds until it ends. */
  async function watchModes(args: string[], dirs: string[], kinds: Set<string>): Promise<string[]> {
    const proc = startShoot(args);
    const loose = new Set<string>();
    while (proc.exitCode === null) {
      for (const l of looseModes(dirs, kinds)) loose.add(l);
      await Bun.sleep(5);
    }
    expect(await boundedExit(proc, args[0]!)).toBe(0);
    for (const l of looseModes(dirs, kinds)) loose.add(l);
    return [...loose];
  }

  test("under umask 000, everything shoot creates on either side is readable by its owner only, also while it runs", async () => {
    const perm = serverFixture("keep = 2");
    const old = process.umask(0o000);
    try {
      seedTree(perm.src, seeded(caseSeed("permissions tree")), 30, 3 * 1024 * 1024);
      // a relay that is down: the report waits in the spool, which must not be readable either
      fs.appendFileSync(perm.config, `\n[mail]\nto = ["ops@example.com"]\nfrom = "shoot@example.com"\nsmtp = "smtp://127.0.0.1:9"\ntimeout = "2s"\nwhen = "always"\n`);
      const dest = path.join(perm.root, "dest");
      const cfg = writeClientConfig(path.join(perm.root, "client.toml"), { dest, known_hosts: host.sshd.knownHosts, sources: [sshSource(host.sshd, "web1", perm.backup, { bwlimit: "4MiB" })] });
      const kinds = new Set<string>();
      const loose = [
        ...(await watchModes(["wrapper", "--config", perm.config, "--quiet"], [perm.backup], kinds)),
        ...(await watchModes(["client", "--config", cfg, "--quiet"], [dest], kinds)),
      ];
      console.log(`permissions: seen ${[...kinds].sort().join(", ")}`);
      for (const k of [".shoot-tmp-*.tar.gz", ".shoot-tmp-pull", ".shoot-partial", "<rsync temporary>", "<spooled report>", "*.tar.gz", "*.md5", "*.list", "server.status", "client.status"]) expect(kinds).toContain(k);
      expect(loose).toEqual([]);
      injected("world-writable umask", 1);
    } finally {
      process.umask(old);
      perm.cleanup();
    }
  }, 120_000);
});
