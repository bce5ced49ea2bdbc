/**
 * Telling monitoring what happened, after every run, without ever changing the outcome:
 *
 * - a Prometheus node_exporter textfile ([monitor] metrics_file), rendered from the same
 *   health report as `shoot status`, so one file covers every role of the host; it is
 *   replaced atomically (written beside, flushed, renamed) so the collector never reads half;
 * - a ping to a healthchecks-style URL ([monitor] healthcheck_url): `/start` when a run
 *   begins, the URL itself on success, `/<code>` on failure, with a short time-out.
 */
import path from "node:path";
import { code, isGolden, codeName } from "../common/codes.ts";
import type { Config } from "../common/config.ts";
import { systemClock, systemDisk, type Clock, type Disk } from "../common/deps.ts";
import { errorMessage } from "../common/errors.ts";
import { escapeText } from "../common/escape.ts";
import { checkHealth, monitorOf, type HealthReport, type RoleHealth, type RunSummary } from "./health.ts";
import type { RunOutcome } from "../common/outcome.ts";
import type { Role } from "../state/status.ts";
import { VERSION } from "../../version.ts";
import { writeFileAtomic } from "../state/fsutil.ts";

/** A ping may not hold up the end of a run for longer than this. */
export const PING_TIMEOUT_MS = 10_000;
/** Bytes of report sent with a ping (healthchecks keeps the body as the ping's log). */
const PING_BODY_MAX = 10_000;

interface Sample {
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  help: string;
  samples: Sample[];
}

/**
 * A label value: the text as shoot prints it everywhere (control characters escaped, so no
 * newline is left), then backslash and double quote escaped as the text format wants them.
 */
export function labelValue(v: string): string {
  return escapeText(v).replace(/[\\"]/g, (c) => `\\${c}`);
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
  return String(v);
}

function renderFamilies(families: readonly Family[]): string {
  const out: string[] = [];
  for (const f of families) {
    if (f.samples.length === 0) continue;
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} gauge`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${labelValue(v)}"`).join(",");
      out.push(`${f.name}${labels ? `{${labels}}` : ""} ${formatValue(s.value)}`);
    }
  }
  return `${out.join("\n")}\n`;
}

const seconds = (iso: string) => Date.parse(iso) / 1000;

/** The run that just ended, as the report's last run, when the status file does not say it (no status written). */
function lastRunOf(role: RoleHealth, outcome: RunOutcome | undefined): RunSummary | undefined {
  if (!outcome || roleOf(outcome.role) !== role.role || role.lastRun?.run === outcome.run) return role.lastRun;
  return {
    run: outcome.run, code: outcome.code, name: codeName(outcome.code), meaning: "", message: outcome.message,
    started: outcome.started.toISOString(), ended: outcome.ended.toISOString(), ageMs: 0,
    durationMs: outcome.ended.getTime() - outcome.started.getTime(),
  };
}

