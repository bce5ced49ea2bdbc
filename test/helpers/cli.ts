/**
 * Run shoot as a real process: from source with bun, or the built binary when $SHOOT_BIN
 * names one (so the end-to-end suites can test what users copy).
 */
import path from "node:path";

export const ROOT = path.resolve(import.meta.dir, "../..");

export function shootArgv(): string[] {
  const bin = process.env.SHOOT_BIN;
  if (bin) return [path.resolve(bin)];
  return [process.execPath, path.join(ROOT, "src/main.ts")];
}

export interface ShootResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ShootOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  timeoutMs?: number;
}

/** Run `shoot ARGS…` and wait for it; a run longer than timeoutMs is killed and fails the test. */
export async function runShoot(args: string[], opts: ShootOptions = {}): Promise<ShootResult> {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1", ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const proc = Bun.spawn([...shootArgv(), ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    cwd: opts.cwd ?? ROOT,
    env: env as Record<string, string>,
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const code = await proc.exited;
  clearTimeout(timer);
  if (proc.signalCode === "SIGKILL") throw new Error(`shoot ${args.join(" ")} hung and was killed after ${opts.timeoutMs ?? 60_000} ms\n${stderr}`);
  return { code, stdout, stderr };
}

/** Start `shoot ARGS…` without waiting (for signals and concurrency tests). */
export function startShoot(args: string[], opts: ShootOptions = {}) {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1", ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return Bun.spawn([...shootArgv(), ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    cwd: opts.cwd ?? ROOT,
    env: env as Record<string, string>,
  });
}
