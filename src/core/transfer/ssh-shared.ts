/**
 * One ssh connection for a source's transfers. A pull makes three: server.status, the archive
 * and the server's file list. Each logging in on its own costs a key exchange (about 250 ms on
 * loopback, and CPU on both hosts: with many sources pulled at once on a busy backup host, the
 * key exchanges are most of what a pull of a small archive costs).
 *
 * The connection is started as the source's pull begins, while the client checks its own
 * directories, and every transfer goes through it once it is up. When it could not be made,
 * its own messages say why (ssh writes them to a log file in the socket's directory): a server
 * that cannot be reached, a refused host key or a connection closed during the key exchange end
 * the source with that, as the status pull would have; anything else, and the transfers connect
 * on their own as if there were no shared connection (and report what they meet themselves).
 *
 * ssh keeps the connection in a background process of its own (-f, ControlPersist), which
 * the client closes (-O exit) when the source is done. If the client is killed before that,
 * the connection closes itself SHARED_PERSIST_S seconds after its last transfer ended.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ClientConfig, SourceConfig } from "../common/config.ts";
import { isLocalRemote } from "../common/config.ts";
import { rsyncEnv, sshSharedExitArgv, sshSharedStartArgv, usableControlPath } from "./rsync.ts";
import { pidExists, type Child, type Spawner } from "../../io/process.ts";

/** Unix socket paths are limited to 107 bytes on Linux and 103 on macOS. */
const MAX_SOCKET_PATH = 100;
const DIR_PREFIX = "shoot-ssh-";
const SOCKET = "s";
/** ssh's messages for the connection (-E): the reason when it could not be made. */
const LOG = "log";
/** Lines of that log kept for classifying a failure. */
const LOG_LINES = 12;
/**
 * A socket directory this old was left by a client killed before it could remove it (ssh
 * removes the socket itself when the connection closes); by then even a connection its
 * orphaned transfers kept up has long been closed. Younger ones may belong to a run whose
 * connection is still being made.
 */
const STALE_DIR_MS = 10 * 60_000;

/** The client's pid in a socket directory's name (`shoot-ssh-PID-XXXXXX`); older versions named none. */
export function ownerPid(name: string): number | undefined {
  const m = /^shoot-ssh-(\d{1,10})-[^-]+$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * Remove the socket directories of this user's killed clients in `tmp`: at once when their
 * client no longer runs and the socket is gone (the connection closed), with the socket once
 * they are old; a directory of an older version only when empty and old. A directory whose
 * client still runs stays.
 */
export function removeStaleSocketDirs(tmp: string, now: number): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(tmp);
  } catch {
    return removed;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const dir = path.join(tmp, name);
    try {
      const st = fs.lstatSync(dir);
      if (!st.isDirectory() || st.uid !== uid) continue;
      const old = now - st.mtimeMs >= STALE_DIR_MS;
      const pid = ownerPid(name);
      if (pid === undefined) {
        if (!old) continue;
        fs.rmdirSync(dir);
      } else if (pid === process.pid || pidExists(pid)) {
        continue;
      } else if (old || !fs.existsSync(path.join(dir, SOCKET))) {
        // no socket: its connection has closed (what is left is ssh's log)
        fs.rmSync(dir, { recursive: true, force: true });
      } else {
        continue;
      }
      removed.push(name);
    } catch {
      // not empty, or not ours to remove
    }
  }
  return removed;
}

const swept = new Set<string>();

/** Once per run (a process) is enough: a run of a hundred sources need not read the directory a hundred times. */
function sweepOnce(tmp: string): void {
  if (swept.has(tmp)) return;
  swept.add(tmp);
  removeStaleSocketDirs(tmp, Date.now());
}

export interface SharedOutcome {
  up: boolean;
  /** How the start of a connection that is not up ended, its log as the standard error. */
  ended?: { exitCode: number | null; signal: string | null; stderrTail: string[]; timedOut: boolean };
}

