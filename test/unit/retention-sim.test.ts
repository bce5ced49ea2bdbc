/**
 * Three years of runs, simulated from a seed, in several time zones (set through TZ, as a host
 * sets it): runs each day at a cron time with jitter, several runs some days, gaps of days to
 * weeks, a host clock that jumps ahead or back and is set right later, bursts of runs across
 * every daylight-saving change, copies that fail verification and copies that need the one
 * before them. After every run the held copies go through decideRetention, and its answer is
 * checked against a brute-force statement of the same rules written here on its own: other
 * date arithmetic (Date's local getters under TZ, not Intl), other week numbering, every
 * question answered by looking at every copy.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { decideRetention, type CopyDecision, type RetainedCopy, type RetentionRules } from "../../src/core/state/retention.ts";
import { seeded } from "../helpers/random.ts";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const YEAR = 365 * DAY;

// --- the rules, stated again by brute force ---------------------------------------------------

const two = (n: number) => String(n).padStart(2, "0");

/** The ISO week of a local date, counted from the Monday on or before January 4th of its year. */
function weekLabel(d: Date): string {
  const noon = (y: number, m: number, day: number) => Date.UTC(y, m, day, 12);
  const today = noon(d.getFullYear(), d.getMonth(), d.getDate());
  const mondayOfWeek1 = (y: number) => {
    const jan4 = new Date(noon(y, 0, 4));
    const back = (jan4.getUTCDay() + 6) % 7; // days since Monday
    return noon(y, 0, 4) - back * DAY;
  };
  let y = d.getFullYear() + 1;
  while (mondayOfWeek1(y) > today) y--;
  const week = Math.floor(Math.round((today - mondayOfWeek1(y)) / DAY) / 7) + 1;
  return `${y}-W${two(week)}`;
}

function labelOf(tier: string, ms: number): string {
  if (!Number.isFinite(ms)) return "unknown";
  const d = new Date(ms); // local time under TZ
  const day = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
  switch (tier) {
    case "hourly": return `${day} ${two(d.getHours())}h`;
    case "daily": return day;
    case "weekly": return weekLabel(d);
    case "monthly": return `${d.getFullYear()}-${two(d.getMonth() + 1)}`;
    default: return String(d.getFullYear());
  }
}

const TIERS = ["hourly", "daily", "weekly", "monthly", "yearly"] as const;

/** Each copy's reasons as "rule#rank(period)" strings, sorted; [] for a copy removed. */
function bruteForce(copies: readonly RetainedCopy[], rules: RetentionRules): string[][] {
  const n = copies.length;
  // a copy is placed no later than any copy after it
  const placed = copies.map((_, i) => {
    let t = Infinity;
    for (let j = i; j < n; j++) {
      const m = copies[j]!.madeMs;
      if (Number.isFinite(m) && m < t) t = m;
    }
    return t;
  });
  const labels = Object.fromEntries(TIERS.map((tier) => [tier, placed.map((t) => labelOf(tier, t))])) as Record<(typeof TIERS)[number], string[]>;
  const reasons: string[][] = copies.map(() => []);
  for (let i = 0; i < n; i++) {
    const newer = n - 1 - i;
    if (newer < rules.last) reasons[i]!.push(`last#${newer + 1}`);
    for (const tier of TIERS) {
      if (rules[tier] <= 0) continue;
      const mine = labels[tier][i]!;
      const newerPeriods = new Set<string>();
      let newestOfItsPeriod = true;
      for (let j = i + 1; j < n; j++) {
        const theirs = labels[tier][j]!;
        if (theirs === mine) newestOfItsPeriod = false;
        newerPeriods.add(theirs);
      }
      if (newestOfItsPeriod && newerPeriods.size < rules[tier]) reasons[i]!.push(`${tier}#${newerPeriods.size + 1}(${mine})`);
    }
    if (rules.withinMs > 0 && placed[n - 1]! - placed[i]! < rules.withinMs) reasons[i]!.push("within");
    if (copies[i]!.verified && copies.slice(i + 1).every((c) => !c.verified)) reasons[i]!.push("newest-verified");
  }
  // needs: repeat until nothing changes
  for (let changed = true; changed; ) {
    changed = false;
    for (let i = 0; i < n; i++) {
      if (reasons[i]!.length === 0) continue;
      for (const id of copies[i]!.needs ?? []) {
        const j = copies.findIndex((c) => c.id === id);
        const tag = `needed-by-${copies[i]!.id}`;
        if (j >= 0 && !reasons[j]!.includes(tag)) {
          reasons[j]!.push(tag);
          changed = true;
        }
      }
    }
  }
  return reasons.map((r) => r.sort());
}

function asStrings(d: CopyDecision): string[] {
  return d.reasons.map((r) => {
    switch (r.rule) {
      case "within": return "within";
      case "newest-verified": return "newest-verified";
      case "needed": return `needed-by-${r.by}`;
      case "hold": return "hold";
      case "last": return `last#${r.rank}`;
      default: return `${r.rule}#${r.rank}(${r.period})`;
    }
  }).sort();
}

// --- the simulation -------------------------------------------------------------------------

/** Instants in [from, to) where the zone's offset changes, to the minute. */
function offsetChanges(from: number, to: number): number[] {
  const out: number[] = [];
  let prev = new Date(from).getTimezoneOffset();
  for (let t = from + HOUR; t < to; t += HOUR) {
    const o = new Date(t).getTimezoneOffset();
    if (o !== prev) {
      let lo = t - HOUR;
      let hi = t;
      while (hi - lo > MIN) {
        const mid = lo + Math.floor((hi - lo) / 2 / MIN) * MIN || lo + MIN;
        if (new Date(mid).getTimezoneOffset() === prev) lo = mid;
        else hi = mid;
      }
      out.push(hi);
      prev = o;
    }
  }
  return out;
}

