/**
 * The last thing every run does: report its outcome. With `[mail]` the report is mailed
 * (always, or only on failure); without it, it is printed for cron to mail. A report that
 * cannot be sent waits in a bounded spool and goes out, oldest first, before the next one.
 * Reporting never throws and never changes the outcome: a mail failure becomes a MAIL_FAILED
 * record, nothing more.
 */
import fs from "node:fs";
import path from "node:path";
import { createSmtpMailer, describeSecurity, MailError, parseRelay, type Mailer, type MailErrorKind } from "../../io/mailer.ts";
import { writeStdout } from "../../io/stdout.ts";
import { isGolden } from "../common/codes.ts";
import { ConfigError, PASSWORD_ENV, type Config, type MailConfig } from "../common/config.ts";
import { errnoCode, errorMessage, ShootError } from "../common/errors.ts";
import type { RunOutcome } from "../common/outcome.ts";
import { plural, renderReport, type StatusTail } from "./report.ts";
import { readStatusFile } from "../state/status.ts";
import { writeFileAtomic } from "../state/fsutil.ts";
import { exposedSecret, unsafeDir } from "../state/strict-modes.ts";
import { code } from "../common/codes.ts";
import type { Warning } from "../common/outcome.ts";
import { formatBytes } from "../common/units.ts";

export const SPOOL_DIRNAME = "mail-spool";

/** The spool used when `[mail] spool_dir` is not set: inside backup_dir (server) or dest_dir (client). */
export function defaultSpoolDir(roleDir: string): string {
  return path.join(roleDir, SPOOL_DIRNAME);
}

export type MailRecordName = "MAIL_SENT" | "MAIL_FAILED";

export interface NotifyOptions {
  mail?: MailConfig;
  /** The spool directory when `[mail] spool_dir` is not set (see defaultSpoolDir). */
  spoolDefault: string;
  /** The relay; by default nodemailer over SMTP as `[mail]` says. */
  mailer?: Mailer;
  /** Writes a non-final status record (MAIL_SENT / MAIL_FAILED). */
  record?: (name: MailRecordName, msg: string) => void;
  /** Where the report goes without `[mail]`: standard output by default, nowhere (not even made) with null. */
  out?: ((text: string) => unknown) | null;
  env?: Record<string, string | undefined>;
  now?: () => Date;
}

export interface NotifyResult {
  /** Messages the relay accepted, spooled ones included. */
  sent: number;
  /** Reports waiting in the spool afterwards. */
  spooled: number;
  /** Oldest reports removed because the spool held more than spool_max. */
  dropped: number;
  /** The report went to `out` (no `[mail]`). */
  printed: boolean;
  error?: string;
  errorKind?: MailErrorKind | "spool" | "internal";
}

/** The SMTP password: from password_file, else $SHOOT_SMTP_PASSWORD; never from the command line. */
export function smtpPassword(mail: MailConfig, env: Record<string, string | undefined>): string | undefined {
  if (mail.password_file) {
    let text: string;
    try {
      text = fs.readFileSync(mail.password_file, "utf8");
    } catch (e) {
      throw new MailError("config", `password_file ${mail.password_file} cannot be read: ${errorMessage(e)}`, { cause: e });
    }
    // an editor's trailing newline is not part of the password
    const pw = text.replace(/\r?\n$/, "");
    if (pw === "") throw new MailError("config", `password_file ${mail.password_file} is empty`);
    return pw;
  }
  const fromEnv = env[PASSWORD_ENV];
  return fromEnv ? fromEnv : undefined;
}

/** The status file's records for the report's tail; an unreadable file is said so, not thrown. */
export function statusTail(file: string | undefined): StatusTail | undefined {
  if (!file) return undefined;
  try {
    const parsed = readStatusFile(file);
    if (!parsed) return { file, records: [], skipped: 0, error: "it does not exist" };
    return { file, ...parsed };
  } catch (e) {
    return { file, records: [], skipped: 0, error: errorMessage(e) };
  }
}

// --- the spool: one file per report, names that sort oldest first --------------------------

interface SpooledReport {
  v: 1;
  made: string;
  host: string;
  subject: string;
  text: string;
}

const SPOOL_FILE = /^\d{8}T\d{6}\.\d{3}Z-[0-9a-z-]+\.mail$/;
const DROPPED_FILE = "dropped.json";
let spoolSeq = 0;

export interface SpoolState {
  files: string[];
  bytes: number;
}

