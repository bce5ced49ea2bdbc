/**
 * The report of a run as a person reads it: a subject to triage from the inbox and a
 * plain-text body. One function for wrapper, server and client. Pure: the caller reads the
 * status file and hands its records in.
 */
import { code, codeInfo, codeName, isGolden } from "../common/codes.ts";
import type { HookOutcome, RunOutcome, SourceOutcome, Warning } from "../common/outcome.ts";
import type { ArchiveInfo, StatusRecord } from "../state/status.ts";
import { escapeLines, escapeText } from "../common/escape.ts";
import { formatBytes, formatDuration } from "../common/units.ts";

export interface StatusTail {
  file: string;
  records: readonly StatusRecord[];
  /** Lines of the file that were not whole records. */
  skipped: number;
  /** Set when the file could not be read at all. */
  error?: string;
}

export interface ReportOptions {
  tail?: StatusTail;
  /** Status records shown at most (the last ones). */
  tailLines?: number;
  /** Warnings listed at most; the rest are counted. */
  maxWarnings?: number;
  /** Extra lines at the end (e.g. what the mail spool holds). */
  notes?: readonly string[];
}

export interface RenderedReport {
  subject: string;
  text: string;
}

export const TAIL_LINES = 20;
export const MAX_WARNINGS = 20;
const MAX_SUBJECT_SOURCES = 3;
const MAX_SOURCE_WARNINGS = 5;
const LABEL_WIDTH = 16;

/** One line: newlines become spaces (subjects, table cells). Control characters are escaped with the rest of the text, at the end. */
function oneLine(s: string): string {
  return s.replace(/\r?\n/g, " ").trim();
}

/** Continuation lines indented under the first, so a multi-line message stays in its block. */
function indentLines(s: string, indent: string): string {
  return s.split(/\r?\n/).join(`\n${indent}`);
}

function verdict(code: number): "OK" | "FAILED" {
  return isGolden(code) ? "OK" : "FAILED";
}

