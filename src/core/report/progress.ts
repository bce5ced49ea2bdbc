/**
 * A progress line for people at a terminal: bytes done, rate, and (when the total is known)
 * percentage and time left. It draws only on a TTY and never with --quiet: under cron standard
 * error is a pipe or a file, and a report full of carriage returns helps nobody.
 */
import { escapeText } from "../common/escape.ts";
import { formatBytes, formatDuration } from "../common/units.ts";

export interface Progress {
  /** Bytes done so far (absolute, not an increment). */
  update(done: number): void;
  /** Clear the line; a finished task's result is reported by its caller. */
  finish(): void;
}

export interface ProgressOptions {
  label: string;
  /** Bytes the task will handle in all, when known. */
  total?: number;
  quiet?: boolean;
  /** Standard error by default. */
  stream?: { isTTY?: boolean; write(s: string): unknown };
  env?: Record<string, string | undefined>;
  /** Milliseconds since some fixed point; performance.now by default. */
  now?: () => number;
}

/** Redraws at most this often: a terminal over ssh should not be flooded. */
const REDRAW_MS = 200;
/** Weight of the newest rate sample: smooth enough to read, quick enough to follow. */
const SMOOTHING = 0.3;

const silent: Progress = { update() {}, finish() {} };

export function progressEnabled(opts: Pick<ProgressOptions, "quiet" | "stream" | "env">): boolean {
  const stream = opts.stream ?? process.stderr;
  const env = opts.env ?? process.env;
  return !opts.quiet && stream.isTTY === true && env.TERM !== "dumb";
}

/** The text of one progress line (pure, for tests). */
export function progressLine(label: string, done: number, total: number | undefined, bytesPerSec: number | undefined): string {
  // the label names an archive, which may come from anywhere: escaped like every such name
  const parts = [escapeText(label), total !== undefined ? `${formatBytes(done)} / ${formatBytes(total)}` : formatBytes(done)];
  if (total !== undefined && total > 0) parts.push(`${Math.min(100, Math.floor((done / total) * 100))}%`);
  if (bytesPerSec !== undefined && bytesPerSec > 0) {
    parts.push(`${formatBytes(Math.round(bytesPerSec))}/s`);
    if (total !== undefined && total > done) parts.push(`ETA ${formatDuration(((total - done) / bytesPerSec) * 1000)}`);
  }
  return parts.join("  ");
}

export function createProgress(opts: ProgressOptions): Progress {
  if (!progressEnabled(opts)) return silent;
  const stream = opts.stream ?? process.stderr;
  const now = opts.now ?? (() => performance.now());
  let lastDraw = -Infinity;
  let lastAt = now();
  let lastDone = 0;
  let rate: number | undefined;
  let drawn = false;
  return {
    update(done: number) {
      const t = now();
      if (t - lastDraw < REDRAW_MS) return;
      const dt = (t - lastAt) / 1000;
      if (dt > 0 && done >= lastDone) {
        const sample = (done - lastDone) / dt;
        rate = rate === undefined ? sample : rate + SMOOTHING * (sample - rate);
      }
      lastAt = t;
      lastDone = done;
      lastDraw = t;
      drawn = true;
      // \r and erase-to-end-of-line: one line, rewritten in place
      stream.write(`\r${progressLine(opts.label, done, opts.total, rate)}\x1b[K`);
    },
    finish() {
      if (drawn) stream.write("\r\x1b[K");
      drawn = false;
    },
  };
}
