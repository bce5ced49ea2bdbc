import { describe, expect, test } from "bun:test";
import { changedRuns, decodePieceIndex, encodePieceIndex } from "../../src/core/archive/piece-index.ts";

const T = 10_000;
const h = (...xs: number[]) => BigUint64Array.from(xs.map(BigInt));

describe("piece index", () => {
  test("reads back what it wrote, hashes of all 64 bits included", () => {
    const hashes = h(1, 2, 3);
    hashes[1] = 0xffff_ffff_ffff_ffffn;
    const bytes = encodePieceIndex(hashes);
    expect(bytes.length).toBe(16 + 3 * 8);
    expect(decodePieceIndex(bytes)).toEqual(hashes);
    expect(decodePieceIndex(encodePieceIndex(h()))).toEqual(h());
  }, T);

  const notIndexes: Array<[string, Uint8Array]> = [
    ["empty", new Uint8Array(0)],
    ["shorter than its header", encodePieceIndex(h(1)).subarray(0, 10)],
    ["a hash cut short", encodePieceIndex(h(1, 2)).subarray(0, 16 + 12)],
    ["another file", new TextEncoder().encode("shoot-list 1\n\0\0\0" + "12345678")],
    ["another version", (() => {
      const b = encodePieceIndex(h(1));
      b[13] = "2".charCodeAt(0);
      return b;
    })()],
  ];
  for (const [what, bytes] of notIndexes) test(`not an index: ${what}`, () => expect(decodePieceIndex(bytes)).toBeUndefined(), T);

  // pieces by hash: runs of consecutive pieces the earlier archive does not hold anywhere
  const runs: Array<[string, number[], number[], number]> = [
    ["the same archive", [1, 2, 3, 4], [1, 2, 3, 4], 0],
    ["one piece changed", [1, 2, 3, 4], [1, 9, 3, 4], 1],
    ["two pieces next to each other changed", [1, 2, 3, 4], [1, 8, 9, 4], 1],
    ["two apart", [1, 2, 3, 4, 5], [1, 8, 3, 9, 5], 2],
    ["the first and the last", [1, 2, 3], [7, 2, 9], 2],
    ["a piece deleted: nothing new to send", [1, 2, 3], [1, 3], 0],
    ["a piece inserted", [1, 2, 3], [1, 2, 7, 3], 1],
    ["pieces moved elsewhere (a directory renamed) cost no place", [1, 2, 3, 4], [3, 4, 1, 2], 0],
    ["everything new", [1, 2], [5, 6, 7], 1],
    ["nothing before", [], [5, 6, 7], 1],
  ];
  for (const [what, before, after, want] of runs) {
    test(`places: ${what} → ${want}`, () => expect(changedRuns(h(...before), h(...after))).toBe(want), T);
  }
});
