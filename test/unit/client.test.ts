import { describe, expect, test } from "bun:test";
import { changedPlaces, clientFinalCode, judgeStatus, mapLimit, selectSources } from "../../src/core/client/client.ts";
import { toRemove } from "../../src/core/state/retention.ts";
import type { ClientConfig } from "../../src/core/common/config.ts";
import { parseStatus, type StatusRecord } from "../../src/core/state/status.ts";

const T = 5_000;
const DAY = 86_400_000;
const NOW = new Date("2026-11-26T12:00:00Z");
const ARCHIVE = { file: "web1-20261126-030000.tar.gz", size: 1234, md5: "0123456789abcdef0123456789abcdef" };

describe("toRemove", () => {
  const cases: Array<[string[], number, string[]]> = [
    [[], 3, []],
    [["a"], 1, []],
    [["a", "b", "c"], 3, []],
    [["a", "b", "c", "d"], 2, ["a", "b"]],
    [["a", "b"], 0, ["a"]], // keep 0 still keeps the newest
    [["a", "b"], -5, ["a"]],
    [["a", "b", "c"], Number.NaN, ["a", "b"]],
    [["a", "b", "c"], 2.7, ["a"]],
  ];
  for (const [names, keep, want] of cases) {
    test(`${JSON.stringify(names)} keep ${keep} → remove ${JSON.stringify(want)}`, () => {
      const got = toRemove(names, keep);
      expect(got).toEqual(want);
      if (names.length) expect(got).not.toContain(names.at(-1)!);
    }, T);
  }
});

type Rec = Record<string, unknown>;
const rec = (code: number, ageMs: number, extra: Rec = {}): Rec => ({
  v: 1, t: new Date(NOW.getTime() - ageMs).toISOString(), code, name: "X", msg: `code ${code}`, role: "server", run: "r1", ...extra,
});
const text = (...recs: Rec[]) => recs.map((r) => JSON.stringify(r)).join("\n") + "\n";
const judge = (t: string, mtimeAgeMs = 60_000) => judgeStatus(parseStatus(t), new Date(NOW.getTime() - mtimeAgeMs), NOW, DAY);

