/** What a run ended with, as the report, the mailer and the exit code see it. */

/** Who writes a status record, and whose run an outcome is. */
export type Role = "server" | "wrapper" | "client";

/** An archive as a status record names it: the final record of a golden run carries one. */
export interface ArchiveInfo {
  file: string;
  size: number;
  md5: string;
  sha256?: string;
}

export interface Warning {
  code: number;
  msg: string;
}

export interface SourceOutcome {
  name: string;
  code: number;
  message: string;
  archive?: ArchiveInfo;
  /** Bytes that crossed the wire for this pull (rsync --stats), when known. */
  wireBytes?: number;
  warnings?: Warning[];
}

export interface RunOutcome {
  role: Role;
  host: string;
  /** The name this host's backups go by ([server] name), when the report should say it rather than the host name. */
  name?: string;
  run: string;
  /** The final status code: golden (4, 9, 30) or a failure. */
  code: number;
  message: string;
  started: Date;
  ended: Date;
  archive?: ArchiveInfo;
  warnings: Warning[];
  /** What the run was doing last (for a run that died: where it died). */
  lastStep?: string;
  /** Client runs: one entry per source. */
  sources?: SourceOutcome[];
  /** The status file this run wrote, for the tail in the report. */
  statusFile?: string;
}
