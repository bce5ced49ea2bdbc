import fs from "node:fs";
import path from "node:path";
import { shWord } from "../core/common/shell-word.ts";

/** How this program starts itself again: the compiled binary directly, from source through bun. */
export function selfArgv(): string[] {
  const main = Bun.main;
  // a compiled binary's entry lives in Bun's embedded file system
  if (main.startsWith("/$bunfs/") || main.startsWith("B:/~BUN/")) return [process.execPath];
  return [process.execPath, main];
}

function realpath(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}

/**
 * Where PATH finds `name` in the person's own shell: not in a node_modules/.bin, which npm puts
 * on PATH for the script it runs (`npm run demo`) and which the shell afterwards does not have.
 */
function onPath(name: string): string | undefined {
  const dirs = (process.env.PATH ?? "").split(":").filter((d) => d && !/(^|\/)node_modules\/\.bin\/?$/.test(d));
  return Bun.which(name, { PATH: dirs.join(":") }) ?? undefined;
}

/** A program as a person types it in `cwd`: its name when their PATH finds this very file, else a path. */
function typed(file: string, names: readonly string[], cwd: string): string {
  const real = realpath(file);
  for (const n of names) {
    const candidate = n.includes("/") ? path.join(cwd, n) : onPath(n);
    if (candidate && real && realpath(candidate) === real) return n;
  }
  const rel = path.relative(cwd, file);
  return shWord(rel.startsWith("..") || path.isAbsolute(rel) ? file : rel);
}

/**
 * How a person runs shoot again from `cwd`, as text to print: `shoot` when that is this binary
 * on PATH, else its path; from source, the bun that runs it (node_modules/.bin/bun in a clone)
 * and the entry file, relative to `cwd` when inside it.
 */
export function selfCommand(cwd = process.cwd()): string {
  const argv = selfArgv();
  if (argv.length === 1) return typed(argv[0]!, ["shoot"], cwd);
  return `${typed(argv[0]!, ["bun", "node_modules/.bin/bun"], cwd)} ${typed(argv[1]!, [], cwd)}`;
}
