import { describe, expect, test } from "bun:test";
import { lastPullDurations, pullOrder, retryPause, runInSlots } from "../../src/core/client/schedule.ts";
import { sourcesSummary } from "../../src/core/common/outcome.ts";
import type { StatusRecord } from "../../src/core/state/status.ts";

const T = 10_000;

const rec = (run: string, t: number, name: string, data: Record<string, unknown>): StatusRecord => ({
  v: 1, t: new Date(Date.UTC(2026, 10, 26) + t).toISOString(), code: name === "SOURCE_DONE" ? 72 : 61, name, msg: "", role: "client", run, data,
});

describe("lastPullDurations", () => {
  test("SOURCE_DONE's durationMs; without it, the source's first record of the run to its SOURCE_DONE; the latest run wins", () => {
    const records = [
      rec("r1", 0, "STEP", { source: "a" }),
      rec("r1", 5_000, "SOURCE_DONE", { source: "a", code: 4 }),
      rec("r1", 1_000, "STEP", { source: "b" }),
      rec("r1", 61_000, "SOURCE_DONE", { source: "b", code: 4 }),
      rec("r2", 0, "STEP", { source: "a" }),
      rec("r2", 9_000, "SOURCE_DONE", { source: "a", code: 40, durationMs: 120_000 }),
      rec("r2", 9_000, "SOURCE_DONE", { source: "c", code: 4, durationMs: "soon" }),
      rec("r2", 9_000, "SOURCE_DONE", { code: 4, durationMs: 5 }),
    ];
    expect([...lastPullDurations(records)].sort()).toEqual([["a", 120_000], ["b", 60_000], ["c", 0]]);
  }, T);
});

describe("pullOrder", () => {
  const s = (...names: string[]) => names.map((name) => ({ name }));
  const cases: Array<[string, string[], Record<string, number>, string[]]> = [
    ["longest last pull first", ["a", "b", "c"], { a: 10, b: 300, c: 20 }, ["b", "c", "a"]],
    ["never pulled counts as longest", ["a", "new", "b"], { a: 10, b: 300 }, ["new", "b", "a"]],
    ["ties keep the configured order", ["x", "y", "z"], { x: 5, y: 5, z: 5 }, ["x", "y", "z"]],
    ["no history: the configured order", ["x", "y", "z"], {}, ["x", "y", "z"]],
  ];
  for (const [name, names, durations, want] of cases) {
    test(name, () => expect(pullOrder(s(...names), new Map(Object.entries(durations))).map((x) => x.name)).toEqual(want), T);
  }
});

describe("retryPause", () => {
  const cases: Array<[number, number, number, number]> = [
    // base, failed try, random, pause
    [10_000, 1, 0, 5_000],
    [10_000, 1, 0.5, 10_000],
    [10_000, 1, 0.999, 14_990],
    [10_000, 2, 0.5, 20_000],
    [10_000, 3, 0, 20_000],
    [1_000, 4, 0.5, 8_000],
  ];
  for (const [base, failed, r, want] of cases) test(`base ${base}, try ${failed} failed, random ${r}: ${want} ms`, () => expect(retryPause(base, failed, r)).toBe(want), T);
});

describe("sourcesSummary", () => {
  const cases: Array<[number[], string]> = [
    [[4, 9, 30], "3 sources: 3 OK"],
    [[4], "1 source: 1 OK"],
    [[...Array(97).fill(4), 40, 49, 44], "100 sources: 97 OK, 2 failed, 1 stale"],
    [[44, 44], "2 sources: 0 OK, 2 stale"],
  ];
  for (const [codes, want] of cases) test(want, () => expect(sourcesSummary(codes)).toBe(want), T);
});

/** A run of `runInSlots` over named jobs that take the given milliseconds, recording what ran when. */
async function simulate(jobs: Record<string, number>, limit: number, opts: { fail?: Record<string, number>; pause?: number; abortAfter?: number } = {}) {
  const events: Array<[string, string, number]> = [];
  let running = 0;
  let peak = 0;
  const t0 = performance.now();
  const at = () => Math.round(performance.now() - t0);
  const tries: Record<string, number> = {};
  const results: Record<string, string> = {};
  const ctl = new AbortController();
  if (opts.abortAfter !== undefined) setTimeout(() => ctl.abort(), opts.abortAfter);
  await runInSlots<string, string>({
    limit,
    ordered: Object.keys(jobs),
    signal: ctl.signal,
    run: async (name, attempt) => {
      running++;
      peak = Math.max(peak, running);
      events.push(["start", name, at()]);
      await Bun.sleep(jobs[name]!);
      running--;
      events.push(["end", name, at()]);
      return attempt <= (opts.fail?.[name] ?? 0) ? "transient" : "ok";
    },
    again: (_name, result) => (result === "transient" ? opts.pause ?? 10 : undefined),
    notStarted: () => "not started",
    done: (name, result, n) => {
      tries[name] = n;
      results[name] = result;
    },
  });
  return { events, peak, tries, results, starts: events.filter((e) => e[0] === "start").map((e) => e[1]) };
}