export function readSpool(dir: string): SpoolState {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return { files: [], bytes: 0 };
    throw e;
  }
  const files = names.filter((n) => SPOOL_FILE.test(n)).sort();
  let bytes = 0;
  for (const f of files) {
    try {
      bytes += fs.statSync(path.join(dir, f)).size;
    } catch {
      // removed meanwhile by a concurrent run: it is not in the spool any more
    }
  }
  return { files, bytes };
}

function ensureSpoolDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    fs.chmodSync(dir, 0o700);
  } catch {
    // not ours to change (a shared directory someone chose): the files themselves are 0600
  }
}

function spoolWrite(dir: string, report: SpooledReport): string {
  ensureSpoolDir(dir);
  const stamp = report.made.replace(/[-:]/g, "");
  const seq = (spoolSeq++).toString(36).padStart(4, "0");
  const name = `${stamp}-${process.pid}-${seq}-${Math.floor(Math.random() * 0xffff).toString(16)}.mail`;
  // written whole under a temporary name, then renamed: the spool never holds half a report
  writeFileAtomic(dir, name, JSON.stringify(report), 0o600, `.tmp-${name}`);
  return name;
}

/** Why the spool must not be used (others may write in it), with the fix; undefined when it is safe or not there yet. */
export function unsafeSpool(dir: string): string | undefined {
  return unsafeDir(dir, "the mail spool");
}

/** A warning for the report when password_file is exposed (a run that mails reads it). */
export function passwordWarning(mail: MailConfig | undefined): Warning | undefined {
  if (!mail?.password_file || mail.when === "never") return undefined;
  const problem = exposedSecret(mail.password_file, "password_file");
  return problem ? { code: code("PASSWORD_EXPOSED"), msg: problem } : undefined;
}

function spoolRead(dir: string, name: string): SpooledReport | undefined {
  try {
    const x = JSON.parse(fs.readFileSync(path.join(dir, name), "utf8")) as Partial<SpooledReport>;
    if (x.v !== 1 || typeof x.subject !== "string" || typeof x.text !== "string" || typeof x.made !== "string") return undefined;
    return { v: 1, made: x.made, host: typeof x.host === "string" ? x.host : "this host", subject: x.subject, text: x.text };
  } catch {
    return undefined;
  }
}

function removeQuietly(file: string): boolean {
  try {
    fs.unlinkSync(file);
    return true;
  } catch (e) {
    return errnoCode(e) === "ENOENT";
  }
}

