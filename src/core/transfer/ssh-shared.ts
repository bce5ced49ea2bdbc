/**
 * One ssh connection for a source's transfers. A pull makes two: server.status, then the
 * archive. Each logged in on its own, and a login costs about 250 ms on loopback (the key
 * exchange), which is most of what a first pull spends beyond rsync and hashing.
 *
 * The shared connection is started beside the status pull, not before it, so it costs no
 * time, and it changes nothing when it fails: the status pull connects on its own as always
 * and reports every connection problem itself; the archive pull goes through the shared
 * connection when it is up by then, and connects on its own when not.
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
import type { Child, Spawner } from "../../io/process.ts";

/** Unix socket paths are limited to 107 bytes on Linux and 103 on macOS. */
const MAX_SOCKET_PATH = 100;
const DIR_PREFIX = "shoot-ssh-";
const SOCKET = "s";
/**
 * A socket directory this old and empty was left by a client killed before it could remove it
 * (ssh removes the socket itself when the connection closes). Younger ones may belong to a run
 * whose connection is still being made.
 */
const STALE_DIR_MS = 10 * 60_000;

/**
 * Remove the empty socket directories of this user's killed clients in `tmp`. A directory with
 * a socket in it belongs to a live connection and stays: rmdir refuses it.
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
      if (!st.isDirectory() || st.uid !== uid || now - st.mtimeMs < STALE_DIR_MS) continue;
      fs.rmdirSync(dir);
      removed.push(name);
    } catch {
      // not empty, or not ours to remove
    }
  }
  return removed;
}

export class SharedSsh {
  private ready = false;
  private readonly starting: Child | undefined;

  private constructor(
    private readonly spawner: Spawner,
    private readonly env: Record<string, string | undefined>,
    private readonly cfg: ClientConfig,
    private readonly source: SourceConfig,
    private readonly dir: string | undefined,
  ) {
    if (!dir) return;
    try {
      this.starting = spawner.start(sshSharedStartArgv(cfg, source, this.socket), {
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
        removeStaleSocketDirs(os.tmpdir(), Date.now());
        dir = fs.mkdtempSync(path.join(os.tmpdir(), DIR_PREFIX));
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

  /** Close the connection and remove its socket's directory; never throws. */
  async close(): Promise<void> {
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
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
