/**
 * The bench's round-by-round spread (bench/lib.ts `roundSpread`): each round's ratio is taken
 * between the two runs made next to each other, not between sorted times.
 */
import { expect, test } from "bun:test";
import { roundSpread, type Measured } from "../../bench/lib.ts";

const run = (rounds?: number[]): Measured => ({ wallMs: rounds?.[0] ?? 1, cpuMs: 0, peakRss: 0, stdout: "", rounds });

test.each([
  ["three rounds, paired in order", [90, 200, 110], [100, 180, 100], "rounds 0.90–1.11"],
  ["one round: nothing to spread", [90], [100], ""],
  ["no rounds at all", undefined, undefined, ""],
  ["rounds of different counts: the shorter decides", [100, 300, 50], [100, 200], "rounds 1.00–1.50"],
] as const)("%s", (_what, a, b, want) => {
  expect(roundSpread(run(a ? [...a] : undefined), run(b ? [...b] : undefined))).toBe(want);
});
