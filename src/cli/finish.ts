/**
 * The end of every run: the report (mailed, spooled, or printed for cron), its MAIL_* record
 * in the run's status file, and the one summary line. Nothing here changes the outcome.
 */
import { isGolden } from "../core/codes.ts";
import type { MailConfig } from "../core/config.ts";
import { systemClock } from "../core/deps.ts";
import { defaultSpoolDir, notify } from "../core/notify.ts";
import type { RunOutcome } from "../core/outcome.ts";
import { StatusWriter, type Role } from "../core/status.ts";
import { printOutcome } from "./output.ts";

export async function finishRun(outcome: RunOutcome, opts: { mail?: MailConfig; roleDir: string; quiet?: boolean; json?: boolean }): Promise<void> {
  if (opts.json) console.log(JSON.stringify(outcome, null, 2));
  const writer = outcome.statusFile && outcome.run ? new StatusWriter(outcome.statusFile, outcome.role as Role, outcome.run, systemClock) : undefined;
  const result = await notify(outcome, {
    mail: opts.mail,
    spoolDefault: defaultSpoolDir(opts.roleDir),
    env: process.env,
    // with --json, standard output carries the JSON alone; --quiet keeps a clean run silent,
    // so that cron mails only the runs that need a person
    out: opts.json || (opts.quiet && isGolden(outcome.code)) ? () => {} : undefined,
    record: writer ? (name, msg) => writer.write(name, msg, { step: "report" }) : undefined,
  });
  writer?.close();
  // without [mail] the whole report went to stdout already (cron mails it)
  if (!opts.json && !result.printed && (!opts.quiet || !isGolden(outcome.code))) printOutcome(outcome);
}