interface SimResult {
  runs: number;
  removed: number;
  maxHeld: number;
  clockJumps: number;
  dstChanges: number;
  unverified: number;
}

function randomRules(rand: () => number): RetentionRules {
  const pick = (max: number) => (rand() < 0.25 ? 0 : 1 + Math.floor(rand() * max));
  const r: RetentionRules = {
    last: pick(4), hourly: pick(30), daily: pick(14), weekly: pick(8), monthly: pick(18), yearly: pick(4),
    withinMs: rand() < 0.4 ? Math.floor(rand() * 10 * DAY) : 0,
  };
  if (Object.values(r).every((v) => v === 0)) r.daily = 7;
  return r;
}

function simulate(seed: number, rules: RetentionRules): SimResult {
  const rand = seeded(seed);
  const start = Date.UTC(2022, 0, 1) + Math.floor(rand() * YEAR);
  const end = start + 3 * YEAR;
  const dst = offsetChanges(start, end);
  let nextDst = 0;
  let t = start;
  let offset = 0;
  let held: RetainedCopy[] = [];
  const res: SimResult = { runs: 0, removed: 0, maxHeld: 0, clockJumps: 0, dstChanges: dst.length, unverified: 0 };
  const cronMinute = Math.floor(rand() * 24 * 60);

  const run = () => {
    const made = t + offset;
    const verified = rand() > 0.05;
    if (!verified) res.unverified++;
    const prev = held.at(-1);
    held.push({ id: `c${res.runs}`, madeMs: made, verified, needs: prev && rand() < 0.3 ? [prev.id] : undefined });
    res.runs++;
    const decisions = decideRetention(held, rules);
    const oracle = bruteForce(held, rules);
    decisions.forEach((d, i) => {
      const want = oracle[i]!;
      if (JSON.stringify(asStrings(d)) !== JSON.stringify(want) || d.keep !== want.length > 0) {
        const times = held.map((c) => `${c.id}@${new Date(c.madeMs).toISOString()}${c.verified ? "" : "(unverified)"}`).join(" ");
        throw new Error(`seed ${seed} run ${res.runs} (${process.env.TZ}): ${d.id} decided ${JSON.stringify(asStrings(d))}, brute force ${JSON.stringify(want)}; rules ${JSON.stringify(rules)}; held ${times}`);
      }
    });
    const newestVerified = [...held].reverse().find((c) => c.verified);
    if (newestVerified && !decisions.find((d) => d.id === newestVerified.id)!.keep) throw new Error(`the newest verified copy ${newestVerified.id} was removed`);
    const keep = new Set(decisions.filter((d) => d.keep).map((d) => d.id));
    res.removed += held.length - keep.size;
    held = held.filter((c) => keep.has(c.id));
    res.maxHeld = Math.max(res.maxHeld, held.length);
  };

  while (t < end) {
    // a burst of runs every quarter hour across a daylight-saving change
    if (nextDst < dst.length && dst[nextDst]! <= t + DAY) {
      const edge = dst[nextDst++]!;
      for (let b = Math.max(t + MIN, edge - 3 * HOUR); b < edge + 3 * HOUR; b += 15 * MIN) {
        t = b;
        run();
      }
    }
    const r = rand();
    if (r < 0.75) {
      // the next day's cron run, a few minutes late at most
      const day = Math.floor((t + DAY) / DAY) * DAY;
      t = Math.max(t + MIN, day + cronMinute * MIN + Math.floor(rand() * 10 * MIN));
    } else if (r < 0.98) {
      t += HOUR + Math.floor(rand() * 6 * HOUR); // several runs a day
    } else {
      t += 2 * DAY + Math.floor(rand() * 28 * DAY); // the host was down
    }
    const c = rand();
    if (c < 0.01) {
      offset = (rand() < 0.5 ? -1 : 1) * Math.floor(rand() * (rand() < 0.5 ? 6 * HOUR : 400 * DAY));
      res.clockJumps++;
    } else if (c < 0.04 && offset !== 0) {
      offset = 0; // set right again (NTP, an operator)
    }
    run();
  }
  return res;
}

const ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago"];
const savedTz = process.env.TZ;
afterAll(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

describe("three years of runs against a brute-force statement of the rules", () => {
  for (const [z, zone] of ZONES.entries()) {
    test(`TZ=${zone}`, () => {
      process.env.TZ = zone;
      // the process follows TZ as it changes, or the zones below would all be one
      expect(new Intl.DateTimeFormat().resolvedOptions().timeZone).toBe(zone);
      const totals = { runs: 0, removed: 0, maxHeld: 0, clockJumps: 0, dstChanges: 0, unverified: 0 };
      for (let k = 0; k < 3; k++) {
        const seed = 0x5eed0000 + z * 16 + k;
        const rules = randomRules(seeded(seed ^ 0x7777));
        const r = simulate(seed, rules);
        for (const key of Object.keys(totals) as Array<keyof SimResult>) totals[key] = key === "maxHeld" ? Math.max(totals[key], r[key]) : totals[key] + r[key];
      }
      console.log(`retention sim TZ=${zone}: ${totals.runs} runs over 3 × 3 years, ${totals.removed} copies removed, at most ${totals.maxHeld} held, ${totals.clockJumps} clock jumps, ${totals.dstChanges} offset changes with bursts of runs, ${totals.unverified} unverified copies: every decision equals the brute force`);
      expect(totals.runs).toBeGreaterThan(2500);
      expect(totals.removed).toBeGreaterThan(1000);
      if (zone !== "UTC" && zone !== "Asia/Kathmandu") expect(totals.dstChanges).toBeGreaterThan(10);
    }, 120_000);
  }
});
