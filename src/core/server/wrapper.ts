/**
 * The wrapper: cron's entry point on a server. It takes the lock, looks at how the previous run
 * ended (and cleans up after one that died), starts `shoot server` as a child, stops it when it
 * runs past max_runtime, and afterwards makes sure server.status ends with a final record that
 * says what happened, even when the server died without writing one.
 */
import { code, codeInfo, codeName, isFinal, type CodeName } from "../common/codes.ts";
import { PASSWORD_ENV, type ServerConfig } from "../common/config.ts";
import type { Deps } from "../common/deps.ts";
import { errorMessage } from "../common/errors.ts";
import { removeLeftovers } from "../state/leftovers.ts";
import type { Lock } from "../state/lock.ts";
import { unsafeDir } from "../state/strict-modes.ts";
import type { HookOutcome, RunOutcome, Warning } from "../common/outcome.ts";
import { describeHook, hookEnv, runHook } from "./hooks.ts";
import { plainOutcome, staleLockMessage, unusableDir, withRun, type RunFrame, type RunSpec } from "../state/run.ts";
import { SERVER_STATUS, StatusWriter, describeRecord, lastFinal, lastStep, newRunId, readStatusFile, type StatusRecord } from "../state/status.ts";
import { formatDuration } from "../common/units.ts";
import { ENV_LOCK_TOKEN, ENV_PARENT_RUN } from "./wrapper-env.ts";
import type { RunResult } from "../../io/process.ts";

export interface WrapperOptions {
  /** argv that starts `shoot server` with the same configuration (the CLI knows how to call itself). */
  serverArgv: string[];
  signal?: AbortSignal;
}

export async function runWrapper(cfg: ServerConfig, deps: Deps, opts: WrapperOptions): Promise<RunOutcome> {
  const dir = cfg.backup_dir;
  const spec = {
    role: "wrapper", dir, statusName: SERVER_STATUS, clock: deps.clock, hostname: deps.hostname,
    unusable: "BACKUP_DIR_UNUSABLE", readPrevious: true,
    failure: (e: unknown) => ({ name: "INTERNAL_ERROR", message: `wrapper failed: ${errorMessage(e)}`, step: "wrapper" }),
  } as const satisfies RunSpec;
  const now = deps.clock.now();
  const problem = unusableDir(dir, "backup_dir");
  if (problem) return plainOutcome(spec, newRunId(now), now, now, code("BACKUP_DIR_UNUSABLE"), problem);
  const unsafe = unsafeDir(dir, "backup_dir");
  if (unsafe) return plainOutcome(spec, newRunId(now), now, now, code("UNSAFE_PERMISSIONS"), unsafe);
  return withRun(spec, (frame) => wrap(cfg, deps, opts, frame));
}

/** The wrapper's run, in the lock and the status file withRun gave it. */
async function wrap(cfg: ServerConfig, deps: Deps, opts: WrapperOptions, frame: RunFrame): Promise<RunOutcome> {
  const { run, status, statusFile, previous } = frame;
  const lock = frame.lock!;
  const dir = cfg.backup_dir;
  const warnings: Warning[] = [];
  status.write("WRAPPER_START", `wrapper pid ${process.pid} holds the lock of ${dir}`, { step: "wrapper" });
  const stale = staleLockMessage(lock);
  if (stale) status.write("STALE_LOCK", stale, { step: "wrapper" });
  if (previous && previous.skipped > 0) {
    warnings.push({ code: code("STATUS_TORN"), msg: `${previous.skipped} unreadable line(s) in the previous status file were skipped` });
    status.write("STATUS_TORN", warnings.at(-1)!.msg, { step: "wrapper" });
  }
  recoverPrevious(dir, previous?.records ?? [], status, warnings);

  const hooks: HookOutcome[] = [];
  const before = await beforeHook(cfg, deps, status, run, warnings, hooks, opts.signal);
  const signalled = `the wrapper received ${String(opts.signal?.reason ?? "a signal")} before the server started; it was not started`;
  const final = opts.signal?.aborted
    ? status.write("INTERRUPTED", signalled, { step: "before" })
    : before.stop
      ? status.write("BEFORE_HOOK_FAILED", `${before.stop}; no archive was made (before_failure = "stop")`, { step: "before" })
      : finalWord(statusFile, run, await superviseServer(cfg, deps, opts, status, run, lock), cfg, status, dir);
  // after the final record, so that the command sees the run's code; its failure is a warning
  await afterHook(cfg, deps, status, run, final, warnings, hooks);
  const serverWarnings = (readStatusFile(statusFile)?.records ?? [])
    .filter((r) => r.run === run && codeInfo(r.code)?.kind === "warning")
    .map((r) => ({ code: r.code, msg: r.msg }));
  return {
    role: "wrapper", host: deps.hostname, run, started: frame.started, ended: deps.clock.now(),
    code: final.code, message: final.msg, archive: final.archive,
    warnings: [...warnings, ...serverWarnings.filter((w) => !warnings.some((x) => x.msg === w.msg))],
    lastStep: final.step, statusFile, ...(hooks.length ? { hooks } : {}),
  };
}