describe("runInSlots", () => {
  test("never more than `limit` at once, every job once, in input order with one slot only", async () => {
    const jobs = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`j${i}`, 5 + (i % 3) * 5]));
    const one = await simulate(jobs, 1);
    expect(one.peak).toBe(1);
    expect(one.starts).toEqual(Object.keys(jobs));
    const four = await simulate(jobs, 4);
    expect(four.peak).toBe(4);
    expect(four.starts.sort()).toEqual(Object.keys(jobs).sort());
    expect(Object.values(four.tries)).toEqual(Array(12).fill(1));
  }, T);

  test("slow jobs start first, but one slot keeps taking the quickest: quick jobs do not wait behind slow ones", async () => {
    // ordered longest first, as pullOrder gives them: 3 slow jobs, 6 quick ones, 3 slots
    const jobs: Record<string, number> = { slow1: 400, slow2: 400, slow3: 400, q1: 20, q2: 20, q3: 20, q4: 20, q5: 20, q6: 20 };
    const r = await simulate(jobs, 3);
    expect(r.starts.slice(0, 3)).toEqual(["slow1", "slow2", "q6"]);
    const endOf = (n: string) => r.events.find((e) => e[0] === "end" && e[1] === n)![2];
    // every quick job ends before the first slow one does, and slow3 starts only once the quick ones are done
    for (const q of ["q1", "q2", "q3", "q4", "q5", "q6"]) expect({ q, before: endOf(q) < endOf("slow1") }).toEqual({ q, before: true });
    expect(r.starts.at(-1)).toBe("slow3");
  }, T);

  test("a job that fails in a way that passes gives its slot back during its pause: the others go on", async () => {
    const r = await simulate({ flaky: 10, a: 50, b: 50, c: 50 }, 2, { fail: { flaky: 2 }, pause: 200 });
    expect(r.tries).toEqual({ flaky: 3, a: 1, b: 1, c: 1 });
    expect(r.results.flaky).toBe("ok");
    expect(r.peak).toBeLessThanOrEqual(2);
    // a, b and c all started while flaky was pausing (its second try comes 200 ms after its first)
    const secondTry = r.events.filter((e) => e[0] === "start" && e[1] === "flaky")[1]![2];
    for (const n of ["a", "b", "c"]) expect({ n, before: r.events.find((e) => e[0] === "start" && e[1] === n)![2] < secondTry }).toEqual({ n, before: true });
  }, T);

  test("when the signal aborts, what never started ends with notStarted, a pause ends with its last result, running ones finish", async () => {
    // two slots: long takes one; the other takes the quickest from the end: flaky, then w2, w1, w0
    const r = await simulate({ long: 300, w0: 100, w1: 100, w2: 100, flaky: 10 }, 2, { fail: { flaky: 5 }, pause: 1000, abortAfter: 150 });
    expect(r.results).toEqual({ long: "ok", flaky: "transient", w2: "ok", w1: "ok", w0: "not started" });
    expect(r.tries).toEqual({ long: 1, flaky: 1, w2: 1, w1: 1, w0: 0 });
  }, T);

  test("an error thrown by a callback stops the run once the running jobs are done, and is thrown", async () => {
    const started: string[] = [];
    const done: string[] = [];
    const p = runInSlots<string, string>({
      limit: 2,
      ordered: ["a", "b", "c", "d"],
      run: async (n) => {
        started.push(n);
        await Bun.sleep(n === "a" ? 10 : 80);
        return n;
      },
      again: () => undefined,
      notStarted: () => "not started",
      done: (n, r) => {
        if (n === "a") throw new Error("the status file is full");
        done.push(`${n}:${r}`);
      },
    });
    await expect(p).rejects.toThrow("the status file is full");
    expect(started).toEqual(["a", "d"]);
    expect(done.sort()).toEqual(["b:not started", "c:not started", "d:d"]);
  }, T);
});
