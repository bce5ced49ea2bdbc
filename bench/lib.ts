/**
 * Benchmark plumbing shared by every bench script: run a command under /usr/bin/time to get
 * its wall time and peak RSS, take medians, and print one comparison table.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawner, describeResult, type RunOptions } from "../src/io/process.ts";

export const MiB = 1024 * 1024;

export interface Measured {
  wallMs: number;
  /** User + system CPU time of the process and its children. */
  cpuMs: number;
  /** Peak resident set size in bytes (the largest of the process and the children it waited for). */
  peakRss: number;
  stdout: string;
  /** The wall time of every round, in the order run, when this is the median of several (alternating). */
  rounds?: number[];
}

/**
 * Run argv to completion under GNU time; throws when it fails. GNU time writes its report to a
 * file: a child that makes its inherited standard error non-blocking (as Bun does) would make
 * time's own writes to the shared pipe fail, cutting the report short and its exit code to 1.
 */
export async function measure(argv: string[], opts: RunOptions = {}): Promise<Measured> {
  const report = path.join(os.tmpdir(), `shoot-bench-time-${process.pid}-${++measured}`);
  const began = performance.now();
  try {
    const r = await spawner.run(["/usr/bin/time", "-v", "-o", report, ...argv], {
      timeoutMs: 30 * 60_000,
      captureStdout: true,
      stderrLines: 20,
      ...opts,
      installHint: "apt-get install time",
    });
    const wallMs = performance.now() - began;
    if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${describeResult(r, 10)}`);
    const text = fs.readFileSync(report, "utf8");
    const field = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
    const cpuMs = (field(/User time \(seconds\): ([\d.]+)/) + field(/System time \(seconds\): ([\d.]+)/)) * 1000;
    return { wallMs, cpuMs, peakRss: field(/Maximum resident set size \(kbytes\): (\d+)/) * 1024, stdout: r.stdout };
  } finally {
    fs.rmSync(report, { force: true });
  }
}
let measured = 0;

/**
 * Run argv to completion the cheapest way there is, for start-up times of a few milliseconds:
 * one synchronous spawn with standard input, output and error on /dev/null, timed around the
 * spawn (as `hyperfine -N` does). Going through `measure` would add GNU time's own start and
 * Bun's pipes: about 5 ms (measured: /bin/true takes 6.9 ms that way and 2.1 ms this way).
 * CPU time comes from the child's resource usage. Its peak RSS there is not the child's own
 * (it read 44 MiB for /bin/true, the size of the bench process), so none is given.
 */
export function measureStart(argv: string[]): Measured {
  const began = performance.now();
  const r = Bun.spawnSync(argv, { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  const wallMs = performance.now() - began;
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: exit ${r.exitCode ?? r.signalCode}`);
  const cpuMs = Number(r.resourceUsage.cpuTime.total) / 1000;
  return { wallMs, cpuMs, peakRss: 0, stdout: "" };
}

/** Run a sequence of commands one after the other, as one measured step. */
export async function measureAll(argvs: string[][], opts: RunOptions = {}): Promise<Measured> {
  let wallMs = 0;
  let cpuMs = 0;
  let peakRss = 0;
  let stdout = "";
  for (const argv of argvs) {
    const m = await measure(argv, opts);
    wallMs += m.wallMs;
    cpuMs += m.cpuMs;
    peakRss = Math.max(peakRss, m.peakRss);
    stdout += m.stdout;
  }
  return { wallMs, cpuMs, peakRss, stdout };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The run with the median wall time (the lower of the two middle ones for an even count). */
export function medianRun<T extends Measured>(runs: readonly T[]): T {
  const s = [...runs].sort((a, b) => a.wallMs - b.wallMs);
  return s[(s.length - 1) >> 1]!;
}

/**
 * Run the steps in turn, n rounds (a, b, c, a, b, c, …), and keep each one's median run, with
 * every round's wall time: this VM's speed drifts over minutes, and a peer measured just
 * before shoot would otherwise take the drift as a difference between the two.
 */
export async function alternating<const S extends ReadonlyArray<() => Promise<Measured>>>(n: number, steps: S): Promise<{ -readonly [K in keyof S]: Awaited<ReturnType<S[K]>> }> {
  const runs: Measured[][] = steps.map(() => []);
  for (let i = 0; i < n; i++) for (let s = 0; s < steps.length; s++) runs[s]!.push(await steps[s]!());
  const withRounds = (rs: Measured[]) => ({ ...medianRun(rs), rounds: rs.map((r) => r.wallMs) });
  return runs.map(withRounds) as { -readonly [K in keyof S]: Awaited<ReturnType<S[K]>> };
}

/**
 * The ratio of a's time to b's round by round (the two ran next to each other), as "rounds
 * 0.95–1.08": how far one run's ratio can move on this machine. Empty for a single round.
 */
export function roundSpread(a: Measured, b: Measured): string {
  const n = Math.min(a.rounds?.length ?? 0, b.rounds?.length ?? 0);
  if (n < 2) return "";
  const ratios = Array.from({ length: n }, (_, i) => a.rounds![i]! / b.rounds![i]!).sort((x, y) => x - y);
  return `rounds ${ratios[0]!.toFixed(2)}–${ratios[n - 1]!.toFixed(2)}`;
}

export interface Row {
  name: string;
  wallMs?: number;
  cpuMs?: number;
  /** Input bytes per second, when the row processes the benchmark tree. */
  bytes?: number;
  peakRss?: number;
  /** Speed relative to the row this one is compared with (× faster). */
  ratio?: number;
  /** Free text: what was measured, when it is not a speed (e.g. "wire 1.3 %"). */
  note?: string;
  /** Goal and pass/fail. */
  target?: string;
  verdict?: "pass" | "ok" | "FAIL" | "";
}

/** "pass" at or beyond the goal, "ok" at or beyond the minimum, else "FAIL". */
export function verdict(value: number, goal: number, minimum: number, higherIsBetter = true): "pass" | "ok" | "FAIL" {
  const better = (a: number, b: number) => (higherIsBetter ? a >= b : a <= b);
  return better(value, goal) ? "pass" : better(value, minimum) ? "ok" : "FAIL";
}

export function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

export function formatTable(rows: Row[]): string {
  const head = ["pipeline", "wall s", "CPU s", "MB/s", "peak RSS MiB", "× ref", "note", "target", "result"];
  const body = rows.map((r) => [
    r.name,
    r.wallMs !== undefined ? (r.wallMs / 1000).toFixed(2) : "",
    r.cpuMs !== undefined ? (r.cpuMs / 1000).toFixed(2) : "",
    r.wallMs !== undefined && r.bytes !== undefined ? mbps(r.bytes, r.wallMs).toFixed(0) : "",
    r.peakRss !== undefined ? (r.peakRss / MiB).toFixed(0) : "",
    r.ratio !== undefined ? r.ratio.toFixed(2) : "",
    r.note ?? "",
    r.target ?? "",
    r.verdict ?? "",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ") + " |";
  return [line(head), "| " + widths.map((w) => "-".repeat(w)).join(" | ") + " |", ...body.map(line)].join("\n");
}
