/**
 * Calls into the C library through bun:ffi, as worker source text: each defines a function
 * that does nothing (or returns undefined) where the library is not glibc's, so a worker that
 * uses one still works there, only without the help.
 */

/**
 * `openSyncRange()`: sync_file_range(2), or undefined. Called with SYNC_FILE_RANGE_WRITE it
 * starts writing a range back and does not wait; a write-back error is left for the fsync that
 * follows, which reports it.
 */
export const OPEN_SYNC_RANGE_SOURCE = `
  function openSyncRange() {
    try {
      const ffi = require("bun:ffi");
      const T = ffi.FFIType;
      return ffi.dlopen("libc.so.6", { sync_file_range: { args: [T.i32, T.i64, T.i64, T.u32], returns: T.i32 } }).symbols.sync_file_range;
    } catch {
      return undefined;
    }
  }`;

/** SYNC_FILE_RANGE_WRITE: start write-back of the range, without waiting for it. */
export const SYNC_FILE_RANGE_WRITE = 2;

/**
 * `setThreadPolicy(policy)`: sched_setscheduler(0, policy, {0}), which on Linux applies to the
 * calling thread alone; true when it took effect. Leaving SCHED_IDLE needs root (CAP_SYS_NICE)
 * or an RLIMIT_NICE that allows it.
 */
export const SET_THREAD_POLICY_SOURCE = `
  function setThreadPolicy(policy) {
    try {
      const ffi = require("bun:ffi");
      const T = ffi.FFIType;
      const param = new Int32Array(1);
      const lib = ffi.dlopen("libc.so.6", { sched_setscheduler: { args: [T.i32, T.i32, T.ptr], returns: T.i32 } });
      return lib.symbols.sched_setscheduler(0, policy, ffi.ptr(param)) === 0;
    } catch {
      return false;
    }
  }`;

/** Runs whenever a CPU is free, and yields to every other thread that wants one. */
export const SCHED_IDLE = 5;
/** The normal policy. */
export const SCHED_OTHER = 0;
