/**
 * The deep check's comparison of an archive's entries with the server's file list, merged as
 * both stream by: what it finds for each kind of difference, and that it reads the list only as
 * far as the archive has come.
 */
import { describe, expect, test } from "bun:test";
import { ListComparison } from "../../src/core/restore/verify.ts";
import { LIST_FORMAT, LIST_VERSION, type ListHeader } from "../../src/core/scan/scan.ts";
import type { TarListing } from "../../src/core/archive/tar.ts";

type Kind = "file" | "dir" | "symlink" | "hardlink";

/** A list line as the server writes it: name, type, mode, uid, gid, size, then fields the comparison does not read. */
function line(name: string, type: Kind = "file", size = 10): string {
  return JSON.stringify([name, type, 0o644, 0, 0, size, 0, 0, 0, null]);
}

function entry(name: string, type: Kind = "file", size = 10): TarListing {
  return { name, type, size } as TarListing;
}

function header(entries: number): ListHeader {
  return { format: LIST_FORMAT, v: LIST_VERSION, archive: "x.tar", entries } as ListHeader;
}

/** Compare `archive` with `list`; the list is an iterator that counts how far it was read. */
function compare(list: string[], archive: TarListing[], opts: { warned?: string[]; entries?: number } = {}): { readBefore: number[]; result: Result } {
  let read = 0;
  const lines = (function* () {
    for (const l of list) {
      read++;
      yield l;
    }
  })();
  const c = new ListComparison(header(opts.entries ?? list.filter((l) => l !== "").length), lines, new Set(opts.warned ?? []));
  const readBefore: number[] = [];
  for (const e of archive) {
    readBefore.push(read);
    c.add(e);
  }
  c.finish();
  const found = (f: Named) => (f.count ? { count: f.count, names: f.names } : undefined);
  return {
    readBefore,
    result: {
      extra: found(c.extra), duplicate: found(c.duplicate), typeDiff: found(c.typeDiff), sizeDiff: found(c.sizeDiff), missing: found(c.missing),
      explained: c.explained, damaged: c.damaged, outOfOrder: c.outOfOrder,
    },
  };
}

interface Named {
  count: number;
  names: string[];
}
interface Result {
  extra?: Named;
  duplicate?: Named;
  typeDiff?: Named;
  sizeDiff?: Named;
  missing?: Named;
  explained: number;
  damaged?: string;
  outOfOrder?: string;
}
const same: Result = { extra: undefined, duplicate: undefined, typeDiff: undefined, sizeDiff: undefined, missing: undefined, explained: 0, damaged: undefined, outOfOrder: undefined };
const tree = ["etc", "etc/a", "etc/b", "etc/b/c", "etc/b-d", "etc/z"];

describe("ListComparison", () => {
  const cases: Array<{ name: string; list: string[]; archive: TarListing[]; warned?: string[]; entries?: number; want: Partial<Result> }> = [
    { name: "an archive that holds the list", list: tree.map((n) => line(n)), archive: tree.map((n) => entry(n)), want: {} },
    { name: "a hard link stored as the file itself", list: [line("a"), line("b", "hardlink", 0)], archive: [entry("a"), entry("b", "file", 10)], want: {} },
    { name: "listed entries the archive lacks, in the middle and at the end", list: tree.map((n) => line(n)), archive: [entry("etc"), entry("etc/a"), entry("etc/b-d")], want: { missing: { count: 3, names: ["etc/b", "etc/b/c", "etc/z"] } } },
    { name: "an entry the list does not hold", list: [line("a"), line("c")], archive: [entry("a"), entry("b"), entry("c")], want: { extra: { count: 1, names: ["b"] } } },
    { name: "an entry twice", list: [line("a"), line("b")], archive: [entry("a"), entry("a"), entry("b")], want: { duplicate: { count: 1, names: ["a"] } } },
    {
      name: "entries that go back in the list's order: compared up to there, the rest of the list not counted",
      list: tree.map((n) => line(n)), archive: [entry("etc"), entry("etc/b"), entry("etc/a"), entry("etc/z")],
      want: { missing: { count: 1, names: ["etc/a"] }, outOfOrder: "/etc/a comes after /etc/b" },
    },
    { name: "an entry again, later: out of order", list: [line("a"), line("b")], archive: [entry("a"), entry("b"), entry("a")], want: { outOfOrder: "/a comes after /b" } },
    { name: "a different type", list: [line("a", "dir", 0)], archive: [entry("a", "file", 0)], want: { typeDiff: { count: 1, names: ["a (dir in the list, file in the archive)"] } } },
    { name: "a different size", list: [line("a", "file", 5)], archive: [entry("a", "file", 7)], want: { sizeDiff: { count: 1, names: ["a (5 → 7 bytes)"] } } },
    { name: "differences the run warned about are counted apart", list: [line("a", "file", 5), line("b")], archive: [entry("a", "file", 7)], warned: ["/a", "/b"], want: { explained: 2 } },
    {
      name: "many differences: the first three named, all counted",
      list: ["a", "b", "c", "d", "e"].map((n) => line(n)), archive: [], want: { missing: { count: 5, names: ["a", "b", "c"] } },
    },
    { name: "a list shorter than its header says", list: [line("a")], archive: [entry("a")], entries: 2, want: { damaged: "it holds 1 entries, its header says 2 (truncated?)" } },
    { name: "a line that is not an entry", list: [line("a"), "garbage", line("b")], archive: [entry("a"), entry("b")], want: { damaged: "line 3 is not an entry" } },
    { name: "empty lines are not entries", list: [line("a"), "", line("b")], archive: [entry("a"), entry("b")], want: {} },
  ];
  for (const c of cases) {
    test(c.name, () => {
      expect(compare(c.list, c.archive, { warned: c.warned, entries: c.entries }).result).toEqual({ ...same, ...c.want });
    });
  }

  test("the list is read only as far as the archive has come", () => {
    const names = Array.from({ length: 1000 }, (_, i) => `d/${String(i).padStart(4, "0")}`);
    const { readBefore, result } = compare(names.map((n) => line(n)), names.map((n) => entry(n)));
    expect(result).toEqual(same);
    // before the i-th entry, the list has been read up to the i-th line (the one it is compared with)
    expect(readBefore.every((r, i) => r === i + 1)).toBe(true);
  });
});