/** How many reports earlier runs dropped from a full spool, not yet told in a delivered report. */
function readDropped(dir: string): number {
  try {
    const n = (JSON.parse(fs.readFileSync(path.join(dir, DROPPED_FILE), "utf8")) as { count?: unknown }).count;
    return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

function writeDropped(dir: string, count: number): void {
  try {
    if (count > 0) writeFileAtomic(dir, DROPPED_FILE, JSON.stringify({ count }));
    else removeQuietly(path.join(dir, DROPPED_FILE));
  } catch {
    // only the note in a later report depends on it; the MAIL_FAILED record already said it
  }
}

/** Remove the oldest reports beyond `max`; returns how many were removed. */
function boundSpool(dir: string, max: number): number {
  const { files } = readSpool(dir);
  let removed = 0;
  for (const f of files.slice(0, Math.max(0, files.length - max))) if (removeQuietly(path.join(dir, f))) removed++;
  return removed;
}

function lateNote(r: SpooledReport): string {
  return `This report was made on ${r.made.slice(0, 19).replace("T", " ")}Z but could not be mailed then; it waited in the mail spool on ${r.host} and goes out with a later report.\n\n`;
}

// --- notify --------------------------------------------------------------------------------

export async function notify(outcome: RunOutcome, opts: NotifyOptions): Promise<NotifyResult> {
  try {
    return await deliver(outcome, opts);
  } catch (e) {
    // reporting must never end a run worse than the backup did
    const error = `reporting failed: ${errorMessage(e)}`;
    safeRecord(opts, "MAIL_FAILED", error);
    return { sent: 0, spooled: 0, dropped: 0, printed: false, error, errorKind: "internal" };
  }
}

function safeRecord(opts: NotifyOptions, name: MailRecordName, msg: string): void {
  try {
    opts.record?.(name, msg);
  } catch {
    // a status file that cannot take the record must not turn a mail problem into a crash
  }
}

/**
 * The report of a run: printed when there is no [mail]; with [mail], spooled first and then
 * sent through the relay, after whatever waits in the spool, and what happened recorded.
 */
async function deliver(outcome: RunOutcome, opts: NotifyOptions): Promise<NotifyResult> {
  const result: NotifyResult = { sent: 0, spooled: 0, dropped: 0, printed: false };
  const mail = opts.mail;
  if (!mail) {
    result.printed = true;
    if (opts.out === null) return result;
    const r = renderReport(outcome, { tail: statusTail(outcome.statusFile) });
    await (opts.out ?? writeStdout)(`${r.subject}\n\n${r.text}`);
    return result;
  }
  if (mail.when === "never") return result;

  const dir = mail.spool_dir ?? opts.spoolDefault;
  // a store that failed needs a person as much as a failed pull does
  const storeFailed = (outcome.sources ?? []).some((x) => (x.offsite ?? []).some((o) => o.code !== code("OFFSITE_SENT")));
  const wanted = mail.when === "always" || !isGolden(outcome.code) || storeFailed;
  // a spool others may write in is neither read nor written: the report goes straight to the relay
  const unsafe = unsafeSpool(dir);
  let spoolError: string | undefined = unsafe && `${unsafe} (${code("UNSAFE_PERMISSIONS")} UNSAFE_PERMISSIONS: the spool was not used)`;
  let waiting: string[] = [];
  try {
    if (!unsafe) waiting = readSpool(dir).files;
  } catch (e) {
    spoolError = `the mail spool ${dir} cannot be read (${errorMessage(e)})`;
  }
  // a clean run with nothing waiting needs no relay at all
  if (!wanted && waiting.length === 0) return result;

  const earlierDropped = readDropped(dir);
  const spoolUnsafe = unsafe !== undefined;
  const spooled = wanted
    ? spoolCurrent(outcome, opts, mail, dir, waiting.length, earlierDropped, spoolUnsafe)
    : undefined;
  if (spooled?.error) spoolError = spooled.error;
  const current = spooled?.entry;
  const queue = [...waiting.map((name): QueuedReport => ({ name })), ...(current ? [current] : [])];
  const sending = await sendQueue(mail, opts, dir, queue, current, result);

  if (sending.sentCurrent && earlierDropped > 0 && !unsafe) writeDropped(dir, 0);
  if (result.sent > 0) safeRecord(opts, "MAIL_SENT", sentNote(mail, sending));
  // a report that could neither be spooled nor sent is gone: that must be said loudly
  const lost = current !== undefined && current.name === undefined && !sending.sentCurrent;
  if (sending.failure || lost) {
    const what = { failure: sending.failure, lost, spoolError, earlierDropped, unsafe: spoolUnsafe };
    failureNote(mail, opts, dir, result, what);
  } else {
    result.spooled = unsafe ? 0 : safeSpoolState(dir).files.length;
  }
  return result;
}

/** A report in the queue: spooled (`name`) and read when its turn comes, or at hand (`report`). */
interface QueuedReport {
  name?: string;
  report?: SpooledReport;
}

/**
 * This run's report, rendered with notes on what waits before it, and spooled before the first
 * attempt to send it: a run killed while talking to the relay loses nothing.
 */
function spoolCurrent(
  outcome: RunOutcome, opts: NotifyOptions, mail: MailConfig, dir: string,
  waiting: number, earlierDropped: number, unsafe: boolean,
): { entry: QueuedReport; error?: string } {
  const notes: string[] = [];
  if (waiting > 0) {
    notes.push(`${plural(waiting, "earlier report")} from the mail spool ${waiting === 1 ? "goes" : "go"} out before this one.`);
  }
  if (earlierDropped > 0) {
    notes.push(`${plural(earlierDropped, "older report")} could not be mailed and ${earlierDropped === 1 ? "was" : "were"} ` +
      `dropped because the spool was full (spool_max = ${mail.spool_max}).`);
  }
  const rendered = renderReport(outcome, { tail: statusTail(outcome.statusFile), notes });
  const now = opts.now ?? (() => new Date());
  const made = now().toISOString();
  const report: SpooledReport = { v: 1, made, host: outcome.host, subject: rendered.subject, text: rendered.text };
  // a spool others may write in is not written to (deliver has said why)
  if (unsafe) return { entry: { report } };
  try {
    return { entry: { name: spoolWrite(dir, report), report } };
  } catch (e) {
    return { entry: { report }, error: `the mail spool ${dir} cannot be written (${errorMessage(e)})` };
  }
}

interface Sending {
  failure?: MailError;
  rejected: Set<string>;
  sentEarlier: number;
  sentCurrent: boolean;
}

/**
 * Send the queue in order, oldest first, removing each sent report from the spool. A message
 * the relay refuses stays and the rest go on; any other failure stops the queue.
 */
async function sendQueue(
  mail: MailConfig, opts: NotifyOptions, dir: string, queue: QueuedReport[],
  current: QueuedReport | undefined, result: NotifyResult,
): Promise<Sending> {
  const s: Sending = { rejected: new Set(), sentEarlier: 0, sentCurrent: false };
  let mailer = opts.mailer;
  if (!mailer) {
    try {
      mailer = createSmtpMailer(mail, smtpPassword(mail, opts.env ?? process.env));
    } catch (e) {
      s.failure = e instanceof MailError ? e : new MailError("config", errorMessage(e), { cause: e });
      return s;
    }
  }
  for (const entry of queue) {
    const report = entry.report ?? spoolRead(dir, entry.name!);
    if (!report) {
      // unreadable (not written by shoot, or damaged): it can never be sent
      if (removeQuietly(path.join(dir, entry.name!))) result.dropped++;
      continue;
    }
    const isCurrent = entry === current;
    try {
      const text = isCurrent ? report.text : `${lateNote(report)}${report.text}`;
      const date = new Date(report.made);
      const r = await mailer.send({ from: mail.from, to: mail.to, subject: report.subject, text, date });
      for (const x of r.rejected) s.rejected.add(x);
    } catch (e) {
      const err = e instanceof MailError ? e : new MailError("protocol", errorMessage(e), { cause: e });
      // the relay refused this one message: keep it, but do not let it hold up the others
      if (err.kind === "message") {
        s.failure ??= err;
        continue;
      }
      s.failure = err;
      break;
    }
    result.sent++;
    if (entry.name) removeQuietly(path.join(dir, entry.name));
    if (isCurrent) s.sentCurrent = true;
    else s.sentEarlier++;
  }
  return s;
}

function relayLabel(mail: MailConfig): string {
  try {
    return parseRelay(mail.smtp).label;
  } catch {
    return "the relay"; // an unusable URL is already the failure being reported
  }
}

/** The MAIL_SENT record: what went where, and which recipients the relay refused. */
function sentNote(mail: MailConfig, s: Sending): string {
  const relay = relayLabel(mail);
  const what = s.sentCurrent
    ? `report mailed to ${mail.to.join(", ")} via ${relay}${s.sentEarlier ? ` after ${plural(s.sentEarlier, "earlier report")} from the spool` : ""}`
    : `${plural(s.sentEarlier, "earlier report")} from the spool mailed to ${mail.to.join(", ")} via ${relay}`;
  const refused = s.rejected.size ? `; the relay refused ${[...s.rejected].join(", ")}` : "";
  return `${what}${refused}`;
}

/** Reports were not all sent: bound the spool, and say in result.error and MAIL_FAILED what waits, what is lost, what was dropped. */
function failureNote(
  mail: MailConfig, opts: NotifyOptions, dir: string, result: NotifyResult,
  f: { failure?: MailError; lost: boolean; spoolError?: string; earlierDropped: number; unsafe: boolean },
): void {
  let spoolError = f.spoolError;
  if (f.failure && !f.unsafe) {
    try {
      result.dropped += boundSpool(dir, mail.spool_max);
    } catch (e) {
      spoolError ??= `the mail spool ${dir} cannot be read (${errorMessage(e)})`;
    }
  }
  if (result.dropped > 0 && !f.unsafe) writeDropped(dir, f.earlierDropped + result.dropped);
  const state = f.unsafe ? { files: [], bytes: 0 } : safeSpoolState(dir);
  result.spooled = state.files.length;
  const parts: string[] = [];
  if (f.failure) parts.push(`report not mailed (${f.failure.kind}): ${f.failure.message}`);
  if (f.lost) parts.push(`this report is lost: ${spoolError}`);
  else if (spoolError) parts.push(spoolError);
  if (f.failure && state.files.length > 0) {
    parts.push(`${plural(state.files.length, "report")} (${formatBytes(state.bytes)}) ${state.files.length === 1 ? "waits" : "wait"} in the mail spool ${dir} for the next run`);
  }
  if (result.dropped > 0) parts.push(`${plural(result.dropped, "oldest report")} dropped (spool_max = ${mail.spool_max})`);
  result.error = parts.join("; ");
  result.errorKind = f.failure?.kind ?? "spool";
  safeRecord(opts, "MAIL_FAILED", result.error);
}

function safeSpoolState(dir: string): SpoolState {
  try {
    return readSpool(dir);
  } catch {
    return { files: [], bytes: 0 };
  }
}

// --- shoot mail --test ---------------------------------------------------------------------

export interface MailTestOptions {
  env: Record<string, string | undefined>;
  hostname: string;
  mailer?: Mailer;
  now?: () => Date;
}

/** Spool directories this configuration uses: `spool_dir`, else one per role present. */
export function spoolDirs(cfg: Config): string[] {
  if (cfg.mail?.spool_dir) return [cfg.mail.spool_dir];
  return [cfg.server?.backup_dir, cfg.client?.dest_dir].filter((d): d is string => d !== undefined).map(defaultSpoolDir);
}

/**
 * Send a test message with the configuration's `[mail]` settings. Returns what to print;
 * throws MAIL_TEST_FAILED naming the step that failed.
 */
export async function mailTest(cfg: Config, opts: MailTestOptions): Promise<string[]> {
  const mail = cfg.mail;
  if (!mail) throw new ConfigError(cfg.file, undefined, "[mail]", "missing: shoot mail --test needs a [mail] section", true);
  const notes: string[] = [];
  const exposed = mail.password_file ? exposedSecret(mail.password_file, "password_file") : undefined;
  if (exposed) notes.push(`warning: ${exposed}`);
  const spools = spoolDirs(cfg).map((d) => ({ dir: d, ...safeSpoolState(d) }));
  for (const s of spools) {
    const unsafe = unsafeSpool(s.dir);
    if (unsafe) notes.push(`warning: ${unsafe}; runs refuse to start until it is fixed`);
  }
  for (const s of spools) if (s.files.length > 0) notes.push(`${plural(s.files.length, "report")} (${formatBytes(s.bytes)}) ${s.files.length === 1 ? "waits" : "wait"} in the mail spool ${s.dir}; the next run sends ${s.files.length === 1 ? "it" : "them"}`);
  if (mail.when === "never") notes.push('note: when = "never": runs mail no reports');
  // the notes matter most when the test fails, so they go with the error too
  const fail = (e: MailError) =>
    new ShootError("MAIL_TEST_FAILED", [`test message not sent: ${e.kind}: ${e.message}`, ...notes].join("\n"), { cause: e });
  let password: string | undefined;
  let security: string;
  try {
    password = smtpPassword(mail, opts.env);
    security = describeSecurity(mail);
  } catch (e) {
    throw e instanceof MailError ? fail(e) : e;
  }
  if (mail.user === undefined && password !== undefined) notes.push("note: a password is set but no user, so none is sent");

  const now = (opts.now ?? (() => new Date()))();
  const text = [
    `This is a test message from shoot on ${opts.hostname}.`,
    "If you can read it, reports from this host reach you.",
    "",
    `Relay:     ${mail.smtp} (${security})`,
    `User:      ${mail.user ?? "none (no login)"}`,
    `From:      ${mail.from}`,
    `To:        ${mail.to.join(", ")}`,
    `Reports:   ${{ always: "mailed after every run", failure: "mailed when a run fails", never: "not mailed" }[mail.when]}`,
    ...spools.map((s) => `Spool:     ${s.dir} (${plural(s.files.length, "report")} waiting)`),
    `Sent:      ${now.toISOString()}`,
    "",
  ].join("\n");
  const mailer = opts.mailer ?? createSmtpMailer(mail, password);
  let rejected: string[];
  try {
    ({ rejected } = await mailer.send({ from: mail.from, to: mail.to, subject: `[shoot] ${opts.hostname} mail test`, text, date: now }));
  } catch (e) {
    throw fail(e instanceof MailError ? e : new MailError("protocol", errorMessage(e), { cause: e }));
  }
  if (rejected.length > 0) {
    throw fail(new MailError("recipient", `the relay refused ${rejected.join(", ")} (the message went to the other recipients)`));
  }
  return [`test message sent to ${mail.to.join(", ")} via ${parseRelay(mail.smtp).label} (${security}): check that it arrived`, ...notes];
}
