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

/** One offsite store's outcome for a source's copy: OFFSITE_SENT (77), or a store's failure code (110-117). */
export interface StoreOutcome {
  store: string;
  code: number;
  message: string;
  /** The object's key, when one was named. */
  key?: string;
}

/** A verified copy in place on the backup host (dir/<archive>, its .md5 beside it). */
export interface VerifiedCopyRef {
  source: string;
  dir: string;
  archive: ArchiveInfo;
}

/** What runs after a copy is verified and in place (offsite copies); it never changes the pull's outcome. */
export type AfterVerified = (
  copy: VerifiedCopyRef,
  record: (name: "OFFSITE_SENT" | "OFFSITE_FAILED", msg: string, data: Record<string, unknown>) => void,
) => Promise<StoreOutcome[]>;

export interface SourceOutcome {
  name: string;
  code: number;
  message: string;
  archive?: ArchiveInfo;
  /** Bytes that crossed the wire for this pull (rsync --stats), when known. */
  wireBytes?: number;
  warnings?: Warning[];
  /** Each offsite store's outcome for this source's current copy, beside the pull's code. */
  offsite?: StoreOutcome[];
}

/** A `before` or `after` command the wrapper ran. */
export interface HookOutcome {
  when: "before" | "after";
  argv: string[];
  ok: boolean;
  /** How it ended, in words ("ended with exit status 1 after 2.0s"). */
  how: string;
  /** Its last lines of output (standard output and error as they came). */
  output: string[];
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
  /** Wrapper runs: the before and after commands, with their output. */
  hooks?: HookOutcome[];
  /** The status file this run wrote, for the tail in the report. */
  statusFile?: string;
}
