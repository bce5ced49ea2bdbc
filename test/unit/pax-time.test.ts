/**
 * parsePaxTime (src/core/archive/tar.ts) reads the usual form of a pax time without its
 * regular expression: for every form, usual or not, it must give what the regular
 * expression's reading gives.
 */
import { expect, test } from "bun:test";
import { parsePaxTime } from "../../src/core/archive/tar.ts";

/** The general reading, kept here as the reference. */
function reference(v: string): bigint | undefined {
  const m = /^(-?)(\d{1,19})(?:\.(\d*))?$/.exec(v);
  if (!m) return undefined;
  const ns = BigInt(m[2]!) * 1_000_000_000n + BigInt((m[3] ?? "").slice(0, 9).padEnd(9, "0"));
  return m[1] ? -ns : ns;
}

test.each([
  ["1733390000.123456789", 1733390000123456789n],
  ["1733390000", 1733390000000000000n],
  ["1733390000.", 1733390000000000000n],
  ["1733390000.5", 1733390000500000000n],
  ["0.000000001", 1n],
  ["1733390000.1234567891234", 1733390000123456789n],
  ["-1.5", -1500000000n],
  ["123456789012345", 123456789012345000000000n],
  ["1234567890123456", 1234567890123456000000000n],
  ["12345678901234567890", undefined],
  ["", undefined],
  [".5", undefined],
  ["1.5x", undefined],
  ["1e9", undefined],
  [" 1", undefined],
  ["1.-5", undefined],
] as const)("%p", (v, want) => {
  expect(parsePaxTime(v)).toBe(want);
  expect(parsePaxTime(v)).toBe(reference(v));
});

test("every string of up to four characters from 1, 0, ., -, x reads as the regular expression reads it", () => {
  let n = 0;
  const grow = (s: string): void => {
    expect(parsePaxTime(s)).toBe(reference(s));
    n++;
    if (s.length < 4) for (const c of ["1", "0", ".", "-", "x"]) grow(s + c);
  };
  grow("");
  expect(n).toBe(1 + 5 + 25 + 125 + 625);
});
