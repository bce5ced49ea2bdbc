/**
 * Which copies to keep: a pure function shared by every place that holds copies (the server's
 * archives, the backup host's copies of each source, and any other store). It knows nothing of
 * where copies live: the caller gives each copy an id, the time it was made, whether it is
 * verified, and what it needs, in the order the copies came to be; it answers which to keep
 * and why.
 *
 * The rules, each optional and all applied together (a copy is kept when any rule keeps it):
 * - last N:       the N newest copies.
 * - hourly/daily/weekly/monthly/yearly N: group the copies by the hour (day, ISO week, month,
 *   year) they were made in, in the host's time zone; the newest copy of each group stands
 *   for it; the N newest groups keep their copy. Counts are independent: one copy can stand
 *   for its day, its week and its month at once.
 * - within D:     every copy made less than D before the newest copy (not before now: a
 *   host that stopped making copies, or whose clock jumped, keeps its history).
 * And, whatever the rules say:
 * - the newest verified copy is kept;
 * - a copy that a kept copy needs (an incremental archive's base) is kept, and what that
 *   one needs, and so on;
 * - a copy the caller holds for a reason of its own (`hold`) is kept.
 *
 * Order decides what "newest" means, never a time: times only place copies in periods. A
 * copy's time never counts as later than the time of a copy that came after it (a clock that
 * ran ahead and was set right again cannot make an old copy look new), so periods follow the
 * order of the copies.
 */

export const PERIOD_TIERS = ["hourly", "daily", "weekly", "monthly", "yearly"] as const;
export type PeriodTier = (typeof PERIOD_TIERS)[number];
export type Tier = "last" | PeriodTier;

export interface RetentionRules {
  last: number;
  hourly: number;
  daily: number;
  weekly: number;
  monthly: number;
  yearly: number;
  /** Milliseconds; 0 for none. */
  withinMs: number;
}

export interface RetainedCopy {
  /** Unique among the copies given (a file name, an object key). */
  id: string;
  /** When the copy was made, in ms since the epoch, as its source of truth records it. */
  madeMs: number;
  /** Only verified copies can be "the newest verified copy". */
  verified: boolean;
  /** Ids of copies this one cannot be restored without (an incremental's base). */
  needs?: readonly string[];
  /** Keep it whatever the rules say; the text says why (shown as the reason). */
  hold?: string;
}

export type KeepReason =
  | { rule: Tier; rank: number; period: string }
  | { rule: "within"; withinMs: number }
  | { rule: "newest-verified" }
  | { rule: "needed"; by: string }
  | { rule: "hold"; why: string };

export interface CopyDecision {
  id: string;
  keep: boolean;
  reasons: KeepReason[];
  /** The time that placed the copy in its periods (madeMs, or less when a later copy was made earlier). */
  periodMs: number;
}

export const NO_RULES: RetentionRules = { last: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0, withinMs: 0 };

/** `keep = N`, as it always meant: the N newest copies. */
export function keepLast(n: number): RetentionRules {
  return { ...NO_RULES, last: n };
}

/** True when the rules alone keep no copy at all (only the newest verified copy would stay). */
export function keepsNothing(r: RetentionRules): boolean {
  return r.last <= 0 && r.withinMs <= 0 && PERIOD_TIERS.every((t) => r[t] <= 0);
}

/** "keep_last 2, keep_daily 7, keep_within 30d": the rules as the configuration names them. */
export function describeRules(r: RetentionRules): string {
  const parts: string[] = [];
  if (r.last > 0) parts.push(`keep_last ${r.last}`);
  for (const t of PERIOD_TIERS) if (r[t] > 0) parts.push(`keep_${t} ${r[t]}`);
  if (r.withinMs > 0) parts.push(`keep_within ${formatSpan(r.withinMs)}`);
  return parts.length ? parts.join(", ") : "no rule";
}

function formatSpan(ms: number): string {
  const units: Array<[string, number]> = [["w", 604_800_000], ["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]];
  for (const [u, n] of units) if (ms % n === 0) return `${ms / n}${u}`;
  return `${ms}ms`;
}

export function describeReason(r: KeepReason): string {
  switch (r.rule) {
    case "within": return `within ${formatSpan(r.withinMs)} of the newest`;
    case "newest-verified": return "newest verified copy";
    case "needed": return `needed by ${r.by}`;
    case "hold": return r.why;
    default: return r.rule === "last" ? `last #${r.rank}` : `${r.rule} #${r.rank} (${r.period})`;
  }
}

// --- periods in a time zone ---------------------------------------------------------------

interface LocalParts {
  year: number;
  month: number;
  day: number;
  hour: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const partsCache = new Map<string, LocalParts>();

/** The host's time zone now (TZ, else the system's), as Intl resolves it. */
export function localTimeZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone;
}

function localParts(ms: number, zone: string): LocalParts {
  // local time changes on whole minutes in every zone of this era: parts are cached per minute
  const key = `${zone}|${Math.floor(ms / 60_000)}`;
  const hit = partsCache.get(key);
  if (hit) return hit;
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", { timeZone: zone, year: "numeric", month: "numeric", day: "numeric", hour: "numeric", hourCycle: "h23" });
    formatters.set(zone, f);
  }
  const p: Partial<Record<Intl.DateTimeFormatPartTypes, number>> = {};
  for (const x of f.formatToParts(ms)) if (x.type !== "literal") p[x.type] = Number(x.value);
  const parts = { year: p.year!, month: p.month!, day: p.day!, hour: p.hour! };
  if (partsCache.size > 100_000) partsCache.clear();
  partsCache.set(key, parts);
  return parts;
}

const DAY_MS = 86_400_000;
const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** ISO 8601 week of a calendar date: weeks start on Monday, week 1 holds the year's first Thursday. */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const days = Math.floor(Date.UTC(year, month - 1, day) / DAY_MS);
  const weekday = (((days + 3) % 7) + 7) % 7; // 1970-01-01 was a Thursday; Monday = 0
  const thursday = days - weekday + 3;
  const isoYear = new Date(thursday * DAY_MS).getUTCFullYear();
  const jan1 = Math.floor(Date.UTC(isoYear, 0, 1) / DAY_MS);
  return { year: isoYear, week: Math.floor((thursday - jan1) / 7) + 1 };
}