/** The text of the metrics file: every role of the host, and each source of a backup host. */
export function renderMetrics(report: HealthReport, outcome?: RunOutcome): string {
  const f = (name: string, help: string): Family => ({ name, help, samples: [] });
  const healthy = f("shoot_healthy", "1 when `shoot status` finds this role healthy, else 0.");
  const statusCode = f("shoot_status_code", "Exit code of `shoot status` for this role: 0 healthy, else the failure's code (44 when stale).");
  const warnings = f("shoot_warnings", "Warnings `shoot status` reports for this role (unchanged too long, space low, torn status lines).");
  const lastCode = f("shoot_last_run_code", "Final status code of the last finished run (golden: 4, 9, 30).");
  const lastOk = f("shoot_last_run_success", "1 when the last finished run ended with a golden code, else 0.");
  const lastTime = f("shoot_last_run_timestamp_seconds", "When the last finished run ended (Unix time).");
  const lastDuration = f("shoot_last_run_duration_seconds", "How long the last finished run took.");
  const goldenTime = f("shoot_last_success_timestamp_seconds", "When the last run with a golden code ended (Unix time).");
  const archiveSize = f("shoot_archive_size_bytes", "Size of the current archive.");
  const archiveTime = f("shoot_archive_timestamp_seconds", "When the current archive was made (Unix time).");
  const free = f("shoot_free_bytes", "Free bytes on the file system of backup_dir or dest_dir.");
  const daysLeft = f("shoot_space_days_left", "Days until free space runs out at the current growth (absent when not within a year).");
  const srcHealthy = f("shoot_source_healthy", "1 when this source's last pull is good and recent, else 0.");
  const srcCode = f("shoot_source_last_code", "Outcome code of this source in the last client run that pulled it.");
  const srcGolden = f("shoot_source_last_success_timestamp_seconds", "When this source was last pulled or found current (Unix time).");
  const srcSize = f("shoot_source_archive_size_bytes", "Size of the newest verified copy of this source.");
  const srcCopies = f("shoot_source_copies", "Verified copies kept of this source.");
  const offCode = f("shoot_offsite_code", "Code of the last attempt to send this source's copy to this offsite store: 77 sent and checked, else a store failure (110-117).");
  const offOk = f("shoot_offsite_success", "1 when this source's current copy is in this offsite store, checked, else 0.");
  const offTime = f("shoot_offsite_timestamp_seconds", "When this offsite store last reported on this source (Unix time).");

  for (const role of report.roles) {
    const l = { role: role.role, name: role.name };
    healthy.samples.push({ labels: l, value: role.exitCode === 0 ? 1 : 0 });
    statusCode.samples.push({ labels: l, value: role.exitCode });
    warnings.samples.push({ labels: l, value: role.warnings.length });
    const run = lastRunOf(role, outcome);
    if (run) {
      lastCode.samples.push({ labels: l, value: run.code });
      lastOk.samples.push({ labels: l, value: isGolden(run.code) ? 1 : 0 });
      lastTime.samples.push({ labels: l, value: seconds(run.ended) });
      if (run.durationMs !== undefined) lastDuration.samples.push({ labels: l, value: run.durationMs / 1000 });
    }
    if (role.lastGolden) goldenTime.samples.push({ labels: l, value: seconds(role.lastGolden.at) });
    if (role.archive) {
      archiveSize.samples.push({ labels: l, value: role.archive.size });
      if (role.archive.made) archiveTime.samples.push({ labels: l, value: seconds(role.archive.made) });
    }
    if (role.space) {
      free.samples.push({ labels: l, value: role.space.free });
      if (role.space.daysLeft !== undefined) daysLeft.samples.push({ labels: l, value: role.space.daysLeft });
    }
    for (const s of role.sources ?? []) {
      const sl = { source: s.name };
      srcHealthy.samples.push({ labels: sl, value: s.exitCode === 0 ? 1 : 0 });
      if (s.last) srcCode.samples.push({ labels: sl, value: s.last.code });
      if (s.lastGolden) srcGolden.samples.push({ labels: sl, value: seconds(s.lastGolden.at) });
      if (s.archive) srcSize.samples.push({ labels: sl, value: s.archive.size });
      srcCopies.samples.push({ labels: sl, value: s.copies });
      for (const o of s.offsite ?? []) {
        const ol = { source: s.name, store: o.store };
        offCode.samples.push({ labels: ol, value: o.code });
        offOk.samples.push({ labels: ol, value: o.code === code("OFFSITE_SENT") ? 1 : 0 });
        offTime.samples.push({ labels: ol, value: seconds(o.at) });
      }
    }
  }
  return renderFamilies([
    healthy, statusCode, warnings, lastCode, lastOk, lastTime, lastDuration, goldenTime, archiveSize, archiveTime,
    free, daysLeft, srcHealthy, srcCode, srcGolden, srcSize, srcCopies, offCode, offOk, offTime,
  ]);
}

/**
 * Replace `file` with `text` so that a reader sees the old file or the new one, never a part.
 * The temporary name does not end in `.prom`: the collector reads only those.
 */
export function replaceFileAtomic(file: string, text: string): void {
  const base = path.basename(file);
  writeFileAtomic(path.dirname(file), base, text, 0o644, `.${base}.${process.pid}.tmp`);
}

export interface MetricsResult {
  file?: string;
  written: boolean;
  error?: string;
}

/**
 * Write the metrics file when [monitor] metrics_file is set. `outcome` is the run that just
 * ended (its code counts even when it wrote no status record). Never throws.
 */
