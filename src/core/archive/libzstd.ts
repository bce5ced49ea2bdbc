/**
 * zstd through the system's libzstd (bun:ffi), with one compression and one decompression
 * context per thread and output buffers that are used again.
 *
 * Why: `Bun.zstdCompressSync` sets up a new context and a new output buffer for every call;
 * for the archive's pieces that set-up costs as much as the compression itself. The frames are
 * standard zstd frames either way. `openLibzstd()` answers undefined where the library or
 * bun:ffi is missing, and the compression workers use Bun's own zstd instead.
 */
import type { Pointer } from "bun:ffi";
import { firstLibrary } from "../common/shared-library.ts";

/** libzstd's file name, tried in this order: the soname every Linux distribution installs, then macOS's usual places. */
export const LIBZSTD_NAMES = ["libzstd.so.1", "libzstd.1.dylib", "/opt/homebrew/lib/libzstd.1.dylib", "/usr/local/lib/libzstd.1.dylib"];

export interface Libzstd {
  /** e.g. "libzstd 1.5.4" */
  version: string;
  /** Compress `input` into one zstd frame at the start of `out`; the frame's length. Throws libzstd's error. */
  compress(input: Uint8Array, out: ArrayBuffer, level: number): number;
  /** Decompress the frames in `input` into `out`; the bytes written. Throws libzstd's error (too small an `out` included). */
  decompress(input: Uint8Array, out: ArrayBuffer | Uint8Array): number;
  /** The most bytes a frame of `n` input bytes can take. */
  bound(n: number): number;
}

export function openLibzstd(): Libzstd | undefined {
  return firstLibrary(
    LIBZSTD_NAMES,
    (T) => ({
      ZSTD_versionNumber: { args: [], returns: T.u32 },
      ZSTD_createCCtx: { args: [], returns: T.ptr },
      ZSTD_createDCtx: { args: [], returns: T.ptr },
      ZSTD_compressCCtx: { args: [T.ptr, T.ptr, T.u64, T.ptr, T.u64, T.i32], returns: T.u64_fast },
      ZSTD_decompressDCtx: { args: [T.ptr, T.ptr, T.u64, T.ptr, T.u64], returns: T.u64_fast },
      ZSTD_compressBound: { args: [T.u64], returns: T.u64_fast },
      ZSTD_isError: { args: [T.u64], returns: T.u32 },
      ZSTD_getErrorName: { args: [T.u64], returns: T.cstring },
    }),
    (lib, ffi): Libzstd | undefined => {
      const z = lib.symbols;
      const cctx = z.ZSTD_createCCtx() as Pointer | null;
      const dctx = z.ZSTD_createDCtx() as Pointer | null;
      if (!cctx || !dctx) return undefined;
      const v = z.ZSTD_versionNumber() as number;
      const checked = (r: number | bigint): number => {
        if (typeof r !== "number" || z.ZSTD_isError(r)) throw new Error(`libzstd: ${String(z.ZSTD_getErrorName(r))}`);
        return r;
      };
      return {
        version: `libzstd ${Math.floor(v / 10000)}.${Math.floor(v / 100) % 100}.${v % 100}`,
        compress(input, out, level) {
          if (input.length === 0) throw new Error("libzstd: no input");
          return checked(z.ZSTD_compressCCtx(cctx, ffi.ptr(out), out.byteLength, ffi.ptr(input), input.length, level) as number);
        },
        decompress(input, out) {
          if (input.length === 0) throw new Error("libzstd: no input");
          return checked(z.ZSTD_decompressDCtx(dctx, ffi.ptr(out), out.byteLength, ffi.ptr(input), input.length) as number);
        },
        bound(n) {
          return z.ZSTD_compressBound(n) as number;
        },
      };
    },
  );
}
