/**
 * One run's life, the same for the wrapper, the server and the client: take the lock of the
 * run's directory (or, for a server started by the wrapper, check that the wrapper holds it),
 * start the status file with RUN_START, let the run do its work, turn an error it did not
 * expect into a final record, then close the status file and release the lock, whatever
 * happened. A run refused before it could begin (the lock held, the directory unusable) gets
 * an outcome with its run id but no status file: it records nothing in another run's file.
 */
import fs from "node:fs";
import path from "node:path";
import { code, type CodeName } from "../common/codes.ts";
import type { Clock } from "../common/deps.ts";
import { errorMessage } from "../common/errors.ts";
import type { Role, RunOutcome } from "../common/outcome.ts";
import { VERSION } from "../../version.ts";
import { LockedError, acquireLock, currentLock, type Lock } from "./lock.ts";
import { STATUS_FORMAT, STATUS_VERSION, StatusWriter, newRunId, readStatusFile, type ParsedStatus } from "./status.ts";

export interface RunSpec {
  role: Role;
  /** The directory the run locks and keeps its status file in (backup_dir, dest_dir). */
  dir: string;
  /** The status file's name in `dir`. */
  statusName: string;
  clock: Clock;
  hostname: string;
  /** Under the wrapper: its run id and the token of the lock it holds; the status file is appended to. */
  parent?: { run: string; lockToken: string };
  /** The code when `dir` cannot be locked for another reason than a run holding it. */
  unusable: CodeName;
  /** What RUN_START says after "shoot VERSION ROLE run on HOST", and what its data carries besides the versions. */
  runStart?: { detail?: string; data?: Record<string, unknown> };
  /** Read the previous run's records before the status file starts afresh. */
  readPrevious?: boolean;
  /** The final record for an error the run did not turn into an outcome itself. */
  failure: (e: unknown) => RunFailure;
}

/** How a run that threw ended: its final record, and what its outcome carries besides. */
export interface RunFailure {
  name: CodeName;
  message: string;
  step?: string;
  outcome?: Partial<RunOutcome>;
}

/** What the run's work is given: the run's id, its status file, its lock, and what came before. */
export interface RunFrame {
  run: string;
  started: Date;
  status: StatusWriter;
  statusFile: string;
  /** The lock this run took (undefined under the wrapper, whose lock it is). */
  lock?: Lock;
  /** The previous run's records, when `readPrevious` asked for them. */
  previous?: ParsedStatus;
}

/** The outcome of a run that could not begin, or that failed: no sources, no archive. */
export function plainOutcome(
  spec: Pick<RunSpec, "role" | "hostname">, run: string, started: Date, ended: Date,
  c: number, message: string, statusFile?: string,
): RunOutcome {
  const file = statusFile ? { statusFile } : {};
  return { role: spec.role, host: spec.hostname, run, started, ended, code: c, message, warnings: [], ...file };
}

/**
 * Run `work` as one run of `spec.role`. `work` returns the run's outcome and writes its final
 * record itself; an error it throws becomes the final record `spec.failure` makes of it.
 */
export async function withRun(spec: RunSpec, work: (frame: RunFrame) => Promise<RunOutcome>): Promise<RunOutcome> {
  const started = spec.clock.now();
  // the run has its id from the start: a report of a run that could not begin names it too
  const run = spec.parent?.run ?? newRunId(started);
  const statusFile = path.join(spec.dir, spec.statusName);
  const refused = (name: CodeName, message: string) =>
    plainOutcome(spec, run, started, spec.clock.now(), code(name), message);

  let lock: Lock | undefined;
  if (spec.parent) {
    const held = currentLock(spec.dir);
    if (held?.token !== spec.parent.lockToken) {
      const holder = held ? `pid ${held.pid}` : "nobody";
      const why = `started as the wrapper's child, but the wrapper's lock in ${spec.dir} is not held ` +
        `(held by ${holder})`;
      return { ...refused("ALREADY_RUNNING", why), statusFile };
    }
  } else {
    try {
      lock = acquireLock(spec.dir, spec.role, started);
    } catch (e) {
      if (e instanceof LockedError) return refused("ALREADY_RUNNING", e.message);
      return refused(spec.unusable, `cannot take the lock in ${spec.dir}: ${errorMessage(e)}`);
    }
  }

  const status = new StatusWriter(statusFile, spec.role, run, spec.clock);
  try {
    const previous = spec.readPrevious ? readStatusFile(statusFile) : undefined;
    if (spec.parent) status.open();
    else {
      status.startFresh();
      const detail = spec.runStart?.detail ? `: ${spec.runStart.detail}` : "";
      status.write("RUN_START", `shoot ${VERSION} ${spec.role} run on ${spec.hostname}${detail}`, {
        format: STATUS_FORMAT,
        host: spec.hostname,
        data: { version: VERSION, formatVersion: STATUS_VERSION, ...spec.runStart?.data },
      });
    }
    return await work({ run, started, status, statusFile, lock, previous });
  } catch (e) {
    const f = spec.failure(e);
    try {
      status.write(f.name, f.message, f.step ? { step: f.step } : {});
    } catch {
      // the status file itself cannot be written (disk full, directory gone): the exit code still says it
    }
    return { ...plainOutcome(spec, run, started, spec.clock.now(), code(f.name), f.message, statusFile), ...f.outcome };
  } finally {
    status.close();
    lock?.release();
  }
}

/** A lock taken over from a dead process, as each run records it. */
export function staleLockMessage(lock: Lock | undefined): string | undefined {
  const s = lock?.staleFrom;
  return s && `took over a stale lock: pid ${s.pid} (${s.role}, started ${s.started}) no longer runs`;
}

/** The run's directory exists and is a directory we may write in; otherwise why not. */
export function unusableDir(dir: string, what: string): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === "ENOENT" ? "does not exist (create it, mode 0700)" : `cannot be used: ${errorMessage(e)}`;
    return `${what} ${dir} ${why}`;
  }
  if (!st.isDirectory()) return `${what} ${dir} is not a directory`;
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (e) {
    return `${what} ${dir} is not writable: ${(e as { code?: string }).code ?? errorMessage(e)}`;
  }
  return undefined;
}
