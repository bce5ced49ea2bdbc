/**
 * Which source gets a slot when, in a client run of many sources.
 *
 * Order: the sources whose last pull took longest start first (longest processing time
 * first): a long pull started late is what stretches a run past the sum of its pulls divided
 * by the slots, and a dead server's time-outs, started early, overlap everything else. A
 * source with no recorded pull (new, or never finished) counts as longest: a first pull is
 * usually the biggest. The durations come from the run's own status files (SOURCE_DONE).
 *
 * Fairness: longest-first alone would let a handful of slow servers hold every slot while
 * the quick ones wait behind them. So when there are two slots or more, one of them only ever
 * takes the quickest source waiting: the slow ones start early on the other slots, and the
 * quick ones keep finishing all through the run.
 *
 * A source waits for a free slot, never for another source: each try is a task of its own,
 * and a source whose try failed in a way that passes gives its slot back during its pause
 * and queues again for the next one free. When the run's signal aborts (max_runtime, or
 * SIGTERM), sources never started end with what `notStarted` says and a pause ends at once.
 */
import type { StatusRecord } from "../state/status.ts";

/**
 * How long each source's last finished pull took, from client.status records (oldest
 * first): SOURCE_DONE's durationMs, or for records written before it was kept, the time
 * from the source's first record in that run to its SOURCE_DONE. The latest run wins.
 */
export function lastPullDurations(records: readonly StatusRecord[]): Map<string, number> {
  const firstSeen = new Map<string, number>();
  const out = new Map<string, number>();
  for (const r of records) {
    const source = (r.data as { source?: unknown } | undefined)?.source;
    if (typeof source !== "string") continue;
    const key = `${r.run}\u0000${source}`;
    const t = Date.parse(r.t);
    if (!firstSeen.has(key) && Number.isFinite(t)) firstSeen.set(key, t);
    if (r.name !== "SOURCE_DONE") continue;
    const recorded = (r.data as { durationMs?: unknown }).durationMs;
    const valid = typeof recorded === "number" && Number.isFinite(recorded) && recorded >= 0;
    const ms = valid ? recorded : t - (firstSeen.get(key) ?? t);
    if (Number.isFinite(ms)) out.set(source, ms);
  }
  return out;
}

/** Sources longest last pull first, those without one before all others; ties keep the given order. */
export function pullOrder<T extends { name: string }>(
  sources: readonly T[], durations: ReadonlyMap<string, number>,
): T[] {
  const expected = (s: T) => durations.get(s.name) ?? Infinity;
  return sources.map((s, i) => ({ s, i })).sort((a, b) => expected(b.s) - expected(a.s) || a.i - b.i).map((x) => x.s);
}

/**
 * The pause before try `failedTry + 1`: `base` doubled for every try after the first, taken
 * at random between half and one and a half times that (`random` in [0, 1)), so sources
 * refused together (sshd's MaxStartups refuses many at once) do not come back together.
 */
export function retryPause(base: number, failedTry: number, random: number): number {
  return Math.round(base * 2 ** (failedTry - 1) * (0.5 + random));
}

export interface SlotOptions<T, R> {
  /** Sources at once. */
  limit: number;
  /** Every source, longest expected first (pullOrder). */
  ordered: readonly T[];
  /** One try; never rejects for a failure of the source (it returns one). */
  run(item: T, attempt: number): Promise<R>;
  /** The pause before another try after `result` of try `attempt`, or undefined to keep the result. */
  again(item: T, result: R, attempt: number): number | undefined;
  /** The result of a source that never got a slot before the signal aborted. */
  notStarted(item: T): R;
  /** Called once per source with its final result and its number of tries (0: never started). */
  done(item: T, result: R, tries: number): void;
  signal?: AbortSignal;
}

interface Pausing<T, R> {
  item: T;
  attempt: number;
  at: number;
  last: R;
  long: boolean;
}

/** Run every source through at most `limit` slots (see the top of this file); resolves when all are done. */
export async function runInSlots<T, R>(o: SlotOptions<T, R>): Promise<void> {
  const queue = [...o.ordered];
  const pausing: Array<Pausing<T, R>> = [];
  const limit = Math.max(1, o.limit);
  const longSlots = Math.max(1, limit - 1);
  let running = 0;
  let longRunning = 0;
  let failure: { error: unknown } | undefined;
  let dirty = false;
  let wake: (() => void) | undefined;
  const poke = () => {
    dirty = true;
    const w = wake;
    wake = undefined;
    w?.();
  };
  o.signal?.addEventListener("abort", poke);

  const start = (item: T, attempt: number, long: boolean) => {
    running++;
    if (long) longRunning++;
    void (async () => {
      try {
        const result = await o.run(item, attempt);
        const pause = o.signal?.aborted ? undefined : o.again(item, result, attempt);
        if (pause === undefined) o.done(item, result, attempt);
        else pausing.push({ item, attempt: attempt + 1, at: Date.now() + pause, last: result, long });
      } catch (e) {
        failure ??= { error: e };
      } finally {
        running--;
        if (long) longRunning--;
        poke();
      }
    })();
  };

  /** Start what may start now: a pause that has ended first, then the next source of the lane with a slot. */
  const fill = () => {
    while (running < limit) {
      const now = Date.now();
      const due = pausing.findIndex((p) => p.at <= now);
      if (due >= 0) {
        const p = pausing.splice(due, 1)[0]!;
        start(p.item, p.attempt, p.long);
        continue;
      }
      if (queue.length === 0) return;
      const long = longRunning < longSlots;
      start((long ? queue.shift() : queue.pop())!, 1, long);
    }
  };

  try {
    for (;;) {
      dirty = false;
      if (failure || o.signal?.aborted) {
        for (const item of queue.splice(0)) o.done(item, o.notStarted(item), 0);
        for (const p of pausing.splice(0)) o.done(p.item, p.last, p.attempt - 1);
        if (running === 0) break;
      } else {
        fill();
        if (running === 0 && queue.length === 0 && pausing.length === 0) break;
      }
      if (dirty) continue;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
        if (running < limit && pausing.length > 0 && !failure && !o.signal?.aborted) {
          timer = setTimeout(poke, Math.max(0, Math.min(...pausing.map((p) => p.at)) - Date.now()));
        }
      });
      clearTimeout(timer);
    }
  } finally {
    o.signal?.removeEventListener("abort", poke);
  }
  if (failure) throw failure.error;
}
