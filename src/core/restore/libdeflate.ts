/**
 * gzip members decompressed by the system's libdeflate (bun:ffi), one call each, into an output
 * buffer of a fixed size.
 *
 * Why: libdeflate decompresses a whole member in well under the time zlib's stream takes, and
 * its `_ex` call says how many bytes the member took, so the next one is found exactly where a
 * sequential reader finds it. Bun's own `gunzipSync` says neither where a member ends nor
 * stops at a size: a small hostile member could grow its output without bound. A missing
 * library (package libdeflate0 on Debian) only means the stream decompressor does all of it.
 */
import type { Pointer } from "bun:ffi";
import { firstLibrary } from "../common/shared-library.ts";

/** libdeflate's file name, tried in this order: the Linux soname, then macOS's usual places. */
export const LIBDEFLATE_NAMES = [
  "libdeflate.so.0",
  "libdeflate.0.dylib",
  "/opt/homebrew/lib/libdeflate.0.dylib",
  "/usr/local/lib/libdeflate.0.dylib",
];

/** One member decompressed: its bytes in the file and what it held. */
export interface Member {
  read: number;
  wrote: number;
}

/** What a call answered: the member, no whole member ("bad"), or more output than the buffer holds ("room"). */
export type MemberResult = Member | "bad" | "room";

export interface Libdeflate {
  /** Decompress the gzip member at the start of `input` (bytes after it are left alone) into `out`. */
  gunzipMember(input: Uint8Array, out: Uint8Array): MemberResult;
}

/** libdeflate_result: LIBDEFLATE_SUCCESS, and the one that says the output did not fit. */
const SUCCESS = 0;
const INSUFFICIENT_SPACE = 3;

export function openLibdeflate(names: readonly string[] = LIBDEFLATE_NAMES): Libdeflate | undefined {
  return firstLibrary(
    names,
    (T) => ({
      libdeflate_alloc_decompressor: { args: [], returns: T.ptr },
      libdeflate_gzip_decompress_ex: { args: [T.ptr, T.ptr, T.u64, T.ptr, T.u64, T.ptr, T.ptr], returns: T.i32 },
    }),
    (lib, ffi): Libdeflate | undefined => {
      const d = lib.symbols.libdeflate_alloc_decompressor() as Pointer | null;
      if (!d) return undefined;
      const call = lib.symbols.libdeflate_gzip_decompress_ex;
      // the two size_t answers: bytes of input taken, bytes of output written
      const sizes = new BigUint64Array(2);
      const readAt = ffi.ptr(sizes);
      const wroteAt = ffi.ptr(sizes, 8);
      return {
        gunzipMember(input, out) {
          if (input.length === 0 || out.byteLength === 0) return "bad";
          const r = call(d, ffi.ptr(input), input.length, ffi.ptr(out), out.byteLength, readAt, wroteAt) as number;
          if (r === INSUFFICIENT_SPACE) return "room";
          if (r !== SUCCESS) return "bad";
          return { read: Number(sizes[0]), wrote: Number(sizes[1]) };
        },
      };
    },
  );
}
