import { describe, expect, test } from "bun:test";
import { firstLibrary } from "../../src/core/common/shared-library.ts";

const getpid = (T: typeof import("bun:ffi").FFIType) => ({ getpid: { args: [], returns: T.i32 } });

describe("firstLibrary", () => {
  test("a name that does not load is passed over for the next", () => {
    const pid = firstLibrary(["libnothing-such.so.9", "libc.so.6"], getpid, (lib) => lib.symbols.getpid() as number);
    expect(pid).toBe(process.pid);
  });

  test("a library whose set-up answers undefined is closed and the next name tried", () => {
    const tried: string[] = [];
    const names = ["libc.so.6", "libc.so.6"];
    const made = firstLibrary(names, getpid, (lib) => {
      tried.push("set-up");
      const first = tried.length === 1;
      const pid = lib.symbols.getpid() as number;
      return first ? undefined : `second answered ${pid}`;
    });
    expect(tried).toEqual(["set-up", "set-up"]);
    expect(made).toBe(`second answered ${process.pid}`);
  });

  test("no name that serves: undefined, nothing thrown", () => {
    expect(firstLibrary(["libnothing-such.so.9"], getpid, () => 1)).toBeUndefined();
    expect(firstLibrary([], getpid, () => 1)).toBeUndefined();
    expect(firstLibrary(["libc.so.6"], getpid, () => undefined)).toBeUndefined();
  });
});
