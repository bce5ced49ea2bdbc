/**
 * The first of several shared libraries that loads and sets up, through bun:ffi.
 *
 * Why one helper: the same library lives under different names on Linux and macOS, and a
 * library that loads may still fail its set-up (a context it cannot allocate). Each caller
 * gives the names in order, the symbols it needs and its set-up; a library whose set-up
 * answers undefined is closed and the next name tried. Without bun:ffi, or with no name
 * that serves, the answer is undefined and the caller does without.
 */
import type { FFIFunction, Library } from "bun:ffi";

export type Ffi = typeof import("bun:ffi");

export function firstLibrary<S extends Record<string, FFIFunction>, R>(
  names: readonly string[],
  symbols: (T: Ffi["FFIType"]) => S,
  setUp: (lib: Library<S>, ffi: Ffi) => R | undefined,
): R | undefined {
  let ffi: Ffi;
  try {
    // required lazily: a runtime without bun:ffi must still run
    ffi = require("bun:ffi");
  } catch {
    return undefined;
  }
  const wanted = symbols(ffi.FFIType);
  for (const name of names) {
    let lib: Library<S>;
    try {
      lib = ffi.dlopen(name, wanted);
    } catch {
      continue;
    }
    const made = setUp(lib, ffi);
    if (made !== undefined) return made;
    lib.close();
  }
  return undefined;
}
