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