export class SharedSsh {
  private ready = false;
  private readonly starting: Child | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly spawner: Spawner,
    private readonly env: Record<string, string | undefined>,
    private readonly cfg: ClientConfig,
    private readonly source: SourceConfig,
    private readonly dir: string | undefined,
  ) {
    if (!dir) return;
    try {
      this.starting = spawner.start(sshSharedStartArgv(cfg, source, this.socket, path.join(dir, LOG)), {
        env: rsyncEnv(env),
        discardStderr: true,
        timeoutMs: cfg.connect_timeout + 10_000,
      });
    } catch {
      // ssh missing: the status pull says so
      return;
    }
    this.starting.done.then(
      (r) => (this.ready = r.exitCode === 0 && fs.existsSync(this.socket)),
      () => undefined,
    );
  }

  /** Start a shared connection to `source` (none for a local path, or where no socket can be made). */
  static start(spawner: Spawner, env: Record<string, string | undefined>, cfg: ClientConfig, source: SourceConfig): SharedSsh {
    let dir: string | undefined;
    if (!isLocalRemote(source.remote)) {
      try {
        sweepOnce(os.tmpdir());
        dir = fs.mkdtempSync(path.join(os.tmpdir(), `${DIR_PREFIX}${process.pid}-`));
        const socket = path.join(dir, SOCKET);
        if (socket.length > MAX_SOCKET_PATH || !usableControlPath(socket)) {
          fs.rmSync(dir, { recursive: true, force: true });
          dir = undefined;
        }
      } catch {
        dir = undefined;
      }
    }
    return new SharedSsh(spawner, env, cfg, source, dir);
  }

  private get socket(): string {
    return path.join(this.dir!, SOCKET);
  }

  /** The socket to give a transfer now: undefined while the connection is not (yet) up. */
  get controlPath(): string | undefined {
    return this.ready ? this.socket : undefined;
  }

  /**
   * Wait until the connection is up or could not be made. Without one, what ssh said and how
   * it ended (for classifyFailure); nothing when there was no connection to make (a local path).
   */
  async settled(): Promise<SharedOutcome> {
    if (!this.starting) return { up: false };
    const r = await this.starting.done.catch(() => undefined);
    if (this.ready) return { up: true };
    let log: string[] = [];
    try {
      const lines = fs.readFileSync(path.join(this.dir!, LOG), "utf8").split("\n");
      log = lines.map((l) => l.trimEnd()).filter(Boolean).slice(-LOG_LINES);
    } catch {
      // ssh wrote nothing
    }
    const ended = r ? { exitCode: r.exitCode, signal: r.signal, stderrTail: log, timedOut: r.timedOut } : undefined;
    return { up: false, ended };
  }

  /**
   * Close the connection and remove its socket's directory; never throws. Called again, the
   * same closing: a source closes it as soon as its last transfer has ended, and waits for
   * that at its end.
   */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    if (!this.dir) return;
    try {
      if (this.starting) {
        try {
          this.starting.kill("SIGTERM");
        } catch {
          // it has exited
        }
        await this.starting.done.catch(() => undefined);
      }
      if (fs.existsSync(this.socket)) {
        await this.spawner.run(sshSharedExitArgv(this.cfg, this.source, this.socket), { env: rsyncEnv(this.env), discardStderr: true, timeoutMs: 10_000 }).catch(() => undefined);
      }
    } finally {
      await removeDir(this.dir);
    }
  }
}

/**
 * Remove a socket directory. The connection's process removes its socket as it ends, which may
 * be while the directory is being removed (ssh -O exit answers before the socket is gone): a
 * removal that met that is tried again. Never throws; a directory left is swept by a later run.
 */
async function removeDir(dir: string): Promise<void> {
  for (let tries = 0; tries < 5; tries++) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      if (!fs.existsSync(dir)) return;
    } catch {
      // an entry went or came while the directory was read
    }
    await Bun.sleep(20 << tries);
  }
}