function stamp(d: Date): string {
  return Number.isNaN(d.getTime()) ? "unknown" : `${d.toISOString().slice(0, 19).replace("T", " ")}Z`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function reportSubject(o: RunOutcome): string {
  let s = `[shoot] ${oneLine(o.name ?? o.host)} ${o.role} ${verdict(o.code)} ${o.code} ${codeName(o.code)}`;
  const failed = (o.sources ?? []).filter((x) => !isGolden(x.code)).map((x) => oneLine(x.name));
  if (failed.length > 0) {
    const shown = failed.slice(0, MAX_SUBJECT_SOURCES).join(", ");
    const more = failed.length > MAX_SUBJECT_SOURCES ? ` +${failed.length - MAX_SUBJECT_SOURCES} more` : "";
    s += ` (${shown}${more})`;
  }
  const stores = (o.sources ?? []).flatMap((x) => (x.offsite ?? []).filter((y) => y.code !== code("OFFSITE_SENT")).map((y) => `${oneLine(y.store)} ${y.code}`));
  if (stores.length > 0) s += ` (offsite FAILED: ${[...new Set(stores)].slice(0, MAX_SUBJECT_SOURCES).join(", ")})`;
  const warnings = o.warnings.length + (o.sources ?? []).reduce((n, x) => n + (x.warnings?.length ?? 0), 0);
  if (warnings > 0) s += `, ${plural(warnings, "warning")}`;
  return escapeText(s);
}

function field(label: string, value: string): string {
  return `${`${label}:`.padEnd(LABEL_WIDTH)}${indentLines(value, " ".repeat(LABEL_WIDTH))}`;
}

function archiveLines(a: ArchiveInfo): string[] {
  const lines = [
    field("Archive", oneLine(a.file)),
    field("  size", `${formatBytes(a.size)} (${a.size} bytes)`),
    field("  md5", oneLine(a.md5)),
  ];
  if (a.sha256) lines.push(field("  sha256", oneLine(a.sha256)));
  return lines;
}

function warningLines(ws: readonly Warning[], max: number, indent: string): string[] {
  const lines = ws.slice(0, max).map((w) => `${indent}${w.code} ${codeName(w.code)}: ${oneLine(w.msg)}`);
  if (ws.length > max) lines.push(`${indent}… and ${ws.length - max} more not listed here (see the status file)`);
  return lines;
}

function sourceLines(sources: readonly SourceOutcome[]): string[] {
  const ok = sources.filter((s) => isGolden(s.code)).length;
  const out = [`Sources (${sources.length}: ${ok} OK, ${sources.length - ok} FAILED):`];
  const w = Math.max(...sources.map((s) => oneLine(s.name).length));
  for (const s of sources) {
    out.push(`  ${oneLine(s.name).padEnd(w)}  ${verdict(s.code).padEnd(6)} ${s.code} ${codeName(s.code)}`);
    const pad = `  ${" ".repeat(w)}  `;
    if (s.message) out.push(`${pad}${indentLines(s.message, pad)}`);
    if (s.archive) {
      out.push(`${pad}${oneLine(s.archive.file)}, ${formatBytes(s.archive.size)} (${s.archive.size} bytes), md5 ${oneLine(s.archive.md5)}`);
    }
    if (s.wireBytes !== undefined) out.push(`${pad}${formatBytes(s.wireBytes)} crossed the wire`);
    for (const o of s.offsite ?? []) {
      const ok = o.code === code("OFFSITE_SENT");
      out.push(`${pad}offsite ${oneLine(o.store)}  ${ok ? "OK    " : "FAILED"} ${o.code} ${codeName(o.code)}: ${oneLine(o.message)}`);
    }
    if (s.warnings?.length) out.push(...warningLines(s.warnings, MAX_SOURCE_WARNINGS, pad));
  }
  return out;
}

/** Each before/after command: how it ended, then its output, indented. */
function hookLines(hooks: readonly HookOutcome[]): string[] {
  const out = ["Hooks:"];
  for (const h of hooks) {
    out.push(`  ${h.when}: ${oneLine(JSON.stringify(h.argv))} ${h.ok ? "OK" : "FAILED"}, ${oneLine(h.how)}`);
    for (const l of h.output) out.push(`    | ${oneLine(l)}`);
  }
  return out;
}

function tailLines(tail: StatusTail, max: number, day: string): string[] {
  if (tail.error !== undefined) return [`Status file ${tail.file}: could not be read: ${oneLine(tail.error)}`];
  const shown = tail.records.slice(-max);
  const head = shown.length < tail.records.length
    ? `Status file ${tail.file} (last ${shown.length} of ${tail.records.length} records):`
    : `Status file ${tail.file} (${plural(tail.records.length, "record")}):`;
  const out = [head];
  const nameWidth = Math.max(0, ...shown.map((r) => codeName(r.code).length));
  for (const r of shown) {
    const t = Date.parse(r.t);
    const iso = Number.isNaN(t) ? oneLine(r.t) : new Date(t).toISOString();
    // the time alone when the record is from the day the run ended: shorter lines to scan
    const when = iso.startsWith(day) ? iso.slice(11, 19) : `${iso.slice(0, 19).replace("T", " ")}`;
    const name = codeName(r.code).padEnd(nameWidth);
    out.push(`  ${when}  ${r.role.padEnd(7)} ${String(r.code).padStart(3)} ${name}  ${oneLine(r.msg)}`);
  }
  if (tail.skipped > 0) out.push(`  (${plural(tail.skipped, "line")} could not be read as records and were skipped)`);
  return out;
}

/** "on web1", or "for web1 on vm" when the backups go by another name than the host's. */
function whose(o: RunOutcome): string {
  return o.name && o.name !== o.host ? `for ${oneLine(o.name)} on ${oneLine(o.host)}` : `on ${oneLine(o.host)}`;
}

export function renderReport(o: RunOutcome, opts: ReportOptions = {}): RenderedReport {
  const info = codeInfo(o.code);
  const lines: string[] = [
    `shoot ${o.role} run ${whose(o)}: ${verdict(o.code)}, ${o.code} ${codeName(o.code)}`,
    info ? info.meaning : "This code is not in shoot's code table.",
    "",
  ];
  if (o.message) lines.push(field("What happened", o.message));
  if (o.lastStep) lines.push(field("Last step", o.lastStep));
  lines.push(field("Started", stamp(o.started)), field("Ended", stamp(o.ended)));
  const ms = o.ended.getTime() - o.started.getTime();
  if (Number.isFinite(ms) && ms >= 0) lines.push(field("Duration", formatDuration(ms)));
  lines.push(field("Run", o.run));
  if (o.archive) lines.push("", ...archiveLines(o.archive));
  if (o.sources?.length) lines.push("", ...sourceLines(o.sources));
  if (o.hooks?.length) lines.push("", ...hookLines(o.hooks));
  if (o.warnings.length > 0) {
    const max = opts.maxWarnings ?? MAX_WARNINGS;
    const head = o.warnings.length > max ? `Warnings (${o.warnings.length}, the first ${max} listed):` : `Warnings (${o.warnings.length}):`;
    lines.push("", head, ...warningLines(o.warnings, max, "  "));
  }
  if (opts.tail) lines.push("", ...tailLines(opts.tail, opts.tailLines ?? TAIL_LINES, o.ended.toISOString().slice(0, 10)));
  if (opts.notes?.length) lines.push("", ...opts.notes.map(oneLine));
  // text from a status file or a server may hold control characters or bidi overrides that
  // would garble or disguise a line in a mail reader: the whole report is escaped, line by line
  return { subject: reportSubject(o), text: `${escapeLines(lines.join("\n"))}\n` };
}
