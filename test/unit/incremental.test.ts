/**
 * The pure parts of incremental archives, case by case: names with levels, chains and what
 * retention must spare, the chain a client is told to pull (hostile records included), dumpdir
 * records and their check against a list, the merge that decides what an archive holds, and
 * the times `restore --at` takes.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { DumpdirCheck, dumpdirRecord, finishDumpdir, parseDumpdir } from "../../src/core/archive/incremental.ts";
import { encodeHeader, TarParser, type TarListing } from "../../src/core/archive/tar.ts";
import { judgeChain } from "../../src/core/client/chain.ts";
import { parseConfig } from "../../src/core/common/config.ts";
import { NEWEST, parseAt, pointAt } from "../../src/core/restore/chain.ts";
import type { HeldArchive } from "../../src/core/restore/verify.ts";
import { DumpdirStore, markChanges } from "../../src/core/scan/changes.ts";
import { archivesNeeded, chainOf, levelOf, sparingChains } from "../../src/core/state/chain.ts";
import { archiveName, isArchiveName, parseArchiveName } from "../../src/core/state/naming.ts";
import { tempDir } from "../helpers/fixture.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const day = (d: number, level = 0) => archiveName("web1", new Date(Date.UTC(2025, 0, d, 3)), "gzip", level);

describe("archive names with levels", () => {
  test.each([
    ["web1-20250101-030000.tar.gz", 0],
    ["web1-20250101-030000-L1.tar.gz", 1],
    ["web1-20250101-030000-2-L17.tar.zst", 17],
    ["web1-20250101-030000-L9999.tar", 9999],
    ["web1-20250101-030000-L0.tar.gz", undefined],
    ["web1-20250101-030000-L01.tar.gz", undefined],
    ["web1-20250101-030000-L10000.tar.gz", undefined],
    ["web1-20250101-030000-L1-2.tar.gz", undefined],
    ["web1-20250101-030000-l1.tar.gz", undefined],
    ["../web1-20250101-030000-L1.tar.gz", undefined],
  ])("%s → level %p", (name, level) => {
    expect(levelOf(name)).toBe(level as number | undefined);
    expect(isArchiveName(name)).toBe(level !== undefined);
  });

  test("archiveName writes the level, and the level does not change the sort key", () => {
    expect(day(3, 2)).toBe("web1-20250103-030000-L2.tar.gz");
    expect(parseArchiveName(day(3, 2))!.key).toBe(parseArchiveName(day(3))!.key);
  });
});

describe("chains from names", () => {
  const chainMode = [day(1), day(2, 1), day(3, 2), day(4, 3), day(5), day(6, 1), day(7, 2)];
  const differential = [day(1), day(2, 1), day(3, 1), day(4, 1), day(5), day(6, 1)];

  test.each([
    ["chain: a level-3 archive needs its full and levels 1, 2", chainMode, day(4, 3), [day(1), day(2, 1), day(3, 2), day(4, 3)]],
    ["chain: after a new full, the next chain starts there", chainMode, day(7, 2), [day(5), day(6, 1), day(7, 2)]],
    ["chain: a full needs itself", chainMode, day(5), [day(5)]],
    ["differential: each needs the newest full before it", differential, day(4, 1), [day(1), day(4, 1)]],
    ["differential: after a new full", differential, day(6, 1), [day(5), day(6, 1)]],
    ["other prefixes do not count", [...chainMode, "db-20250103-120000.tar.gz"], day(3, 2), [day(1), day(2, 1), day(3, 2)]],
  ])("%s", (_label, names, point, want) => {
    expect(chainOf(point, [...names].reverse())).toEqual({ ok: true, chain: want });
  });

  test("a missing link is named, with what was found", () => {
    expect(chainOf(day(4, 3), [day(1), day(3, 2), day(4, 3)])).toEqual({ ok: false, found: [day(3, 2), day(4, 3)], missing: `the level-1 archive before ${day(3, 2)}` });
    expect(chainOf(day(2, 1), [day(2, 1)])).toEqual({ ok: false, found: [day(2, 1)], missing: `the full archive before ${day(2, 1)}` });
    expect(archivesNeeded(day(4, 3), [day(1), day(3, 2), day(4, 3)])).toEqual([day(3, 2), day(4, 3)]);
  });

  test("retention spares every archive a kept restore point needs, and nothing else", () => {
    // keep = 2 of the chain mode list: the two newest points need the second full and its links
    expect(sparingChains(chainMode, chainMode.slice(0, 5))).toEqual([day(1), day(2, 1), day(3, 2), day(4, 3)]);
    // keep = 1 on a level-3 point: its whole chain stays
    expect(sparingChains(chainMode.slice(0, 4), chainMode.slice(0, 3))).toEqual([]);
    // differential: the full stays for every diff kept, the diffs between go
    expect(sparingChains(differential.slice(0, 4), differential.slice(0, 3))).toEqual([day(2, 1), day(3, 1)]);
  });
});

describe("judgeChain: the chain a status record tells the client to pull", () => {
  const link = (file: string) => ({ file, size: 1000, md5: "0".repeat(32), sha256: "1".repeat(64) });
  const a = { file: day(4, 3), size: 10, md5: "a".repeat(32) };
  const good = { level: 3, base: day(3, 2), chain: [link(day(1)), link(day(2, 1)), link(day(3, 2))] };

  test("a whole chain: fresh objects with the checked fields only", () => {
    const extra = { ...good, chain: good.chain.map((l) => ({ ...l, evil: "x" })) };
    expect(judgeChain(extra, a)).toEqual({ ok: true, links: good.chain, lists: true });
  });

  test("a full archive needs nothing; its list is kept when the server has incremental archives on", () => {
    const full = { file: day(1), size: 10, md5: "a".repeat(32) };
    expect(judgeChain(undefined, full)).toEqual({ ok: true, links: [], lists: false });
    expect(judgeChain({ level: 0 }, full)).toEqual({ ok: true, links: [], lists: true });
  });

  test.each([
    ["no chain for an incremental", {}, "lists no chain"],
    ["a level that is not the name's", { ...good, level: 2 }, "its name says 3"],
    ["too short", { ...good, chain: good.chain.slice(1) }, "needs 3 archive(s) before it"],
    ["a path", { ...good, chain: [link("../etc/passwd"), ...good.chain.slice(1)] }, "not a plain file name"],
    ["another server's archive", { ...good, chain: [link("db-20250101-030000.tar.gz"), ...good.chain.slice(1)] }, "not an archive of web1"],
    ["levels out of order", { ...good, chain: [link(day(1)), link(day(3, 2)), link(day(2, 1))] }, "is not of level 1"],
    ["a link newer than the archive", { ...good, chain: [link(day(1)), link(day(2, 1)), link(day(9, 2))] }, "is not older than"],
    ["two links at one time", { ...good, chain: [link(day(2)), link(day(2, 1)), link(day(3, 2))] }, "is not newer than"],
    ["an impossible size", { ...good, chain: [{ ...link(day(1)), size: -1 }, ...good.chain.slice(1)] }, "impossible size"],
    ["a bad checksum", { ...good, chain: [{ ...link(day(1)), md5: "x" }, ...good.chain.slice(1)] }, "32 hex digits"],
    ["a base that is not the last link", { ...good, base: day(2, 1) }, "its chain ends with"],
    ["not a record", { ...good, chain: [null, ...good.chain.slice(1)] }, "not a record"],
  ])("refused: %s", (_label, data, why) => {
    const v = judgeChain(data, a);
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.why).toContain(why);
  });
});

describe("dumpdirs", () => {
  test("records and their parse", () => {
    const d = finishDumpdir(dumpdirRecord("D", "sub") + dumpdirRecord("Y", "new\nline") + dumpdirRecord("N", "ünï"));
    expect(d).toBe("Dsub\0Ynew\nline\0Nünï\0\0");
    expect(parseDumpdir(d)).toEqual({ children: [{ flag: "D", name: "sub" }, { flag: "Y", name: "new\nline" }, { flag: "N", name: "ünï" }] });
    expect(parseDumpdir("\0")).toEqual({ children: [] });
  });

  test.each([
    ["Ya\0", "closing NUL"],
    ["Ya", "does not end with a NUL"],
    ["Rold\0Tnew\0\0", "rename record"],
    ["Qx\0\0", "unknown record"],
    ["Ya/b\0\0", "not a name in a directory"],
    ["Y\0\0", "not a name in a directory"],
  ])("refused: %j (%s)", (value, why) => {
    const r = parseDumpdir(value);
    expect("problem" in r && r.problem).toContain(why);
  });

  test("a dumpdir survives a pax header and TarParser gives it back", () => {
    const dumpdir = finishDumpdir(dumpdirRecord("Y", "a") + dumpdirRecord("N", "x".repeat(300)));
    const got: TarListing[] = [];
    const end = new Uint8Array(1024);
    new TarParser().push(new Uint8Array([...encodeHeader({ name: "srv/d", type: "dir", mode: 0o755, uid: 0, gid: 0, size: 0, mtimeNs: 0n, dumpdir }), ...end]), (e) => got.push(e));
    expect(got.map((e) => [e.name, e.type, e.dumpdir])).toEqual([["srv/d", "dir", dumpdir]]);
  });

  test("DumpdirCheck: what agrees with the list passes, with the unchanged names counted", () => {
    const c = new DumpdirCheck();
    const seen: Array<string | undefined> = [];
    seen.push(c.listed("r", true, true), c.directory("r", finishDumpdir(dumpdirRecord("Y", "a") + dumpdirRecord("D", "d") + dumpdirRecord("N", "z"))));
    seen.push(c.listed("r/a", false, true), c.listed("r/d", true, true), c.directory("r/d", finishDumpdir("")), c.listed("r/z", false, false), c.finish());
    expect(seen).toEqual([undefined, undefined, undefined, undefined, undefined, "unchanged", undefined]);
  });

  test.each([
    ["a listed name the dumpdir lacks", [["r/b", false, true]], "has \"a\" where the list has \"b\""],
    ["a dumpdir name the list lacks", [["r/a", false, true]], "which the file list does not have"],
    ["N for a name the archive holds", [["r/a", false, true], ["r/z", false, true]], "flags it N, but it is in the archive"],
    ["Y for a name the archive lacks", [["r/a", false, false]], "flags it Y, but it is not in the archive"],
    ["D for a file", [["r/a", false, true], ["r/z", true, true]], "flags it N, but it is a directory"],
  ])("DumpdirCheck finds %s", (_label, steps, want) => {
    const c = new DumpdirCheck();
    c.listed("r", true, true);
    c.directory("r", finishDumpdir(dumpdirRecord("Y", "a") + dumpdirRecord("N", "z")));
    const found = [...(steps as Array<[string, boolean, boolean]>).map(([n, d, h]) => c.listed(n, d, h)), c.finish()].filter((x) => x !== undefined && x !== "unchanged");
    expect(found.join(" | ")).toContain(want);
  });

  test("DumpdirCheck: names the run warned about may be in a dumpdir and not in the list", () => {
    const c = new DumpdirCheck((n) => n === "r/gone");
    c.listed("r", true, true);
    c.directory("r", finishDumpdir(dumpdirRecord("Y", "a") + dumpdirRecord("Y", "gone") + dumpdirRecord("Y", "z")));
    expect([c.listed("r/a", false, true), c.listed("r/z", false, true), c.finish()]).toEqual([undefined, undefined, undefined]);
  });
});

describe("markChanges: what an incremental archive holds", () => {
  const line = (name: string, type: string, ctime: number, size = 0, link: string | null = null) => `[${JSON.stringify(name)},"${type}",420,0,0,${size},1000,${ctime},7,${link === null ? "null" : JSON.stringify(link)}]`;
  const mark = (walk: string[], base: string[] | undefined, root = false) => {
    const d = tempDir("shoot-marks-");
    dirs.push(d);
    fs.writeFileSync(path.join(d, "walk"), walk.map((l) => `${l}\n`).join(""));
    const store = new DumpdirStore(path.join(d, "dumpdirs"));
    const out = markChanges({ walkList: path.join(d, "walk"), entries: walk.length, base: base?.[Symbol.iterator](), dumpdirs: store, withoutDumpdir: new Set(["s/mnt"]), rootIsSource: root });
    const dumpdirs = Array.from({ length: out.dirs }, (_, i) => store.get(i));
    const result = { marks: [...out.marks], archived: out.archived, changed: out.changed, bytes: out.bytes, dumpdirs, root: store.root };
    store.close();
    return result;
  };

  test("against a base: dirs always, others when their line differs (mode, ctime, type, …) or is new; dumpdirs in walk order", () => {
    const base = [line("s", "dir", 1), line("s/a", "file", 1, 5), line("s/b", "file", 1, 5), line("s/d", "dir", 1), line("s/d/x", "file", 1, 9), line("s/gone", "file", 1)];
    const walk = [line("s", "dir", 2), line("s/a", "file", 1, 5), line("s/b", "file", 2, 5), line("s/d", "dir", 1), line("s/d/x", "file", 1, 9), line("s/d/y", "symlink", 1, 0, "x"), line("s/mnt", "dir", 1), line("s/new\nname", "file", 3, 11)];
    expect(mark(walk, base)).toEqual({
      marks: [1, 0, 1, 1, 0, 1, 1, 1],
      archived: 6,
      changed: 3,
      bytes: 16,
      dumpdirs: ["Na\0Yb\0Dd\0Dmnt\0Ynew\nname\0\0", "Nx\0Yy\0\0", undefined],
      root: undefined,
    });
  });

  test("a full archive holds everything; \"/\" as a source gets its own dumpdir", () => {
    const walk = [line("etc", "dir", 1), line("etc/hosts", "file", 1, 3), line("var", "dir", 1)];
    expect(mark(walk, undefined, true)).toEqual({ marks: [1, 1, 1], archived: 3, changed: 1, bytes: 0, dumpdirs: ["Yhosts\0\0", "\0"], root: "Detc\0Dvar\0\0" });
  });

  test("a hard link line changes with its inode's ctime, so all the names of a changed inode are archived", () => {
    const base = [line("s", "dir", 1), line("s/a", "file", 1, 5), line("s/h", "hardlink", 1, 0, "s/a")];
    const walk = [line("s", "dir", 1), line("s/a", "file", 2, 5), line("s/h", "hardlink", 2, 0, "s/a"), line("s/k", "hardlink", 2, 0, "s/a")];
    expect(mark(walk, base).marks).toEqual([1, 1, 1, 1]);
  });
});

describe("restore --at", () => {
  test.each([
    ["newest", NEWEST.toISOString()],
    ["now", NEWEST.toISOString()],
    ["2025-01-05T03:00:00Z", "2025-01-05T03:00:00.000Z"],
    ["2025-01-05T03:00:00.250Z", "2025-01-05T03:00:00.000Z"],
    ["2025-01-05 04:30+01:30", "2025-01-05T03:00:00.000Z"],
    ["2025-01-05Z", "2025-01-05T23:59:59.999Z"],
  ])("%s → %s", (text, iso) => {
    expect(parseAt(text)?.toISOString()).toBe(iso);
  });

  test("a local time without a zone is the host's", () => {
    expect(parseAt("2025-01-05 03:00")?.getTime()).toBe(new Date(2025, 0, 5, 3, 0, 0).getTime());
    expect(parseAt("2025-01-05")?.getTime()).toBe(new Date(2025, 0, 5, 23, 59, 59, 999).getTime());
  });

  test.each(["yesterday", "2025-02-30", "2025-13-01", "2025-01-05 24:00", "5 Jan 2025", ""])("refused: %j", (text) => {
    expect(parseAt(text)).toBeUndefined();
  });

  test("the point is the newest archive made at or before the time", () => {
    const held = [day(1), day(2, 1), day(3, 2)].map((file) => ({ file, made: new Date(Date.UTC(2025, 0, Number(file.slice(11, 13)), 3)) }) as HeldArchive);
    expect(pointAt(held, new Date(Date.UTC(2025, 0, 2, 3)))?.file).toBe(day(2, 1));
    expect(pointAt(held, new Date(Date.UTC(2025, 0, 2, 2)))?.file).toBe(day(1));
    expect(pointAt(held, new Date(Date.UTC(2024, 11, 31)))).toBeUndefined();
  });

  test("newest is the newest archive even when its name is ahead of the clock (the next free second)", () => {
    const held = [day(1), day(2, 1)].map((file) => ({ file, made: new Date(Date.UTC(2025, 0, Number(file.slice(11, 13)), 3)) }) as HeldArchive);
    expect(pointAt(held, parseAt("newest")!)?.file).toBe(day(2, 1));
  });
});

describe("configuration", () => {
  const server = (extra: string) => parseConfig(`[server]\nsources = ["/etc"]\nbackup_dir = "/b"\n${extra}`, "t.toml", "h").server!;
  test("defaults: off, a full every 7 days", () => {
    expect([server("").incremental, server("").full_every]).toEqual(["off", { ms: 7 * 86_400_000 }]);
  });
  test("full_every takes an age or a count", () => {
    expect(server('incremental = "chain"\nfull_every = 10').full_every).toEqual({ count: 10 });
    expect(server('incremental = "differential"\nfull_every = "30d"').full_every).toEqual({ ms: 30 * 86_400_000 });
  });
});
