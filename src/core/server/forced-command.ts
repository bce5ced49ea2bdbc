/**
 * `shoot serve --read-only DIR`: the forced command of the backup host's key on a server.
 * sshd runs it instead of whatever the client asked for and hands the request over in
 * $SSH_ORIGINAL_COMMAND. Only an rsync read (`rsync --server --sender …`) of paths inside DIR
 * is passed on, to the real rsync with the checked arguments and no shell in between;
 * anything else is refused with a message the client sees.
 */
import fs from "node:fs";
import path from "node:path";
import type { Spawner } from "../../io/process.ts";
import { errnoCode } from "../common/errors.ts";
import { CommandRefused, parseSenderCommand } from "../transfer/rsync.ts";

/** Real path of `p`, or of its parent plus its name when `p` itself does not exist (yet). */
function realish(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch (e) {
    if (errnoCode(e) !== "ENOENT") throw e;
    return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
  }
}

/** Refuse any path whose real location is not DIR or inside it (symlinks included). */
export function confine(dir: string, paths: readonly string[]): void {
  const root = fs.realpathSync(dir);
  for (const p of paths) {
    let real: string;
    try {
      real = realish(path.normalize(p));
    } catch {
      throw new CommandRefused(`${JSON.stringify(p)}: no such directory`);
    }
    if (real !== root && !real.startsWith(`${root}/`)) {
      throw new CommandRefused(`${JSON.stringify(p)} is outside ${dir}`);
    }
  }
}

export interface ServeIo {
  spawner: Spawner;
  /** Where refusals and rsync's own errors go: the client's rsync shows them. */
  stderr: (line: string) => void;
  env: Record<string, string | undefined>;
}

/** Check the request and run it; rsync's exit code goes back to the client. A refusal throws CommandRefused. */
export async function serveReadOnly(dir: string, original: string | undefined, io: ServeIo): Promise<number> {
  if (!path.isAbsolute(dir)) throw new CommandRefused(`the served directory ${JSON.stringify(dir)} must be an absolute path`);
  try {
    if (!fs.statSync(dir).isDirectory()) throw new CommandRefused(`${dir} is not a directory`);
  } catch (e) {
    if (e instanceof CommandRefused) throw e;
    throw new CommandRefused(`${dir} cannot be served: ${errnoCode(e) ?? String(e)}`);
  }
  const cmd = parseSenderCommand(original ?? "");
  confine(dir, cmd.paths);
  const argv = ["rsync", "--server", "--sender", ...cmd.options, ".", ...cmd.paths];
  const r = await io.spawner.run(argv, { passStdio: true, env: io.env, onStderrLine: io.stderr, stderrLines: 1 });
  return r.exitCode ?? 1;
}