/** The period a time falls in, for one tier, as a label that also serves as its key. */
export function periodOf(tier: PeriodTier, ms: number, zone: string): string {
  if (!Number.isFinite(ms)) return "unknown";
  const t = localParts(ms, zone);
  switch (tier) {
    case "hourly": return `${t.year}-${pad(t.month)}-${pad(t.day)} ${pad(t.hour)}h`;
    case "daily": return `${t.year}-${pad(t.month)}-${pad(t.day)}`;
    case "weekly": {
      const w = isoWeek(t.year, t.month, t.day);
      return `${w.year}-W${pad(w.week)}`;
    }
    case "monthly": return `${t.year}-${pad(t.month)}`;
    case "yearly": return String(t.year);
  }
}

// --- the decision ---------------------------------------------------------------------------

/**
 * Decide for every copy, given oldest first, whether it is kept and why. Pure: the same
 * copies, rules and zone give the same answer.
 */
export function decideRetention(copiesOldestFirst: readonly RetainedCopy[], rules: RetentionRules, opts: { timeZone?: string } = {}): CopyDecision[] {
  const zone = opts.timeZone ?? localTimeZone();
  const n = copiesOldestFirst.length;
  const periodMs = new Array<number>(n);
  let later = Infinity;
  for (let i = n - 1; i >= 0; i--) {
    const made = copiesOldestFirst[i]!.madeMs;
    later = Math.min(Number.isFinite(made) ? made : Infinity, later);
    periodMs[i] = later;
  }
  const out: CopyDecision[] = copiesOldestFirst.map((c, i) => ({ id: c.id, keep: false, reasons: [], periodMs: periodMs[i]! }));
  const keep = (i: number, r: KeepReason) => {
    out[i]!.keep = true;
    out[i]!.reasons.push(r);
  };

  for (let i = n - 1, rank = 1; i >= 0 && rank <= rules.last; i--, rank++) keep(i, { rule: "last", rank, period: "" });
  for (const tier of PERIOD_TIERS) {
    const want = rules[tier];
    if (want <= 0) continue;
    const seen = new Set<string>();
    for (let i = n - 1; i >= 0 && seen.size < want; i--) {
      const period = periodOf(tier, periodMs[i]!, zone);
      if (seen.has(period)) continue;
      seen.add(period);
      keep(i, { rule: tier, rank: seen.size, period });
    }
  }
  if (rules.withinMs > 0 && n > 0) {
    const from = periodMs[n - 1]! - rules.withinMs;
    for (let i = 0; i < n; i++) if (periodMs[i]! > from) keep(i, { rule: "within", withinMs: rules.withinMs });
  }
  for (let i = n - 1; i >= 0; i--) {
    if (copiesOldestFirst[i]!.verified) {
      keep(i, { rule: "newest-verified" });
      break;
    }
  }
  copiesOldestFirst.forEach((c, i) => {
    if (c.hold !== undefined) keep(i, { rule: "hold", why: c.hold });
  });
  keepNeeded(copiesOldestFirst, out);
  return out;
}

/** What a kept copy needs is kept, transitively; a need of a removed copy holds nothing. */
function keepNeeded(copies: readonly RetainedCopy[], out: CopyDecision[]): void {
  const index = new Map(copies.map((c, i) => [c.id, i]));
  const queue = out.flatMap((d, i) => (d.keep ? [i] : []));
  while (queue.length > 0) {
    const i = queue.pop()!;
    for (const id of copies[i]!.needs ?? []) {
      const j = index.get(id);
      if (j === undefined) continue;
      const d = out[j]!;
      if (d.reasons.some((r) => r.rule === "needed" && r.by === copies[i]!.id)) continue;
      if (!d.keep) queue.push(j);
      d.keep = true;
      d.reasons.push({ rule: "needed", by: copies[i]!.id });
    }
  }
}

/** The ids to remove, oldest first. */
export function removals(decisions: readonly CopyDecision[]): string[] {
  return decisions.filter((d) => !d.keep).map((d) => d.id);
}

/** The names to remove from `namesOldestFirst` so that `keep` remain (at least one, always the newest). */
export function toRemove(namesOldestFirst: readonly string[], keep: number): string[] {
  const k = Math.max(1, Math.floor(Number.isFinite(keep) ? keep : 1));
  return namesOldestFirst.slice(0, Math.max(0, namesOldestFirst.length - k));
}
