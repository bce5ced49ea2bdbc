/**
 * When a restore's check may take the SHA-256 alone (src/core/restore/restore.ts,
 * sha256Suffices): only while the file list records it and the very MD5 the .md5 file gives.
 * The behaviour on real archives is in test/e2e/restore.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { sha256Suffices } from "../../src/core/restore/restore.ts";
import type { HeldArchive } from "../../src/core/restore/verify.ts";
import type { ListHeader } from "../../src/core/scan/scan.ts";

const MD5 = "0123456789abcdef0123456789abcdef";
const OTHER = "fedcba9876543210fedcba9876543210";
const SHA = "ab".repeat(32);

function held(checksumFile: HeldArchive["checksumFile"], md5: string | undefined, list?: Partial<ListHeader>): HeldArchive {
  const header = list && { format: "shoot-list", v: 1, archive: "a.tar.gz", entries: 1, bytes: 1, ...list };
  return { role: "file", owner: "", dir: "/x", file: "a.tar.gz", path: "/x/a.tar.gz", bytes: 10, checksumFile, md5, list: header };
}

describe("sha256Suffices", () => {
  const cases: Array<[string, HeldArchive, boolean, boolean]> = [
    ["the list records the SHA-256 and the .md5 file's MD5", held("ok", MD5, { md5: MD5, sha256: SHA }), true, true],
    ["the list's MD5 differs from the .md5 file's", held("ok", MD5, { md5: OTHER, sha256: SHA }), true, false],
    ["the list records no MD5", held("ok", MD5, { sha256: SHA }), true, false],
    ["the list records no SHA-256", held("ok", MD5, { md5: MD5 }), true, false],
    ["no list", held("ok", MD5), true, false],
    ["no .md5 file", held("missing", undefined, { md5: MD5, sha256: SHA }), true, false],
    ["a .md5 file that is not one line for it", held("bad", undefined, { md5: MD5, sha256: SHA }), true, false],
    ["a list whose size is not the file's", held("size-mismatch", MD5, { md5: MD5, sha256: SHA }), true, false],
    ["--no-checksum: the list's SHA-256 stands for its own MD5", held("missing", undefined, { md5: MD5, sha256: SHA }), false, true],
    ["--no-checksum without the list's SHA-256", held("missing", undefined, { md5: MD5 }), false, false],
  ];
  for (const [what, a, checksum, want] of cases) {
    test(`${what}: ${want ? "the SHA-256 alone" : "both digests"}`, () => {
      expect(sha256Suffices(a, checksum)).toBe(want);
    });
  }
});
