/**
 * A real sshd for end-to-end tests: 127.0.0.1 only, a random free port, throwaway host and
 * user keys made with ssh-keygen in a temporary directory, its own sshd_config, run in the
 * foreground (-D -e) as a child of the test and stopped by its pid.
 *
 * Running as root, the sshd reads authorized_keys from the temporary directory
 * (AuthorizedKeysFile), so nothing in ~/.ssh is touched.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawner, type Child } from "../../src/io/process.ts";
import { freePort } from "../../src/io/net.ts";
export { freePort };
import { loopbackKnownHostsLine, loopbackSshdConfig } from "../../src/core/setup/sshd-config.ts";
import { requireTool } from "./tools.ts";

export interface KeyPair {
  /** Private key file. */
  key: string;
  /** The public key line ("ssh-ed25519 AAAA… comment"). */
  publicLine: string;
}

export interface SshServer {
  /** The address it listens on (127.0.0.1, or an address in a network namespace). */
  host: string;
  port: number;
  dir: string;
  /** The login name on the server (the user running the tests). */
  user: string;
  /** known_hosts holding this server's host key, for the client. */
  knownHosts: string;
  /** A key with full access (a plain authorized_keys line). */
  userKey: KeyPair;
  /** authorized_keys read by this sshd. */
  authorizedKeys: string;
  /** Make another key pair in the server's temporary directory. */
  newKey(name: string): Promise<KeyPair>;
  /** Append a line to authorized_keys (e.g. with a forced command). */
  authorize(line: string): void;
  /** Pids of the per-connection processes this sshd forked (to drop connections). */
  sessionPids(): number[];
  /** Lines sshd wrote to its standard error. */
  log: string[];
  pid: number;
  stop(): Promise<void>;
}


async function keygen(file: string, comment: string): Promise<KeyPair> {
  const r = await spawner.run([requireTool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file], { timeoutMs: 10_000 });
  if (r.exitCode !== 0) throw new Error(`ssh-keygen failed: ${r.stderrTail.join(" ")}`);
  return { key: file, publicLine: fs.readFileSync(`${file}.pub`, "utf8").trim() };
}

/** Direct children of `pid`, read from /proc. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, "utf8");
      // the command name is in parentheses and may hold spaces: the ppid follows the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

export interface SshdOptions {
  /** Run it inside this network namespace (`ip netns exec`), listening on `address` there. */
  netns?: string;
  address?: string;
  port?: number;
  /** sshd's MaxStartups (start:rate:full); the default here lets the suite's parallel clients in. */
  maxStartups?: string;
}

/** The loopback configuration, listening on `address` instead. */
function sshdConfigAt(address: string, text: string): string {
  return text.replace(/^ListenAddress 127\.0\.0\.1$/m, `ListenAddress ${address}`);
}

export async function startSshd(opts: SshdOptions = {}): Promise<SshServer> {
  const sshd = requireTool("sshd");
  requireTool("ssh");
  const address = opts.address ?? "127.0.0.1";
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-sshd-"));
  // sshd refuses to start without its privilege-separation directory
  fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const hostKey = await keygen(path.join(dir, "host_ed25519"), "shoot-test-host");
  const userKey = await keygen(path.join(dir, "user_ed25519"), "shoot-test-user");
  const authorizedKeys = path.join(dir, "authorized_keys");
  fs.writeFileSync(authorizedKeys, `${userKey.publicLine}\n`, { mode: 0o600 });
  // a namespace of the test's own has every port free
  const port = opts.port ?? (opts.netns ? 22 : await freePort());
  const config = path.join(dir, "sshd_config");
  fs.writeFileSync(config, sshdConfigAt(address, loopbackSshdConfig({
    port, hostKey: hostKey.key, pidFile: path.join(dir, "sshd.pid"), authorizedKeys, permitRootLogin: "prohibit-password",
    extra: [
      // the login shell still reads root's ~/.bashrc for a forced command; heavy start-up files
      // there (pyenv on these machines) cost seconds per connection, so mark the shell nested
      "SetEnv SHLVL=1",
      `MaxStartups ${opts.maxStartups ?? "50"}`,
      "LogLevel INFO",
    ],
  })));
  const knownHosts = path.join(dir, "known_hosts");
  // ssh looks a host on port 22 up by its bare name
  const line = loopbackKnownHostsLine(port, hostKey.publicLine).replace(`[127.0.0.1]:${port}`, port === 22 ? address : `[${address}]:${port}`);
  fs.writeFileSync(knownHosts, line);

  const log: string[] = [];
  let ready: () => void;
  const listening = new Promise<void>((r) => (ready = r));
  // `ip netns exec` execs sshd in the namespace: the pid is sshd's own
  const argv = [...(opts.netns ? [requireTool("ip"), "netns", "exec", opts.netns] : []), sshd, "-D", "-e", "-f", config];
  const child: Child = spawner.start(argv, {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    onStderrLine: (l) => {
      log.push(l);
      if (log.length > 2000) log.shift();
      if (l.includes(`Server listening on ${address}`)) ready();
    },
  });
  const ended = child.done.then((r) => {
    throw new Error(`sshd exited before it listened (${r.exitCode ?? r.signal}): ${log.join("\n")}`);
  });
  const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`sshd did not listen within 10 s: ${log.join("\n")}`)), 10_000));
  await Promise.race([listening, ended, timer]);
  ended.catch(() => {}); // from here on the end of sshd is awaited by stop()

  // the tests run as root (the sshd needs it); Bun may not resolve the name from the uid
  const user = process.getuid?.() === 0 ? "root" : os.userInfo().username;
  return {
    host: address,
    port,
    dir,
    user,
    knownHosts,
    userKey,
    authorizedKeys,
    log,
    pid: child.pid,
    newKey: (name) => keygen(path.join(dir, name), `shoot-test-${name}`),
    authorize(line) {
      fs.appendFileSync(authorizedKeys, `${line}\n`);
    },
    sessionPids: () => childPids(child.pid),
    async stop() {
      // sessions still open would outlive the listener; they are ours, forked by this sshd
      for (const p of childPids(child.pid)) {
        try {
          process.kill(p, "SIGKILL");
        } catch {
          // gone already
        }
      }
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await child.done.catch(() => undefined);
      clearTimeout(killer);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
