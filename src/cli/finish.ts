/**
 * The end of every run: the silent-failure alarms added to the report, the report (mailed,
 * spooled, or printed for cron) with its MAIL_* record in the run's status file, the metrics
 * file and the healthcheck ping, and the one summary line. Nothing here changes the outcome.
 */
import os from "node:os";
import { code, isGolden } from "../core/common/codes.ts";
import type { Config } from "../core/common/config.ts";
import { systemClock, systemDisk, type Log } from "../core/common/deps.ts";
import { alarmsFor } from "../core/report/health.ts";
import { reportToMonitoring } from "../core/report/metrics.ts";
import { defaultSpoolDir, notify, passwordWarning, unsafeSpool } from "../core/report/notify.ts";
import type { RunOutcome } from "../core/common/outcome.ts";
import { StatusWriter, newRunId, type Role } from "../core/state/status.ts";
import { printOutcome } from "./output.ts";

export interface FinishOptions {
  config: Config;
  /** backup_dir on a server, dest_dir on a backup host: where the mail spool lives by default. */
  roleDir: string;
  log: Log;
  quiet?: boolean;
  json?: boolean;
}

/**
 * A run is refused before it starts when its mail spool can be written by other users (or
 * belongs to another): the outcome to report instead, or undefined when the spool is safe.
 */
export function refusedSpool(config: Config, roleDir: string, role: Role): RunOutcome | undefined {
  if (!config.mail || config.mail.when === "never") return undefined;
  const problem = unsafeSpool(config.mail.spool_dir ?? defaultSpoolDir(roleDir));
  if (!problem) return undefined;
  const now = systemClock.now();
  // a run refused before it began still has its id, as every run's report names it
  const message = `${problem}; nothing was done`;
  const run = newRunId(now);
  return { role, host: os.hostname(), run, code: code("UNSAFE_PERMISSIONS"), message, started: now, ended: now, warnings: [] };
}

export async function finishRun(outcome: RunOutcome, opts: FinishOptions): Promise<void> {
  const alarms = alarmsFor(opts.config, outcome.role === "client" ? "client" : "server", { clock: systemClock, disk: systemDisk });
  const exposed = passwordWarning(opts.config.mail);
  if (exposed) alarms.push(exposed);
  // a server's report goes by the name its backups go by ([server] name), which may not be the host's
  const name = outcome.role === "client" ? undefined : opts.config.server?.name;
  const report: RunOutcome = { ...outcome, ...(name ? { name } : {}), warnings: [...outcome.warnings, ...alarms] };
  if (opts.json) console.log(JSON.stringify(report, null, 2));
  const writer = outcome.statusFile && outcome.run ? new StatusWriter(outcome.statusFile, outcome.role as Role, outcome.run, systemClock) : undefined;
  const result = await notify(report, {
    mail: opts.config.mail,
    spoolDefault: defaultSpoolDir(opts.roleDir),
    env: process.env,
    // with --json, standard output carries the JSON alone; --quiet keeps a clean run silent,
    // so that cron mails only the runs that need a person
    out: opts.json || (opts.quiet && isGolden(outcome.code)) ? null : undefined,
    record: writer ? (name, msg) => writer.write(name, msg, { step: "report" }) : undefined,
  });
  writer?.close();
  if (!opts.json && !result.printed && (!opts.quiet || !isGolden(outcome.code))) printOutcome(report);
  for (const problem of await reportToMonitoring(outcome, opts.config)) opts.log.warn(problem);
}