export function writeMetrics(outcome: RunOutcome | undefined, cfg: Config, deps: { clock: Clock; disk: Disk } = { clock: systemClock, disk: systemDisk }): MetricsResult {
  const file = monitorOf(cfg).metrics_file;
  if (!file) return { written: false };
  try {
    replaceFileAtomic(file, renderMetrics(checkHealth(cfg, deps), outcome));
    return { file, written: true };
  } catch (e) {
    return { file, written: false, error: `metrics file ${file} not written: ${errorMessage(e)}` };
  }
}

export type PingKind = "start" | "end";

export interface PingResult {
  url?: string;
  ok: boolean;
  status?: number;
  error?: string;
}

function roleOf(r: Role): "server" | "client" {
  return r === "client" ? "client" : "server";
}

/** Offsite stores that failed in this run, by source. */
export function offsiteFailures(outcome: Partial<RunOutcome>): { source: string; store: string; code: number; message: string }[] {
  return (outcome.sources ?? []).flatMap((s) => (s.offsite ?? []).filter((o) => o.code !== code("OFFSITE_SENT")).map((o) => ({ source: s.name, ...o })));
}

/** The URL to ping: `/start`, the URL itself for success, `/<code>` for a failure. */
export function pingUrl(base: string, kind: PingKind, role: Role, code?: number): string {
  const u = new URL(base.replace(/\{role\}/g, roleOf(role)));
  const suffix = kind === "start" ? "start" : code === undefined || isGolden(code) ? "" : String(code);
  if (suffix) u.pathname = `${u.pathname.replace(/\/+$/, "")}/${suffix}`;
  return u.toString();
}

/**
 * Ping [monitor] healthcheck_url, if set: at the start of a run (`kind` "start", outcome
 * only needs its role) or at its end. Never throws and never waits longer than the time-out.
 */
export async function pingHealthcheck(
  kind: PingKind,
  outcome: Pick<RunOutcome, "role"> & Partial<RunOutcome>,
  cfg: Config,
  opts: { fetch?: typeof fetch; timeoutMs?: number } = {},
): Promise<PingResult> {
  const base = monitorOf(cfg).healthcheck_url;
  if (!base) return { ok: true };
  const stores = offsiteFailures(outcome);
  let url: string;
  try {
    url = pingUrl(base, kind, outcome.role, outcome.code !== undefined && isGolden(outcome.code) && stores.length ? stores[0]!.code : outcome.code);
  } catch (e) {
    return { ok: false, error: `healthcheck_url is not a URL: ${errorMessage(e)}` };
  }
  const body = kind === "start"
    ? `shoot ${VERSION} ${outcome.role} run starting`
    : `shoot ${VERSION} ${outcome.role}: ${outcome.code} ${codeName(outcome.code ?? 1)}: ${outcome.message ?? ""}${stores.map((o) => `\noffsite ${o.store} (${o.source}): ${o.code} ${codeName(o.code)}: ${o.message}`).join("")}`.slice(0, PING_BODY_MAX);
  try {
    const res = await (opts.fetch ?? fetch)(url, {
      method: "POST",
      body,
      headers: { "content-type": "text/plain; charset=utf-8", "user-agent": `shoot/${VERSION}` },
      signal: AbortSignal.timeout(opts.timeoutMs ?? PING_TIMEOUT_MS),
      redirect: "follow",
    });
    // the answer's body is of no use; reading it frees the connection
    await res.arrayBuffer().catch(() => undefined);
    return res.ok ? { url, ok: true, status: res.status } : { url, ok: false, status: res.status, error: `healthcheck ping ${url} answered ${res.status}` };
  } catch (e) {
    return { url, ok: false, error: `healthcheck ping ${url} failed: ${errorMessage(e)}` };
  }
}

/**
 * The end of a run for monitoring: metrics file, then the ping. Problems come back as
 * lines for the log; the outcome stays what it was.
 */
export async function reportToMonitoring(outcome: RunOutcome, cfg: Config): Promise<string[]> {
  const problems: string[] = [];
  const m = writeMetrics(outcome, cfg);
  if (m.error) problems.push(m.error);
  const p = await pingHealthcheck("end", outcome, cfg);
  if (p.error) problems.push(p.error);
  return problems;
}
