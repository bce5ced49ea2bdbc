/**
 * Retention rules, case by case: each row gives copies (oldest first, times in the zone named)
 * and rules, and the ids kept with the rule that keeps each. The simulation over years of runs
 * is in retention-sim.test.ts.
 */
import { describe, expect, test } from "bun:test";
import {
  NO_RULES, decideRetention, describeReason, describeRules, isoWeek, keepLast, keepsNothing, periodOf, removals, toRemove,
  type RetainedCopy, type RetentionRules,
} from "../../src/core/state/retention.ts";

const H = 3_600_000;
const D = 24 * H;

/** A copy made at a wall-clock time given as an ISO string with its offset. */
function at(id: string, iso: string, extra: Partial<RetainedCopy> = {}): RetainedCopy {
  return { id, madeMs: Date.parse(iso), verified: true, ...extra };
}

/** "id: reason, reason" for every kept copy; removed ones are left out. */
function kept(copies: RetainedCopy[], rules: Partial<RetentionRules>, zone = "UTC"): string[] {
  return decideRetention(copies, { ...NO_RULES, ...rules }, { timeZone: zone })
    .filter((d) => d.keep)
    .map((d) => `${d.id}: ${d.reasons.map(describeReason).join(", ")}`);
}

describe("retention rules, case by case", () => {
  test("keep_last keeps the newest N by order; `keep = N` is keep_last N", () => {
    const copies = ["a", "b", "c", "d"].map((id, i) => at(id, `2024-01-0${i + 1}T10:00:00Z`));
    expect(kept(copies, keepLast(2))).toEqual(["c: last #2", "d: last #1, newest verified copy"]);
    expect(removals(decideRetention(copies, keepLast(2), { timeZone: "UTC" }))).toEqual(toRemove(copies.map((c) => c.id), 2));
  });

  test("keep_daily: the newest copy of each day, the N newest days; days without copies do not count", () => {
    const copies = [
      at("mon-1", "2024-01-01T01:00:00Z"), at("mon-2", "2024-01-01T23:00:00Z"),
      at("wed-1", "2024-01-03T08:00:00Z"), at("wed-2", "2024-01-03T09:00:00Z"),
      at("sat", "2024-01-06T12:00:00Z"),
    ];
    expect(kept(copies, { daily: 2 })).toEqual(["wed-2: daily #2 (2024-01-03)", "sat: daily #1 (2024-01-06), newest verified copy"]);
    expect(kept(copies, { daily: 10 })).toEqual([
      "mon-2: daily #3 (2024-01-01)", "wed-2: daily #2 (2024-01-03)", "sat: daily #1 (2024-01-06), newest verified copy",
    ]);
  });

  test("rules count independently: one copy stands for its day, week, month and year at once", () => {
    const copies = [at("dec", "2023-12-31T12:00:00Z"), at("jan1", "2024-01-01T12:00:00Z"), at("jan2", "2024-01-02T12:00:00Z")];
    expect(kept(copies, { daily: 1, weekly: 1, monthly: 1, yearly: 2 })).toEqual([
      "dec: yearly #2 (2023)",
      "jan2: daily #1 (2024-01-02), weekly #1 (2024-W01), monthly #1 (2024-01), yearly #1 (2024), newest verified copy",
    ]);
    // 2023-12-31 is a Sunday (ISO week 2023-W52), 2024-01-01 a Monday (2024-W01)
    expect(kept(copies, { weekly: 2 })).toEqual(["dec: weekly #2 (2023-W52)", "jan2: weekly #1 (2024-W01), newest verified copy"]);
  });

  test("keep_hourly, keep_monthly, keep_yearly", () => {
    const copies = [
      at("y22", "2022-06-01T00:00:00Z"), at("m1", "2024-01-15T00:00:00Z"), at("m2a", "2024-02-01T00:00:00Z"),
      at("m2b", "2024-02-20T05:10:00Z"), at("h1", "2024-02-20T06:10:00Z"), at("h2", "2024-02-20T06:50:00Z"),
    ];
    expect(kept(copies, { hourly: 2 })).toEqual(["m2b: hourly #2 (2024-02-20 05h)", "h2: hourly #1 (2024-02-20 06h), newest verified copy"]);
    expect(kept(copies, { monthly: 2 })).toEqual(["m1: monthly #2 (2024-01)", "h2: monthly #1 (2024-02), newest verified copy"]);
    expect(kept(copies, { yearly: 5 })).toEqual(["y22: yearly #2 (2022)", "h2: yearly #1 (2024), newest verified copy"]);
  });

  test("keep_within counts back from the newest copy, not from now", () => {
    const copies = [at("old", "2020-01-01T00:00:00Z"), at("a", "2020-01-05T00:00:00Z"), at("b", "2020-01-07T00:00:00Z"), at("c", "2020-01-08T00:00:00Z")];
    expect(kept(copies, { withinMs: 3 * D })).toEqual(["b: within 3d of the newest", "c: within 3d of the newest, newest verified copy"]);
    // exactly the span before is out ("less than D before the newest"); a millisecond more and it is in
    expect(kept(copies, { withinMs: 3 * D + 1 }).map((k) => k.split(":")[0])).toEqual(["a", "b", "c"]);
  });

  test("the newest verified copy is kept whatever the rules, and only the newest verified one", () => {
    const copies = [at("v1", "2024-01-01T00:00:00Z"), at("v2", "2024-01-02T00:00:00Z"), at("u1", "2024-01-03T00:00:00Z", { verified: false }), at("u2", "2024-01-04T00:00:00Z", { verified: false })];
    expect(kept(copies, keepLast(1))).toEqual(["v2: newest verified copy", "u2: last #1"]);
    expect(kept(copies, NO_RULES)).toEqual(["v2: newest verified copy"]);
    expect(kept([], keepLast(3))).toEqual([]);
  });

  test("what a kept copy needs is kept, transitively; what a removed copy needs is not", () => {
    const copies = [
      at("full1", "2024-01-01T00:00:00Z"), at("inc1", "2024-01-02T00:00:00Z", { needs: ["full1"] }),
      at("full2", "2024-01-03T00:00:00Z"), at("inc2", "2024-01-04T00:00:00Z", { needs: ["full2"] }),
      at("inc3", "2024-01-05T00:00:00Z", { needs: ["inc2", "missing-id"] }),
    ];
    expect(kept(copies, keepLast(1))).toEqual(["full2: needed by inc2", "inc2: needed by inc3", "inc3: last #1, newest verified copy"]);
    const held = copies.map((c) => (c.id === "inc1" ? { ...c, hold: "held by a test" } : c));
    expect(kept(held, keepLast(1))).toEqual(["full1: needed by inc1", "inc1: held by a test", "full2: needed by inc2", "inc2: needed by inc3", "inc3: last #1, newest verified copy"]);
  });

  test("order decides what is newest; a time later than a later copy's counts as that copy's time", () => {
    // the clock ran a year ahead for one run and was set right
    const copies = [at("a", "2024-03-01T12:00:00Z"), at("ahead", "2025-03-02T12:00:00Z"), at("b", "2024-03-03T12:00:00Z")];
    const d = decideRetention(copies, { ...NO_RULES, daily: 3 }, { timeZone: "UTC" });
    expect(d.map((x) => new Date(x.periodMs).toISOString())).toEqual(["2024-03-01T12:00:00.000Z", "2024-03-03T12:00:00.000Z", "2024-03-03T12:00:00.000Z"]);
    expect(kept(copies, { daily: 3 })).toEqual(["a: daily #2 (2024-03-01)", "b: daily #1 (2024-03-03), newest verified copy"]);
    // the clock was set back a day: the older copies are placed no later than the newest
    const back = [at("x", "2024-03-05T12:00:00Z"), at("y", "2024-03-06T12:00:00Z"), at("z", "2024-03-05T13:00:00Z")];
    expect(kept(back, { daily: 2 })).toEqual(["z: daily #1 (2024-03-05), newest verified copy"]);
    // an unknown time takes the time of the copy after it
    const unknown = [at("p", "2024-03-01T00:00:00Z"), { id: "q", madeMs: NaN, verified: true }, at("r", "2024-03-02T00:00:00Z")];
    expect(kept(unknown, { daily: 5 })).toEqual(["p: daily #2 (2024-03-01)", "r: daily #1 (2024-03-02), newest verified copy"]);
  });

  test("periods are taken in the zone given: one pair of copies, one day in UTC, two in New York", () => {
    const copies = [at("evening", "2024-07-01T03:00:00Z"), at("morning", "2024-07-01T13:00:00Z")];
    expect(kept(copies, { daily: 5 }, "UTC")).toEqual(["morning: daily #1 (2024-07-01), newest verified copy"]);
    expect(kept(copies, { daily: 5 }, "America/New_York")).toEqual(["evening: daily #2 (2024-06-30)", "morning: daily #1 (2024-07-01), newest verified copy"]);
  });

  test("daylight saving: the repeated hour of a fall-back is one hour; the skipped hour of a spring-forward is none", () => {
    // Europe/Berlin 2024-10-27: 03:00 CEST becomes 02:00 CET, so 02:xx local happens twice
    const fall = [at("cest", "2024-10-27T02:30:00+02:00"), at("cet", "2024-10-27T02:30:00+01:00"), at("three", "2024-10-27T03:10:00+01:00")];
    expect(kept(fall, { hourly: 3 }, "Europe/Berlin")).toEqual(["cet: hourly #2 (2024-10-27 02h)", "three: hourly #1 (2024-10-27 03h), newest verified copy"]);
    // 2024-03-31: 02:00 CET becomes 03:00 CEST; 01:59 and 03:01 are two minutes apart, two hours apart on the wall
    const spring = [at("one", "2024-03-31T01:59:00+01:00"), at("three", "2024-03-31T03:01:00+02:00")];
    expect(kept(spring, { hourly: 3 }, "Europe/Berlin")).toEqual(["one: hourly #2 (2024-03-31 01h)", "three: hourly #1 (2024-03-31 03h), newest verified copy"]);
    // a 23-hour day and a 25-hour day are each one day
    expect(periodOf("daily", Date.parse("2024-10-27T23:30:00+01:00"), "Europe/Berlin")).toBe("2024-10-27");
    expect(periodOf("daily", Date.parse("2024-10-27T00:10:00+02:00"), "Europe/Berlin")).toBe("2024-10-27");
  });

  test("ISO weeks at year ends", () => {
    const rows: Array<[number, number, number, string]> = [
      [2020, 12, 31, "2020-53"], [2021, 1, 3, "2020-53"], [2021, 1, 4, "2021-1"], [2024, 12, 30, "2025-1"],
      [2026, 1, 1, "2026-1"], [2027, 1, 3, "2026-53"], [2018, 12, 31, "2019-1"], [2016, 1, 3, "2015-53"],
    ];
    for (const [y, m, d, want] of rows) {
      const w = isoWeek(y, m, d);
      expect({ date: `${y}-${m}-${d}`, week: `${w.year}-${w.week}` }).toEqual({ date: `${y}-${m}-${d}`, week: want });
    }
  });

  test("describing rules, and rules that keep nothing", () => {
    expect(describeRules({ ...NO_RULES, last: 2, daily: 7, withinMs: 30 * D })).toBe("keep_last 2, keep_daily 7, keep_within 30d");
    expect(describeRules({ ...NO_RULES, withinMs: 14 * D })).toBe("keep_within 2w");
    expect(keepsNothing(NO_RULES)).toBe(true);
    expect(keepsNothing({ ...NO_RULES, yearly: 1 })).toBe(false);
    expect(keepsNothing({ ...NO_RULES, withinMs: 1 })).toBe(false);
  });
});
