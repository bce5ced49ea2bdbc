/**
 * The status-file protocol between the roles: one JSON record per line, each written whole
 * with one write and flushed to disk. A crash leaves at most one torn last line, which the
 * reader skips (and counts). A run starts the file afresh; the previous file is kept as
 * `<file>.1`. Readers on the client treat every field as untrusted.
 */
import fs from "node:fs";
import { code, codeName, isFinal, isGolden, type CodeName } from "../common/codes.ts";
import type { Clock } from "../common/deps.ts";
import type { ArchiveInfo, Role } from "../common/outcome.ts";

export const STATUS_FORMAT = "shoot-status";
export const STATUS_VERSION = 1;
export const SERVER_STATUS = "server.status";
export const CLIENT_STATUS = "client.status";

export type { ArchiveInfo, Role };

export interface StatusRecord {
  v: number;
  t: string;
  code: number;
  name: string;
  msg: string;
  role: Role;
  run: string;
  pid?: number;
  host?: string;
  format?: string;
  step?: string;
  archive?: ArchiveInfo;
  data?: Record<string, unknown>;
}

export interface RecordExtra {
  step?: string;
  archive?: ArchiveInfo;
  data?: Record<string, unknown>;
  host?: string;
  format?: string;
}

/** Longest message kept in one record: a status line must stay small and whole. */
const MAX_MSG = 2000;

export function newRunId(now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${stamp}-${process.pid}-${Math.floor(Math.random() * 0xffff).toString(16).padStart(4, "0")}`;
}

export class StatusWriter {
  private fd: number | undefined;
  constructor(
    readonly file: string,
    readonly role: Role,
    readonly run: string,
    private readonly clock: Clock,
  ) {}

  /** Start the file afresh, keeping the previous one as `<file>.1`. */
  startFresh(): void {
    try {
      fs.renameSync(this.file, `${this.file}.1`);
    } catch (e) {
      if ((e as { code?: string }).code !== "ENOENT") throw e;
    }
    this.open();
  }

  /** Append to the existing file (a server run started by the wrapper). */
  open(): void {
    if (this.fd === undefined) this.fd = fs.openSync(this.file, "a", 0o600);
  }

  write(name: CodeName, msg: string, extra: RecordExtra = {}): StatusRecord {
    const rec: StatusRecord = {
      v: STATUS_VERSION,
      t: this.clock.now().toISOString(),
      code: code(name),
      name,
      msg: msg.length > MAX_MSG ? `${msg.slice(0, MAX_MSG)}…` : msg,
      role: this.role,
      run: this.run,
      pid: process.pid,
      ...extra,
    };
    this.open();
    const line = Buffer.from(`${JSON.stringify(rec)}\n`);
    // One write per record: an O_APPEND write lands whole or, after a crash, as a torn tail.
    fs.writeSync(this.fd!, line);
    fs.fsyncSync(this.fd!);
    return rec;
  }

  close(): void {
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // already closed: nothing to flush
      }
      this.fd = undefined;
    }
  }
}

export interface ParsedStatus {
  records: StatusRecord[];
  /** Lines that could not be read as records (a torn last line, garbage). */
  skipped: number;
}

const SAFE_ROLE = new Set(["server", "wrapper", "client"]);

function asRecord(x: unknown): StatusRecord | undefined {
  if (typeof x !== "object" || x === null || Array.isArray(x)) return undefined;
  const r = x as Record<string, unknown>;
  if (!Number.isInteger(r.code) || (r.code as number) < 0 || (r.code as number) > 255) return undefined;
  if (typeof r.t !== "string" || Number.isNaN(Date.parse(r.t))) return undefined;
  if (typeof r.name !== "string" || typeof r.msg !== "string") return undefined;
  if (typeof r.role !== "string" || !SAFE_ROLE.has(r.role)) return undefined;
  if (typeof r.run !== "string") return undefined;
  if (r.archive !== undefined) {
    const a = r.archive as Record<string, unknown>;
    if (typeof a !== "object" || a === null || typeof a.file !== "string" || !Number.isSafeInteger(a.size) || typeof a.md5 !== "string") return undefined;
  }
  return r as unknown as StatusRecord;
}

/** Parse status text; lines that are not whole, valid records are skipped and counted. */
export function parseStatus(text: string): ParsedStatus {
  const records: StatusRecord[] = [];
  let skipped = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let rec: StatusRecord | undefined;
    try {
      rec = asRecord(JSON.parse(line));
    } catch {
      rec = undefined;
    }
    if (rec) records.push(rec);
    else skipped++;
  }
  return { records, skipped };
}

export function readStatusFile(file: string): ParsedStatus | undefined {
  try {
    return parseStatus(fs.readFileSync(file, "utf8"));
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return undefined;
    throw e;
  }
}

/** The final record of the last run in the file, if the run ended with one. */
export function finalRecord(records: readonly StatusRecord[]): StatusRecord | undefined {
  const last = records.at(-1);
  return last && isFinal(last.code) ? last : undefined;
}

/** The newest record that is final (a run may have appended info records after it). */
export function lastFinal(records: readonly StatusRecord[]): StatusRecord | undefined {
  for (let i = records.length - 1; i >= 0; i--) if (isFinal(records[i]!.code)) return records[i];
  return undefined;
}

/** The last record that names a step: where a run that died was when it died. */
export function lastStep(records: readonly StatusRecord[]): StatusRecord | undefined {
  for (let i = records.length - 1; i >= 0; i--) if (records[i]!.step) return records[i];
  return records.at(-1);
}

export function describeRecord(r: StatusRecord): string {
  return `${r.t} ${r.role} ${r.code} ${codeName(r.code)}: ${r.msg}`;
}

export { isGolden, isFinal };
