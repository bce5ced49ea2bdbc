import { describe, expect, test } from "bun:test";
import { compileExcludes } from "../../src/core/scan/exclude.ts";

const cases: Array<[string, string, boolean, boolean]> = [
  // pattern, path, isDir, excluded
  ["*.tmp", "/home/a/x.tmp", false, true],
  ["*.tmp", "/home/a/x.tmp.keep", false, false],
  ["*.tmp", "/x.tmp", false, true],
  ["/home/*/.cache", "/home/ann/.cache", true, true],
  ["/home/*/.cache", "/home/ann/sub/.cache", true, false],
  ["/home/*/.cache", "/srv/home/ann/.cache", true, false],
  [".cache", "/home/ann/sub/.cache", true, true],
  ["logs/*.gz", "/var/app/logs/a.gz", false, true],
  ["logs/*.gz", "/var/app/logs/old/a.gz", false, false],
  ["/var/**/cache", "/var/a/b/c/cache", true, true],
  ["/var/**/cache", "/var/cache", true, true],
  ["build/", "/src/build", true, true],
  ["build/", "/src/build", false, false],
  ["file?.txt", "/a/file1.txt", false, true],
  ["file?.txt", "/a/file10.txt", false, false],
  ["[ab].txt", "/a/b.txt", false, true],
  ["[!ab].txt", "/a/b.txt", false, false],
  ["a.b", "/x/aXb", false, false],
  ["(x)+", "/x/(x)+", false, true],
];

describe("exclude patterns", () => {
  for (const [pattern, path, isDir, want] of cases) {
    test(`${pattern} ${want ? "excludes" : "keeps"} ${path}${isDir ? "/" : ""}`, () => {
      expect(compileExcludes([pattern]).excluded(path, isDir)).toBe(want);
    });
  }
});
