/**
 * One run at a time per directory: a lock file created with O_EXCL holding the owner's pid,
 * the kernel's boot id and the process start time. A lock whose process is gone, was started in
 * another boot, or whose pid now belongs to another process is stale and is taken over, so a
 * crash never blocks backups forever. Taking over is guarded by a second short-lived file, so
 * two runs that find the same stale lock cannot both take it.
 */
import fs from "node:fs";
import path from "node:path";
import { pidExists } from "../../io/process.ts";
import { TEMP_PREFIX } from "./naming.ts";

export const LOCK_FILE = ".shoot.lock";
/** The lock's temporary files: a leftover's prefix (naming.ts), so a run holding the lock removes them too. */
const LOCK_TEMP = `${TEMP_PREFIX}lock-`;

export interface LockInfo {
  pid: number;
  boot: string;
  /** Process start time in clock ticks since boot (Linux /proc/<pid>/stat field 22). */
  pstart: string;
  started: string;
  role: string;
  token: string;
}

export interface Lock {
  info: LockInfo;
  /** Set when a stale lock was taken over: whose it was. */
  staleFrom?: LockInfo;
  release(): void;
}

export class LockedError extends Error {
  constructor(readonly holder: LockInfo | undefined, file: string) {
    super(
      holder
        ? `another run holds ${file}: pid ${holder.pid} (${holder.role}), started ${holder.started}`
        : `another run holds ${file}`,
    );
    this.name = "LockedError";
  }
}

function bootId(): string {
  try {
    return fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "";
  }
}

function processStart(pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // fields after the command name, which is in parentheses and may contain spaces
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19] ?? "";
  } catch {
    return "";
  }
}

/** Why a lock is stale, or undefined when its owner still runs. */
export function staleReason(info: LockInfo, now = { boot: bootId(), pstart: processStart }): string | undefined {
  if (info.boot && now.boot && info.boot !== now.boot) return "it was taken before the last reboot";
  if (!pidExists(info.pid)) return `process ${info.pid} no longer exists`;
  const ps = now.pstart(info.pid);
  if (info.pstart && ps && ps !== info.pstart) return `pid ${info.pid} now belongs to another process`;
  return undefined;
}

function readLock(file: string): LockInfo | undefined {
  try {
    const j = JSON.parse(fs.readFileSync(file, "utf8")) as LockInfo;
    return Number.isInteger(j.pid) ? j : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Create the lock with its content in one step: written to a temporary file first, then linked
 * under the lock's name (link fails when the name exists, as O_EXCL does). A run killed at any
 * moment leaves either no lock or a whole one, never an empty file that would turn the next
 * run away until it ages.
 */
function tryCreate(file: string, info: LockInfo): boolean {
  const temp = `${path.dirname(file)}/${LOCK_TEMP}${process.pid}-${info.token}`;
  let made = false;
  try {
    const fd = fs.openSync(temp, "wx", 0o600);
    made = true;
    try {
      fs.writeSync(fd, JSON.stringify(info));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.linkSync(temp, file);
    return true;
  } catch (e) {
    const code = (e as { code?: string }).code;
    // EEXIST: another run holds it; ENOENT: that run swept our temporary file as a leftover
    if (code === "EEXIST" || code === "ENOENT") return false;
    throw e;
  } finally {
    if (made) fs.rmSync(temp, { force: true });
  }
}

/** Lock temporaries of runs killed between writing one and linking it (`pid-token`). */
function sweepLockTemps(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(LOCK_TEMP)) continue;
    const pid = Number.parseInt(n.slice(LOCK_TEMP.length), 10);
    if (Number.isInteger(pid) && !pidExists(pid)) fs.rmSync(path.join(dir, n), { force: true });
  }
}

export function acquireLock(dir: string, role: string, now: Date = new Date()): Lock {
  const file = path.join(dir, LOCK_FILE);
  const info: LockInfo = {
    pid: process.pid,
    boot: bootId(),
    pstart: processStart(process.pid),
    started: now.toISOString(),
    role,
    token: `${process.pid}-${now.getTime()}-${Math.random().toString(36).slice(2, 10)}`,
  };
  let staleFrom: LockInfo | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    if (tryCreate(file, info)) {
      sweepLockTemps(dir);
      return { info, staleFrom, release: () => releaseLock(file, info.token) };
    }
    const holder = readLock(file);
    // an unreadable lock file (damaged, or empty: left by an older version killed between
    // create and write) counts as stale only once it is old enough that no writer is at it
    if (!holder) {
      const age = ageMs(file);
      if (age !== undefined && age < 5000) throw new LockedError(undefined, file);
    } else if (!staleReason(holder)) {
      throw new LockedError(holder, file);
    }
    if (takeOver(file, holder)) staleFrom = holder ?? { pid: 0, boot: "", pstart: "", started: "?", role: "?", token: "" };
  }
  throw new LockedError(readLock(file), file);
}

function ageMs(file: string): number | undefined {
  try {
    return Date.now() - fs.statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Remove a stale lock if it is still the one we judged stale. */
function takeOver(file: string, judged: LockInfo | undefined): boolean {
  const guard = `${file}.takeover`;
  const guardAge = ageMs(guard);
  if (guardAge !== undefined && guardAge > 60_000) fs.rmSync(guard, { force: true });
  let fd: number;
  try {
    fd = fs.openSync(guard, "wx", 0o600);
  } catch {
    return false; // someone else is taking it over right now; retry from the top
  }
  try {
    const current = readLock(file);
    if ((current?.token ?? "") === (judged?.token ?? "")) {
      fs.rmSync(file, { force: true });
      return true;
    }
    return false;
  } finally {
    fs.closeSync(fd);
    fs.rmSync(guard, { force: true });
  }
}

function releaseLock(file: string, token: string): void {
  if (readLock(file)?.token !== token) return;
  try {
    fs.rmSync(file, { force: true });
  } catch {
    // the file system went read-only (or away) as the run ended: the lock names a process that
    // is about to exit, so the next run takes it over as stale; a finished run must not turn
    // into an internal error for it
  }
}

/** The lock as it is now, for status displays and for a child that runs under its parent's lock. */
export function currentLock(dir: string): LockInfo | undefined {
  return readLock(path.join(dir, LOCK_FILE));
}
