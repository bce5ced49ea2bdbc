/**
 * zstd compression through the system's libzstd (bun:ffi), with one compression context per
 * thread and output buffers that are used again.
 *
 * Why: `Bun.zstdCompressSync` sets up a new context and a new output buffer for every call.
 * For the archive's pieces (~190 KiB) that set-up costs as much as the compression itself:
 * measured on the bench tree's large files in 190 KiB pieces at level 3, 105 MiB/s against
 * 200 MiB/s with a context kept from piece to piece, and 1.6 times the page faults. The frames
 * are standard zstd frames either way.
 *
 * The code is a string because it runs inside the compression workers (inline-worker.ts);
 * `openLibzstd()` there answers undefined where the library or bun:ffi is missing, and the
 * worker compresses with Bun's own zstd as before.
 */

/** libzstd's file name, tried in this order: the soname every Linux distribution installs, then macOS's usual places. */
export const LIBZSTD_NAMES = ["libzstd.so.1", "libzstd.1.dylib", "/opt/homebrew/lib/libzstd.1.dylib", "/usr/local/lib/libzstd.1.dylib"];

export interface Libzstd {
  /** e.g. "libzstd 1.5.4" */
  version: string;
  /** Compress `input` into one zstd frame at the start of `out`; the frame's length. Throws libzstd's error. */
  compress(input: Uint8Array, out: ArrayBuffer, level: number): number;
  /** The most bytes a frame of `n` input bytes can take. */
  bound(n: number): number;
}

export const LIBZSTD_SOURCE = `
  function openLibzstd() {
    let ffi;
    try {
      ffi = require("bun:ffi");
    } catch {
      return undefined;
    }
    const T = ffi.FFIType;
    for (const name of ${JSON.stringify(LIBZSTD_NAMES)}) {
      let lib;
      try {
        lib = ffi.dlopen(name, {
          ZSTD_versionNumber: { args: [], returns: T.u32 },
          ZSTD_createCCtx: { args: [], returns: T.ptr },
          ZSTD_compressCCtx: { args: [T.ptr, T.ptr, T.u64, T.ptr, T.u64, T.i32], returns: T.u64_fast },
          ZSTD_compressBound: { args: [T.u64], returns: T.u64_fast },
          ZSTD_isError: { args: [T.u64], returns: T.u32 },
          ZSTD_getErrorName: { args: [T.u64], returns: T.cstring },
        });
      } catch {
        continue;
      }
      const z = lib.symbols;
      const cctx = z.ZSTD_createCCtx();
      if (!cctx) {
        lib.close();
        continue;
      }
      const v = z.ZSTD_versionNumber();
      return {
        version: "libzstd " + Math.floor(v / 10000) + "." + (Math.floor(v / 100) % 100) + "." + (v % 100),
        compress(input, out, level) {
          if (input.length === 0) throw new Error("libzstd: no input");
          const r = z.ZSTD_compressCCtx(cctx, ffi.ptr(out), out.byteLength, ffi.ptr(input), input.length, level);
          if (typeof r !== "number" || z.ZSTD_isError(r)) throw new Error("libzstd: " + z.ZSTD_getErrorName(r));
          return r;
        },
        bound(n) {
          return z.ZSTD_compressBound(n);
        },
      };
    }
    return undefined;
  }`;

/** The same code on this thread (for tests and for checking what a worker would find). */
export function openLibzstd(): Libzstd | undefined {
  return new Function("require", `${LIBZSTD_SOURCE}\nreturn openLibzstd();`)(require) as Libzstd | undefined;
}