describe("judgeStatus", () => {
  const cases: Array<[string, string, number | undefined, string, string]> = [
    // name, status text, mtime age, expected code name (or OK:<server code>), words in the reason
    ["a fresh golden run", text(rec(60, 3600_000), rec(4, 3000_000, { archive: ARCHIVE })), undefined, "OK:4", ""],
    ["unchanged still names the current archive", text(rec(60, 3600_000), rec(9, 3000_000, { archive: ARCHIVE })), undefined, "OK:9", ""],
    ["mail records after the final one", text(rec(60, 3600_000), rec(30, 3000_000, { archive: ARCHIVE }), rec(71, 2000_000)), undefined, "OK:30", ""],
    ["empty file", "", undefined, "STATUS_INVALID", "empty"],
    ["garbage", "not json\n{\n", undefined, "STATUS_INVALID", "2 unreadable"],
    ["records two days old", text(rec(60, 2 * DAY + 60_000), rec(4, 2 * DAY, { archive: ARCHIVE })), undefined, "STATUS_STALE", "has not run"],
    ["file two days old", text(rec(60, 3600_000), rec(4, 3000_000, { archive: ARCHIVE })), 2 * DAY, "STATUS_STALE", "last written 2d"],
    ["a record from the future", text(rec(60, 0), rec(4, -3600_000, { archive: ARCHIVE })), undefined, "STATUS_INVALID", "future"],
    ["a file from the future", text(rec(60, 3600_000), rec(4, 3000_000, { archive: ARCHIVE })), -3600_000, "STATUS_INVALID", "future"],
    ["a little clock skew is fine", text(rec(60, 0), rec(4, -60_000, { archive: ARCHIVE })), -60_000, "OK:4", ""],
    ["mid-run", text(rec(60, 600_000), rec(61, 300_000)), undefined, "SERVER_BUSY", "middle of a run"],
    ["failed", text(rec(60, 600_000), rec(23, 300_000, { msg: "not enough space\u001b[31m" })), undefined, "SERVER_FAILED", "23 NO_SPACE: not enough space\u001b[31m"],
    ["golden without an archive", text(rec(60, 600_000), rec(4, 300_000)), undefined, "STATUS_INVALID", "names no archive"],
    ["a path in the name", text(rec(4, 300_000, { archive: { ...ARCHIVE, file: "../../etc/x" } })), undefined, "UNSAFE_NAME", "../../etc/x"],
    ["an option as the name", text(rec(4, 300_000, { archive: { ...ARCHIVE, file: "-e sh" } })), undefined, "UNSAFE_NAME", "-e sh"],
    ["an absolute path", text(rec(4, 300_000, { archive: { ...ARCHIVE, file: "/etc/passwd" } })), undefined, "UNSAFE_NAME", "plain file name"],
    ["a control character in the name", text(rec(4, 300_000, { archive: { ...ARCHIVE, file: "web1-20261126-030000.tar.gz\n" } })), undefined, "UNSAFE_NAME", "plain file name"],
    ["an absurdly long name", text(rec(4, 300_000, { archive: { ...ARCHIVE, file: `${"a".repeat(300)}-20261126-030000.tar.gz` } })), undefined, "UNSAFE_NAME", "plain file name"],
    ["a negative size", text(rec(4, 300_000, { archive: { ...ARCHIVE, size: -1 } })), undefined, "STATUS_INVALID", "size"],
    ["a zero size", text(rec(4, 300_000, { archive: { ...ARCHIVE, size: 0 } })), undefined, "STATUS_INVALID", "size"],
    ["an absurd size", text(rec(4, 300_000, { archive: { ...ARCHIVE, size: 2 ** 52 } })), undefined, "STATUS_INVALID", "size"],
    ["a bad md5", text(rec(4, 300_000, { archive: { ...ARCHIVE, md5: "zz" } })), undefined, "STATUS_INVALID", "32 hex"],
    ["an upper-case md5", text(rec(4, 300_000, { archive: { ...ARCHIVE, md5: ARCHIVE.md5.toUpperCase() } })), undefined, "STATUS_INVALID", "32 hex"],
    ["a bad sha256", text(rec(4, 300_000, { archive: { ...ARCHIVE, sha256: "abc" } })), undefined, "STATUS_INVALID", "sha256"],
    ["a name dated 9999", text(rec(4, 300_000, { archive: { ...ARCHIVE, file: "web1-99991231-235959.tar.gz" } })), undefined, "FUTURE_NAME", "9999-12-31T23:59:59"],
    ["a name 6 minutes after its record", text(rec(4, 300_000, { archive: { ...ARCHIVE, file: "web1-20261126-120100.tar.gz" } })), undefined, "FUTURE_NAME", "later than the record that names it"],
    ["a record 4 minutes ahead, a name 8 minutes ahead of this clock", text(rec(4, -240_000, { archive: { ...ARCHIVE, file: "web1-20261126-120800.tar.gz" } })), -240_000, "FUTURE_NAME", "this host's clock"],
  ];
  for (const [name, t, mtimeAge, want, words] of cases) {
    test(name, () => {
      const v = judge(t, mtimeAge);
      if (want.startsWith("OK:")) {
        expect(v.ok).toBe(true);
        if (v.ok) {
          expect(v.serverCode).toBe(Number(want.slice(3)));
          expect(v.archive).toEqual(ARCHIVE);
        }
      } else {
        expect(v.ok).toBe(false);
        if (!v.ok) {
          expect(v.code).toBe(want as never);
          expect(v.why).toContain(words);
          // one line; its control characters are escaped where it is printed
          expect(v.why).not.toMatch(/[\r\n]/);
        }
      }
    }, T);
  }
  test("a name 4 minutes after its record is within the slack", () => {
    const v = judge(text(rec(4, 300_000, { archive: { ...ARCHIVE, file: "web1-20261126-115900.tar.gz" } })));
    expect(v.ok && v.archive.file).toBe("web1-20261126-115900.tar.gz");
  }, T);
  test("only the checked fields of the archive travel on", () => {
    const v = judge(text(rec(4, 300_000, { archive: { ...ARCHIVE, extra: "--delete", sha256: "a".repeat(64) } })));
    expect(v.ok && v.archive).toEqual({ ...ARCHIVE, sha256: "a".repeat(64) });
  }, T);
});

