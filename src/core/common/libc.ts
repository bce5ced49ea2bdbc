/**
 * Calls into the C library through bun:ffi, for code that runs on worker threads. Each answers
 * undefined where the library is not glibc's, so its caller still works there, only without
 * the help.
 */

/** SYNC_FILE_RANGE_WRITE: start write-back of the range, without waiting for it. */
export const SYNC_FILE_RANGE_WRITE = 2;

export type SyncFileRange = (fd: number, offset: number, length: number, flags: number) => number;

/**
 * sync_file_range(2), or undefined. Called with SYNC_FILE_RANGE_WRITE it starts writing a range
 * back and does not wait; a write-back error is left for the fsync that follows, which reports it.
 */
export function openSyncRange(): SyncFileRange | undefined {
  try {
    const ffi = require("bun:ffi") as typeof import("bun:ffi");
    const T = ffi.FFIType;
    const lib = ffi.dlopen("libc.so.6", { sync_file_range: { args: [T.i32, T.i64, T.i64, T.u32], returns: T.i32 } });
    return lib.symbols.sync_file_range as SyncFileRange;
  } catch {
    return undefined;
  }
}

/** Runs whenever a CPU is free, and yields to every other thread that wants one. */
export const SCHED_IDLE = 5;
/** The normal policy. */
export const SCHED_OTHER = 0;

/**
 * sched_setscheduler(0, policy, {0}), which on Linux applies to the calling thread alone; true
 * when it took effect. Leaving SCHED_IDLE needs root (CAP_SYS_NICE) or an RLIMIT_NICE that allows it.
 */
export function setThreadPolicy(policy: number): boolean {
  try {
    const ffi = require("bun:ffi") as typeof import("bun:ffi");
    const T = ffi.FFIType;
    const param = new Int32Array(1);
    const lib = ffi.dlopen("libc.so.6", { sched_setscheduler: { args: [T.i32, T.i32, T.ptr], returns: T.i32 } });
    return lib.symbols.sched_setscheduler(0, policy, ffi.ptr(param)) === 0;
  } catch {
    return false;
  }
}
