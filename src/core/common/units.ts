/** Sizes ("512MiB", "10GB", "1024") and durations ("90s", "6h", "1d") as people write them. */

const SIZE_UNITS: Record<string, number> = {
  "": 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
};

const DURATION_UNITS: Record<string, number> = {
  ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000,
};

/** Bytes from a size string or a plain number; undefined when it is not a size. */
export function parseSize(v: string | number): number | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Milliseconds from a duration like "90s", "6h", "1d", "1h30m"; undefined when it is not one. */
export function parseDuration(v: string | number): number | undefined {
  if (typeof v === "number") return undefined; // a bare number has no unit: ambiguous, refused
  const s = v.trim();
  if (s === "") return undefined;
  let total = 0;
  let rest = s;
  const part = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)/i;
  while (rest.length > 0) {
    const m = part.exec(rest);
    if (!m) return undefined;
    total += Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!;
    rest = rest.slice(m[0].length).trimStart();
  }
  return Math.round(total);
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** How long ago something was, or how old: a duration, never negative (clocks differ by a little). */
export function formatAge(ms: number): string {
  return formatDuration(Math.max(0, ms));
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${Math.round(s % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}
