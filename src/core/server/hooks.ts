/**
 * The `before` and `after` commands the wrapper runs around a server run: argv arrays through
 * the one spawn helper (no shell unless the user wrote one), a time-out each, the run's id and
 * (after) its code in the environment, and the last lines of their output kept for the status
 * file and the report.
 */
import type { HookOutcome } from "../common/outcome.ts";
import type { Spawner } from "../../io/process.ts";
import { ToolMissingError } from "../../io/process.ts";
import { errorMessage } from "../common/errors.ts";
import { formatDuration } from "../common/units.ts";

/** Output lines kept per command, and the longest line kept whole. */
export const HOOK_OUTPUT_LINES = 40;
const MAX_LINE = 500;

export interface HookSpec {
  when: "before" | "after";
  argv: string[];
  timeoutMs: number;
  killGraceMs: number;
}

/** The environment a hook runs with: the wrapper's (cleaned by the caller), plus what it is running around. */
export function hookEnv(base: Record<string, string | undefined>, run: string, code?: { code: number; name: string }): Record<string, string | undefined> {
  return {
    ...base,
    SHOOT_ROLE: "server",
    SHOOT_RUN: run,
    ...(code ? { SHOOT_CODE: String(code.code), SHOOT_CODE_NAME: code.name } : {}),
  };
}

/** Run one hook to its end (SIGTERM when `signal` aborts); never throws: a command that cannot start is a failed hook. */
export async function runHook(spawner: Spawner, spec: HookSpec, env: Record<string, string | undefined>, signal?: AbortSignal): Promise<HookOutcome> {
  const output: string[] = [];
  const keep = (line: string) => {
    output.push(line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}…` : line);
    if (output.length > HOOK_OUTPUT_LINES) output.shift();
  };
  try {
    const child = spawner.start(spec.argv, {
      env, timeoutMs: spec.timeoutMs, killSignal: "SIGTERM", killGraceMs: spec.killGraceMs,
      onStdoutLine: keep, onStderrLine: keep, stderrLines: 1,
    });
    const stop = () => child.kill("SIGTERM");
    signal?.addEventListener("abort", stop, { once: true });
    if (signal?.aborted) stop();
    const r = await child.done.finally(() => signal?.removeEventListener("abort", stop));
    const took = formatDuration(r.durationMs);
    const how = r.timedOut ? `timed out after ${formatDuration(spec.timeoutMs)} and was stopped`
      : r.signal ? `was killed by ${r.signal} after ${took}`
      : r.exitCode === 0 ? `ended with exit status 0 after ${took}`
      : `ended with exit status ${r.exitCode} after ${took}`;
    return { when: spec.when, argv: spec.argv, ok: !r.timedOut && r.signal === null && r.exitCode === 0, how, output };
  } catch (e) {
    const how = e instanceof ToolMissingError ? `could not start: ${spec.argv[0]} is not installed (or not on PATH)` : `could not start: ${errorMessage(e)}`;
    return { when: spec.when, argv: spec.argv, ok: false, how, output };
  }
}

/** "before command [systemctl stop app] ended with exit status 1 after 0.2s: <last lines>". */
export function describeHook(h: HookOutcome, tail = 3): string {
  const last = h.output.filter((l) => l.trim()).slice(-tail).join(" | ");
  return `${h.when} command ${JSON.stringify(h.argv)} ${h.how}${last ? `: ${last}` : ""}`;
}
