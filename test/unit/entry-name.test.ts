/**
 * splitEntryName and keyOf (src/core/restore/extract.ts): the usual name takes a short way,
 * which must give exactly what the general way gives, for every name a hostile archive may
 * hold (empty components, ".", "..", slashes at either end), and keyOf the same as joining.
 */
import { expect, test } from "bun:test";
import { keyOf, splitEntryName } from "../../src/core/restore/extract.ts";

/** The general way, kept here as the reference. */
function reference(raw: string): { parts: string[] } | { why: string } {
  if (raw.startsWith("/")) return { why: "absolute path" };
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return { why: "path with '..'" };
  return { parts };
}

test.each([
  ["etc/hosts", ["etc", "hosts"]],
  ["etc/", ["etc"]],
  ["a.b/c..d/.e", ["a.b", "c..d", ".e"]],
  ["./etc/hosts", ["etc", "hosts"]],
  ["etc//hosts", ["etc", "hosts"]],
  ["etc/./hosts/.", ["etc", "hosts"]],
  ["etc/../../x", "path with '..'"],
  ["..", "path with '..'"],
  ["/etc/hosts", "absolute path"],
  ["", []],
  [".", []],
  ["./", []],
  ["a//", ["a"]],
] as const)("%p", (raw, want) => {
  const got = splitEntryName(raw);
  expect(got).toEqual(typeof want === "string" ? { why: want } : { parts: [...want] });
  expect(got).toEqual(reference(raw));
});

test("every name of up to five characters from a, /, . gives what the general way gives", () => {
  let n = 0;
  const grow = (s: string): void => {
    expect(splitEntryName(s)).toEqual(reference(s));
    n++;
    if (s.length < 5) for (const c of ["a", "/", "."]) grow(s + c);
  };
  grow("");
  expect(n).toBe(1 + 3 + 9 + 27 + 81 + 243);
});

test.each([
  [["a", "b", "c"], 3, "a/b/c"],
  [["a", "b", "c"], 1, "a"],
  [["a", "b", "c"], 0, ""],
  [["a", "b"], 5, "a/b"],
  [[], 0, ""],
] as const)("keyOf(%p, %p) = %p", (parts, n, want) => {
  expect(keyOf(parts, n)).toBe(want);
  expect(keyOf(parts, n)).toBe(parts.slice(0, n).join("/"));
});