/** The previous run did not end with a final record: say where it died and remove what it left. */
function recoverPrevious(dir: string, records: StatusRecord[], status: StatusWriter, warnings: Warning[]): void {
  const last = records.at(-1);
  // report records (MAIL_*) may follow the final one: a run is unclean when it has none at all
  const unclean = last !== undefined && lastFinal(records) === undefined;
  const left = removeLeftovers(dir);
  for (const f of left.failed) {
    warnings.push({ code: code("CLEANUP_FAILED"), msg: `could not remove ${f} left by an earlier run` });
    status.write("CLEANUP_FAILED", warnings.at(-1)!.msg, { step: "recover" });
  }
  if (unclean) {
    const where = lastStep(records);
    const msg = `the previous run (${last.run}) did not end clean: it stopped in step "${where?.step ?? "?"}" (last record: ${describeRecord(last)}); ${left.removed.length ? `removed ${left.removed.join(", ")}` : "it left no temporary files"}`;
    warnings.push({ code: code("RECOVERED"), msg });
    status.write("RECOVERED", msg, { step: "recover" });
  } else if (left.removed.length) {
    status.write("RECOVERED", `removed leftovers: ${left.removed.join(", ")}`, { step: "recover" });
  }
}

/** The HOOK_DONE record of a command that ended: how, and the last lines of its output. */
function recordHook(status: StatusWriter, h: HookOutcome): void {
  status.write("HOOK_DONE", describeHook(h), { step: h.when, data: { argv: h.argv, ok: h.ok, how: h.how, output: h.output.slice(-10) } });
}

/** Run `before` when there is one; `stop` says why the run must not go on. */
async function beforeHook(
  cfg: ServerConfig, deps: Deps, status: StatusWriter, run: string, warnings: Warning[], hooks: HookOutcome[], signal?: AbortSignal,
): Promise<{ stop?: string }> {
  if (!cfg.before) return {};
  status.write("STEP", `running the before command ${JSON.stringify(cfg.before)}`, { step: "before" });
  const h = await runHook(deps.spawner, { when: "before", argv: cfg.before, timeoutMs: cfg.before_timeout, killGraceMs: cfg.kill_grace }, hookEnv(childEnv(deps.env), run), signal);
  hooks.push(h);
  recordHook(status, h);
  if (h.ok) return {};
  if (cfg.before_failure === "stop") return { stop: describeHook(h) };
  const msg = `${describeHook(h)}; the run goes on (before_failure = "continue")`;
  warnings.push({ code: code("BEFORE_HOOK_IGNORED"), msg });
  status.write("BEFORE_HOOK_IGNORED", msg, { step: "before" });
  return {};
}

/** Run `after` when there is one, with the run's final code; a failure is a warning, never the run's code. */
async function afterHook(cfg: ServerConfig, deps: Deps, status: StatusWriter, run: string, final: StatusRecord, warnings: Warning[], hooks: HookOutcome[]): Promise<void> {
  if (!cfg.after) return;
  const env = hookEnv(childEnv(deps.env), run, { code: final.code, name: codeName(final.code) });
  const h = await runHook(deps.spawner, { when: "after", argv: cfg.after, timeoutMs: cfg.after_timeout, killGraceMs: cfg.kill_grace }, env);
  hooks.push(h);
  recordHook(status, h);
  if (h.ok) return;
  const msg = `${describeHook(h)}; the run's code ${final.code} ${codeName(final.code)} stands`;
  warnings.push({ code: code("AFTER_HOOK_FAILED"), msg });
  status.write("AFTER_HOOK_FAILED", msg, { step: "after" });
}