test("mapLimit keeps order and never runs more than the limit at once", async () => {
  let running = 0;
  let peak = 0;
  const out = await mapLimit([50, 10, 30, 20, 40], 2, async (ms, i) => {
    running++;
    peak = Math.max(peak, running);
    await Bun.sleep(ms);
    running--;
    return i;
  });
  expect(out).toEqual([0, 1, 2, 3, 4]);
  expect(peak).toBe(2);
  expect(await mapLimit([], 4, async () => 1)).toEqual([]);
}, T);

describe("clientFinalCode", () => {
  const cases: Array<[number[], number]> = [
    [[4], 4], [[9, 9], 9], [[30, 30], 30], [[30, 9], 4], [[4, 9, 30], 4],
    [[4, 40], 40], [[40, 50, 46], 50], [[46, 9], 46], [[44, 45], 45],
  ];
  for (const [codes, want] of cases) test(`${JSON.stringify(codes)} → ${want}`, () => expect(clientFinalCode(codes)).toBe(want), T);
});

describe("selectSources", () => {
  const cfg = { sources: [{ name: "web1" }, { name: "db1" }] } as unknown as ClientConfig;
  test("all by default", () => expect(selectSources(cfg, []).map((s) => s.name)).toEqual(["web1", "db1"]), T);
  test("the named ones", () => expect(selectSources(cfg, ["db1"]).map((s) => s.name)).toEqual(["db1"]), T);
  test("an unknown name is SOURCE_UNKNOWN, listing the configured ones", () => {
    expect(() => selectSources(cfg, ["web2"])).toThrow('unknown source "web2" (configured: web1, db1)');
  }, T);
  test("a source may not take the name of shoot's own files", () => {
    expect(() => selectSources({ sources: [{ name: "client.status" }] } as unknown as ClientConfig, [])).toThrow("reserved");
  }, T);
});

describe("changedPlaces", () => {
  const LAST = "web1-20260530-010000.tar.gz";
  const rec = (code: number, name: string, run: string, more: Partial<StatusRecord> = {}): StatusRecord =>
    ({ v: 1, t: NOW.toISOString(), code, name, msg: "", role: "server", run, ...more });
  const day2 = (scanned: Record<string, unknown> | undefined, written: Record<string, unknown>, run = "r2") => [
    rec(66, "SCANNED", "r1", { data: { entries: 10, places: 99 } }), // an earlier run's: never read
    ...(scanned ? [rec(66, "SCANNED", run, { data: scanned })] : []),
    rec(67, "ARCHIVE_WRITTEN", run, { data: { file: ARCHIVE.file, ...written } }),
    rec(4, "NEW_ARCHIVE", run, { archive: ARCHIVE }),
  ];
  const cases: Array<[string, StatusRecord[], ReturnType<typeof changedPlaces>]> = [
    ["the pieces' count, exact, over the scan's", day2({ changed: 1, places: 1 }, { places: 260 }), { places: 260, exact: true }],
    ["the scan's places when the pieces were not compared", day2({ changed: 5, places: 3 }, {}), { places: 3, exact: false }],
    ["an older server's changed entries", day2({ changed: 5 }, {}), { places: 5, exact: false }],
    ["no place in the pieces: the scan's", day2({ changed: 2, places: 2 }, { places: 0 }), { places: 2, exact: false }],
    ["a count that is not a whole number is not read", day2({ places: "7" }, { places: 2.5 }), undefined],
    ["a negative count is not read", day2({ places: -1 }, { places: -3 }), undefined],
    ["nothing said", day2(undefined, {}), undefined],
    ["no golden record names the archive", day2({ places: 4 }, { places: 9 }).slice(0, 3), undefined],
    ["counted against a copy held here: exact", day2({ places: 1 }, { places: 260, placesAgainst: LAST }), { places: 260, exact: true }],
    ["counted against a copy not held here (days missed): a floor, as the scan's", day2({ places: 1 }, { places: 260, placesAgainst: "web1-20260101-000000.tar.gz" }), { places: 260, exact: false }],
    ["against a name that is not a string: as an older server, exact", day2({ places: 1 }, { places: 260, placesAgainst: 7 }), { places: 260, exact: true }],
  ];
  for (const [what, records, want] of cases) test(what, () => expect(changedPlaces(records, ARCHIVE.file, [LAST])).toEqual(want), T);
});