/**
 * The server's environment: the wrapper's, without Bun's own variables (BUN_OPTIONS can
 * preload code, BUN_BE_BUN turns the binary into a plain runtime): a stray line in a crontab
 * must not change what the backup runs. Nor the SMTP password (PASSWORD_ENV): the
 * wrapper mails the report, the server never does, so a secret has no business there.
 */
export function childEnv(env: Record<string, string | undefined>): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith("BUN_") && k !== PASSWORD_ENV));
}

interface Supervised {
  result?: RunResult;
  startError?: string;
  interrupted?: string;
}

async function superviseServer(cfg: ServerConfig, deps: Deps, opts: WrapperOptions, status: StatusWriter, run: string, lock: Lock): Promise<Supervised> {
  let child;
  try {
    child = deps.spawner.start(opts.serverArgv, {
      env: { ...childEnv(deps.env), [ENV_PARENT_RUN]: run, [ENV_LOCK_TOKEN]: lock.info.token },
      timeoutMs: cfg.max_runtime,
      killSignal: "SIGTERM",
      killGraceMs: cfg.kill_grace,
      onStderrLine: (l) => deps.log.info(`server: ${l}`),
      onStdoutLine: (l) => deps.log.info(`server: ${l}`),
      stderrLines: 20,
    });
  } catch (e) {
    return { startError: errorMessage(e) };
  }
  status.write("SERVER_STARTED", `server started, pid ${child.pid}, max_runtime ${formatDuration(cfg.max_runtime)}`, { step: "wrapper", data: { pid: child.pid } });
  let interrupted: string | undefined;
  const onAbort = () => {
    interrupted = String(opts.signal?.reason ?? "signal");
    child.kill("SIGTERM");
    // a server that ignores SIGTERM is not allowed to keep the host waiting
    setTimeout(() => child.kill("SIGKILL"), cfg.kill_grace).unref?.();
  };
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  const result = await child.done;
  opts.signal?.removeEventListener("abort", onAbort);
  const how = result.signal ? `killed by ${result.signal}` : `exit code ${result.exitCode}`;
  status.write("SERVER_EXITED", `server pid ${child.pid} ended: ${how} after ${formatDuration(result.durationMs)}`, { step: "wrapper", data: { pid: child.pid, exitCode: result.exitCode, signal: result.signal } });
  return { result, interrupted };
}

/** Make sure the status file ends with a final record; return it. */
function finalWord(statusFile: string, run: string, sup: Supervised, cfg: ServerConfig, status: StatusWriter, dir: string): StatusRecord {
  const records = (readStatusFile(statusFile)?.records ?? []).filter((r) => r.run === run);
  const serverRecords = records.filter((r) => r.role === "server");
  const serverFinal = [...serverRecords].reverse().find((r) => isFinal(r.code));
  const where = lastStep(serverRecords);
  const doing = where ? `it was in step "${where.step ?? "?"}" (${where.msg})` : "it wrote no record";
  const write = (name: CodeName, msg: string) => {
    const left = removeLeftovers(dir);
    const tail = left.removed.length ? `; removed ${left.removed.join(", ")}` : "";
    return status.write(name, `${msg}${tail}`, { step: where?.step ?? "wrapper" });
  };
  if (sup.startError) return write("SERVER_START_FAILED", `the server could not be started: ${sup.startError}`);
  const r = sup.result!;
  const stderr = r.stderrTail.filter((l) => l.trim()).slice(-3).join(" | ");
  if (r.timedOut) return write("TIMEOUT", `the server ran past max_runtime (${formatDuration(cfg.max_runtime)}) and was stopped (SIGTERM, SIGKILL after ${formatDuration(cfg.kill_grace)} if needed); ${doing}`);
  if (sup.interrupted) return write("INTERRUPTED", `the wrapper received ${sup.interrupted} and stopped the server; ${doing}`);
  if (serverFinal) {
    // the server's own final word stands; the wrapper repeats it last, where readers look
    return status.write(codeName(serverFinal.code) as CodeName, serverFinal.msg, { step: "done", archive: serverFinal.archive });
  }
  if (r.signal) return write("SERVER_KILLED", `the server was killed by ${r.signal} without a final record; ${doing}`);
  return write("SERVER_CRASHED", `the server exited with ${r.exitCode} without a final record; ${doing}${stderr ? `; stderr: ${stderr}` : ""}`);
}
