/**
 * THE table of status and exit codes. Everything else follows it: `shoot codes`, the
 * tables of docs/troubleshooting.md (checked by a test), the exit code of every subcommand.
 *
 * - golden:  a final code meaning "this run ended clean" (only 4, 9 and 30; docs/status-protocol.md).
 * - failure: a final code meaning the run did not end clean; it is also the exit code.
 * - info / warning: records that never end a run by themselves.
 *
 * Every code stays below 126 so that it survives as a process exit status.
 */
export type CodeKind = "golden" | "failure" | "info" | "warning";
export type CodeRole = "any" | "server" | "wrapper" | "client";

export interface CodeInfo {
  code: number;
  name: string;
  kind: CodeKind;
  role: CodeRole;
  meaning: string;
}

const table = [
  // exit codes without a status record
  { code: 0, name: "OK", kind: "info", role: "any", meaning: "Exit code of a run that ended with a golden code (4, 9 or 30)." },
  { code: 1, name: "INTERNAL_ERROR", kind: "failure", role: "any", meaning: "An unexpected internal error; the message says where. Please report it." },
  { code: 2, name: "USAGE", kind: "failure", role: "any", meaning: "The command line is wrong: unknown subcommand or flag, missing argument." },
  // golden
  { code: 4, name: "NEW_ARCHIVE", kind: "golden", role: "server", meaning: "A new backup archive was made (regular run)." },
  { code: 9, name: "UNCHANGED", kind: "golden", role: "server", meaning: "Nothing changed since the last archive; the previous archive is still current." },
  { code: 30, name: "FIRST_ARCHIVE", kind: "golden", role: "server", meaning: "The first backup was made (no earlier archive and no status file)." },
  // failures shared by every role
  { code: 10, name: "CONFIG_MISSING", kind: "failure", role: "any", meaning: "The configuration file does not exist or cannot be read, or lacks the section this role needs." },
  { code: 11, name: "CONFIG_INVALID", kind: "failure", role: "any", meaning: "The configuration file is not valid: syntax, unknown key, wrong type or missing required key." },
  { code: 12, name: "ALREADY_RUNNING", kind: "failure", role: "any", meaning: "Another run holds the lock of this directory; this run did nothing." },
  { code: 13, name: "PREVIOUS_UNCLEAN", kind: "failure", role: "any", meaning: "The previous run did not end clean and what it left could not be cleaned up." },
  { code: 14, name: "TOOL_MISSING", kind: "failure", role: "any", meaning: "A program shoot needs (rsync, ssh) is not installed." },
  { code: 15, name: "MAIL_TEST_FAILED", kind: "failure", role: "any", meaning: "`shoot mail --test` could not send the test message; the message says which step failed (DNS, connect, TLS, auth, recipient refused, time-out)." },
  { code: 16, name: "UNSAFE_PERMISSIONS", kind: "failure", role: "any", meaning: "backup_dir, dest_dir, a source's directory in it, the mail spool or a directory above one of them can be written by other users or belongs to another user (or password_file, for `shoot check-config`, can be read by them); nothing was done there. The message gives the chmod or chown that fixes it." },
  // server
  { code: 20, name: "SOURCE_MISSING", kind: "failure", role: "server", meaning: "A configured source does not exist." },
  { code: 21, name: "SOURCE_UNREADABLE", kind: "failure", role: "server", meaning: "A configured source cannot be read (permissions)." },
  { code: 22, name: "BACKUP_DIR_UNUSABLE", kind: "failure", role: "server", meaning: "The backup directory does not exist, is not a directory or is not writable." },
  { code: 23, name: "NO_SPACE", kind: "failure", role: "server", meaning: "Not enough free space in the backup directory for the archive plus the reserve; nothing was deleted to make room." },
  { code: 24, name: "ARCHIVE_FAILED", kind: "failure", role: "server", meaning: "Writing the archive failed; no partial archive was kept." },
  { code: 25, name: "CHECKSUM_FAILED", kind: "failure", role: "server", meaning: "Writing or checking the archive's checksum file failed." },
  { code: 26, name: "ROTATION_FAILED", kind: "failure", role: "server", meaning: "Removing archives that no keep rule keeps failed; the new archive is complete." },
  { code: 27, name: "SCAN_FAILED", kind: "failure", role: "server", meaning: "Walking the sources or reading the previous file list failed." },
  { code: 28, name: "ARCHIVE_UNPROVEN", kind: "failure", role: "server", meaning: "The archive just written did not prove restorable (a piece did not decompress to what went in, its tar stream did not hold what was read, or the file read back differs); it was removed and the previous archive stays the newest." },
  // server: database dumps
  { code: 105, name: "DUMP_FAILED", kind: "failure", role: "server", meaning: "A database dump command failed (non-zero exit status or killed); no archive was made and the previous one stays the newest." },
  { code: 106, name: "DUMP_TIMEOUT", kind: "failure", role: "server", meaning: "A database dump ran past its `timeout` and was stopped; no archive was made." },
  { code: 107, name: "DUMP_MISSING", kind: "failure", role: "server", meaning: "A database dump could not start: its program is not installed, or the SQLite file does not exist; no archive was made." },
  { code: 108, name: "DUMP_NAME_TAKEN", kind: "failure", role: "server", meaning: "A dump's entry name (dumps/NAME.EXT) is also a path the sources hold; no archive was made." },
  // wrapper
  { code: 31, name: "SERVER_CRASHED", kind: "failure", role: "wrapper", meaning: "The server process ended without a final record (crash or unexpected exit)." },
  { code: 32, name: "SERVER_KILLED", kind: "failure", role: "wrapper", meaning: "The server process was killed by a signal it did not handle (for example SIGKILL or the OOM killer)." },
  { code: 33, name: "TIMEOUT", kind: "failure", role: "wrapper", meaning: "The server ran past `max_runtime` and was stopped." },
  { code: 34, name: "INTERRUPTED", kind: "failure", role: "any", meaning: "The run was interrupted by SIGTERM or SIGINT (shutdown, Ctrl-C)." },
  { code: 35, name: "SERVER_START_FAILED", kind: "failure", role: "wrapper", meaning: "The server process could not be started." },
  { code: 36, name: "BEFORE_HOOK_FAILED", kind: "failure", role: "wrapper", meaning: "The `before` command failed (exit status, signal, time-out, not installed); no archive was made. The report holds its output." },
  { code: 37, name: "BEFORE_HOOK_IGNORED", kind: "warning", role: "wrapper", meaning: "The `before` command failed and the run went on, as `before_failure = \"continue\"` asks." },
  { code: 38, name: "AFTER_HOOK_FAILED", kind: "warning", role: "wrapper", meaning: "The `after` command failed; the run's code stands. The report holds its output." },
  // client
  { code: 40, name: "UNREACHABLE", kind: "failure", role: "client", meaning: "The server could not be reached (connection refused, time-out, name not found)." },
  { code: 41, name: "HOST_KEY_FAILED", kind: "failure", role: "client", meaning: "ssh refused the server's host key (unknown or changed)." },
  { code: 42, name: "STATUS_PULL_FAILED", kind: "failure", role: "client", meaning: "server.status could not be pulled (missing, permission denied, transfer error)." },
  { code: 43, name: "STATUS_INVALID", kind: "failure", role: "client", meaning: "server.status is not usable: no valid records, no final record, or a field that fails validation." },
  { code: 44, name: "STATUS_STALE", kind: "failure", role: "client", meaning: "server.status is older than `max_age`: the server has not run." },
  { code: 45, name: "SERVER_FAILED", kind: "failure", role: "client", meaning: "The server's last run did not end with a golden code; the report names its code." },
  { code: 46, name: "SERVER_BUSY", kind: "failure", role: "client", meaning: "The server is in the middle of a run; try again later." },
  { code: 47, name: "UNSAFE_NAME", kind: "failure", role: "client", meaning: "server.status names an archive that is not a plain file name of the expected pattern; nothing was pulled." },
  { code: 48, name: "CLIENT_NO_SPACE", kind: "failure", role: "client", meaning: "Not enough free space in the destination directory for the archive plus the reserve." },
  { code: 49, name: "PULL_FAILED", kind: "failure", role: "client", meaning: "Pulling the archive or its checksum file failed; a partial transfer is kept for resuming, never as a copy." },
  { code: 50, name: "CHECKSUM_MISMATCH", kind: "failure", role: "client", meaning: "The pulled archive does not match its checksum; the bad copy was not kept." },
  { code: 51, name: "CLIENT_ROTATION_FAILED", kind: "failure", role: "client", meaning: "Removing copies that no keep rule keeps failed; the new copy is verified and in place." },
  { code: 52, name: "DEST_UNUSABLE", kind: "failure", role: "client", meaning: "The destination directory cannot be created or written." },
  { code: 53, name: "SOURCE_UNKNOWN", kind: "failure", role: "client", meaning: "A source named on the command line is not in the configuration." },
  { code: 54, name: "COPY_UNPROVEN", kind: "failure", role: "client", meaning: "The pulled archive matches its checksum but did not prove restorable (verify = \"deep\"): its tar stream does not read to its end or differs from the server's file list; the copy was not kept." },
  { code: 56, name: "FUTURE_NAME", kind: "failure", role: "client", meaning: "server.status names an archive dated later than its own record, or than this host's clock, plus 5 minutes: nothing was pulled (a name never decides which copy is newest, but one from the future is a lie or a wrong clock)." },
  { code: 58, name: "DEADLINE", kind: "failure", role: "client", meaning: "The client run reached `[client] max_runtime`: this source was stopped while it was being pulled, or never started. Copies verified before are kept; a stopped transfer resumes in the next run." },
  { code: 120, name: "THROTTLED", kind: "failure", role: "client", meaning: "The server closed the connection during the ssh key exchange on every try: sshd's MaxStartups refusing connections beyond its limit (lower `concurrency` or raise MaxStartups), a bastion or NAT limit, fail2ban or tcp wrappers." },
  // day-two commands: verify, restore
  { code: 90, name: "VERIFY_FAILED", kind: "failure", role: "any", meaning: "An archive does not match its checksum (it changed since the checksum was made), or (verify --deep, restore) differs from the file list the server recorded; restore wrote nothing." },
  { code: 91, name: "ARCHIVE_NOT_FOUND", kind: "failure", role: "any", meaning: "The archive named on the command line is not held here and is not a readable file, or a path asked for is not in it." },
  { code: 92, name: "RESTORE_UNSAFE", kind: "failure", role: "any", meaning: "The archive holds entries that would land or point outside the target directory (absolute or `..` paths, links out, writes through links, hard links to links or directories); they were not restored, the rest was." },
  { code: 93, name: "RESTORE_EXISTS", kind: "failure", role: "any", meaning: "Files to restore already exist in the target directory; nothing was restored (use --force to overwrite them)." },
  { code: 94, name: "RESTORE_FAILED", kind: "failure", role: "any", meaning: "Restoring failed part way (a file could not be written); the message names it." },
  { code: 95, name: "ARCHIVE_DAMAGED", kind: "failure", role: "any", meaning: "The archive cannot be read whole (truncated, a compressed stream that does not decode, a tar header that is not valid); the message names the byte where it went wrong (one that also fails its checksum is VERIFY_FAILED). restore wrote nothing, list printed nothing." },
  { code: 96, name: "RESTORE_CONFLICT", kind: "failure", role: "any", meaning: "The archive gives one name two kinds (a directory and a link, a file and a directory, …): nothing was made at or below that name; the rest was restored." },
  { code: 97, name: "ARCHIVE_UNSUPPORTED", kind: "failure", role: "any", meaning: "The archive holds what shoot does not restore (devices, FIFOs, unknown entry types, hard links to nothing, names that are not UTF-8 or longer than the system takes, an extended header over 1 MiB); those were left out and named, the rest was restored." },
  { code: 98, name: "RESTORE_NO_SPACE", kind: "failure", role: "any", meaning: "What the archive would write does not fit the target's free space or inodes (refused before writing anything), or the target's file system filled up while restoring (stopped there)." },
  // incremental archives (docs/incremental.md)
  { code: 100, name: "CHAIN_BROKEN", kind: "warning", role: "server", meaning: "An archive a restore point needs (the last full one or a link of its chain) is missing, damaged or does not match its file list: the run made a new archive instead of answering unchanged, a full one when the chain it would extend was the broken one." },
  { code: 101, name: "CHAIN_INCOMPLETE", kind: "failure", role: "any", meaning: "A restore point needs an earlier archive of its chain that is not held here, or that does not verify, or whose file list is missing; nothing was restored." },
  // offsite copies in S3-compatible object storage: each store's outcome, apart from the pull's
  { code: 110, name: "STORE_UNREACHABLE", kind: "failure", role: "client", meaning: "An offsite store could not be reached (connection refused, time-out, name not found); the pull and its copy are unchanged, the next run sends what is missing." },
  { code: 111, name: "STORE_CREDENTIALS", kind: "failure", role: "client", meaning: "An offsite store refused the credentials (wrong key or secret, no permission), or they could not be read." },
  { code: 112, name: "STORE_BUCKET_MISSING", kind: "failure", role: "client", meaning: "An offsite store's bucket does not exist." },
  { code: 113, name: "STORE_CHECKSUM_MISMATCH", kind: "failure", role: "client", meaning: "An object in an offsite store does not match the checksum the server recorded (after upload, or when verified); an upload that did not match was never completed." },
  { code: 114, name: "STORE_LOCKED", kind: "failure", role: "client", meaning: "A delete in an offsite store was refused by the object's lock (Object Lock retention not yet over)." },
  { code: 115, name: "STORE_FAILED", kind: "failure", role: "client", meaning: "An offsite store answered a request with an error of another kind; the message names it." },
  { code: 116, name: "STORE_UNKNOWN", kind: "failure", role: "client", meaning: "A store named on the command line is not an [[offsite]] store of the configuration, or none is configured." },
  { code: 117, name: "STORE_OBJECT_MISSING", kind: "failure", role: "client", meaning: "The copy asked for is not in the offsite store." },
  // info records (never final)
  { code: 60, name: "RUN_START", kind: "info", role: "any", meaning: "First record of a run: format version, host, role and run id." },
  { code: 61, name: "STEP", kind: "info", role: "any", meaning: "A step of the run began; the message names it." },
  { code: 62, name: "WRAPPER_START", kind: "info", role: "wrapper", meaning: "The wrapper started and holds the lock." },
  { code: 63, name: "SERVER_STARTED", kind: "info", role: "wrapper", meaning: "The wrapper started the server process; the record carries its pid." },
  { code: 64, name: "RECOVERED", kind: "info", role: "any", meaning: "The previous run did not end clean; what it left was removed and this run goes on." },
  { code: 65, name: "STALE_LOCK", kind: "info", role: "any", meaning: "A lock left by a process that no longer runs was taken over." },
  { code: 66, name: "SCANNED", kind: "info", role: "server", meaning: "The sources were walked; the record carries counts and what changed." },
  { code: 67, name: "ARCHIVE_WRITTEN", kind: "info", role: "server", meaning: "The archive and its checksum file are complete and in place." },
  { code: 68, name: "ROTATED", kind: "info", role: "any", meaning: "Archives or copies that no keep rule keeps were removed; the record names each one, when it was made, and the rules." },
  { code: 69, name: "SERVER_EXITED", kind: "info", role: "wrapper", meaning: "The server process ended; the record carries its exit status." },
  { code: 70, name: "PULLED", kind: "info", role: "client", meaning: "An archive was pulled and verified; the record carries its name, size and checksum." },
  { code: 71, name: "MAIL_SENT", kind: "info", role: "any", meaning: "The report was mailed (with any spooled reports before it)." },
  { code: 72, name: "SOURCE_DONE", kind: "info", role: "client", meaning: "One source of a client run ended; the record carries its outcome code." },
  { code: 59, name: "RETRY", kind: "info", role: "client", meaning: "A source failed in a way that passes (the connection closed during the key exchange, reset, or timed out before any data) and is tried again after a pause; the record says which try failed and why." },
  { code: 73, name: "PASSWORD_EXPOSED", kind: "warning", role: "any", meaning: "password_file can be read or written by other users, or belongs to another user; the report was still mailed. The message gives the chmod or chown that fixes it." },
  { code: 75, name: "HOOK_DONE", kind: "info", role: "wrapper", meaning: "A `before` or `after` command ended; the record carries how, and the last lines of its output." },
  { code: 76, name: "DUMPED", kind: "info", role: "server", meaning: "A database dump ended clean; the record carries its size and SHA-256, and whether it differs from the last archive's." },
  { code: 77, name: "OFFSITE_SENT", kind: "info", role: "client", meaning: "A copy is in an offsite store, checked against the checksum the server recorded; the record names the store, its code and the object." },
  // warnings (never final)
  { code: 78, name: "OFFSITE_FAILED", kind: "warning", role: "client", meaning: "Sending a copy to an offsite store failed; the record carries the store's code (110-117). The pull is unchanged." },
  { code: 79, name: "MOUNT_SKIPPED", kind: "warning", role: "server", meaning: "A directory where another file system is mounted was archived empty, not walked into: a pseudo file system (/proc, /sys, …) always, any other with one_file_system." },
  { code: 80, name: "FILE_VANISHED", kind: "warning", role: "server", meaning: "A file disappeared between the scan and the archive; the rest of the backup was made." },
  { code: 81, name: "FILE_UNREADABLE", kind: "warning", role: "server", meaning: "A file could not be read; it is not in the archive, the rest is." },
  { code: 82, name: "SPECIAL_SKIPPED", kind: "warning", role: "server", meaning: "A socket, FIFO or device file was skipped (tar archives hold data files, links and directories)." },
  { code: 83, name: "FILE_CHANGED", kind: "warning", role: "server", meaning: "A file changed size while it was read; the archive holds what was read, padded or cut to the size in its header." },
  { code: 84, name: "MAIL_FAILED", kind: "warning", role: "any", meaning: "The report could not be mailed; it is kept in the spool and sent with a later report." },
  { code: 85, name: "CLEANUP_FAILED", kind: "warning", role: "any", meaning: "A temporary file could not be removed; the next run tries again." },
  { code: 86, name: "UNCHANGED_TOO_LONG", kind: "warning", role: "any", meaning: "The server has reported 'nothing changed' for longer than expected." },
  { code: 87, name: "STATUS_TORN", kind: "warning", role: "any", meaning: "A status line could not be read (a torn last line after a crash); it was skipped." },
  { code: 88, name: "SPACE_LOW", kind: "warning", role: "any", meaning: "Free space will run out soon at the current rate of growth." },
  { code: 89, name: "SERVER_OUTPUT", kind: "info", role: "wrapper", meaning: "A line the server process wrote to its standard error." },
] as const satisfies readonly CodeInfo[];

export type CodeName = (typeof table)[number]["name"];

export const CODES: readonly CodeInfo[] = table;

const byName = new Map<string, CodeInfo>(CODES.map((c) => [c.name, c]));
const byNumber = new Map<number, CodeInfo>(CODES.map((c) => [c.code, c]));

/** The number of a code, by its symbolic name (typed: a misspelt name does not compile). */
export function code(name: CodeName): number {
  return byName.get(name)!.code;
}

export function codeInfo(n: number): CodeInfo | undefined {
  return byNumber.get(n);
}

export function codeName(n: number): string {
  return byNumber.get(n)?.name ?? `UNKNOWN_${n}`;
}

export const GOLDEN: ReadonlySet<number> = new Set(CODES.filter((c) => c.kind === "golden").map((c) => c.code));

export function isGolden(n: number): boolean {
  return GOLDEN.has(n);
}

/** Final codes end a run: golden or failure. Info and warning records never do. */
export function isFinal(n: number): boolean {
  const k = byNumber.get(n)?.kind;
  return k === "golden" || k === "failure";
}

/** The exit code for a final status code: 0 for golden, the code itself otherwise. */
export function exitCodeFor(n: number): number {
  if (isGolden(n)) return 0;
  return isFinal(n) ? n : 1;
}

/**
 * Severity of a final code when several sources end differently: the exit code of a
 * client run is the most severe one. Internal errors first, then anything that means copies
 * may be at risk, then transient trouble.
 */
const SEVERITY_ORDER: readonly CodeName[] = [
  "INTERNAL_ERROR", "CHECKSUM_MISMATCH", "COPY_UNPROVEN", "UNSAFE_NAME", "FUTURE_NAME", "STATUS_INVALID", "SERVER_FAILED", "STATUS_STALE",
  "HOST_KEY_FAILED", "UNSAFE_PERMISSIONS", "CONFIG_INVALID", "CONFIG_MISSING", "DEST_UNUSABLE", "CLIENT_NO_SPACE",
  "PULL_FAILED", "STATUS_PULL_FAILED", "UNREACHABLE", "THROTTLED", "DEADLINE", "TOOL_MISSING", "SERVER_BUSY",
  "CLIENT_ROTATION_FAILED", "ALREADY_RUNNING", "SOURCE_UNKNOWN",
  "STORE_CHECKSUM_MISMATCH", "STORE_CREDENTIALS", "STORE_BUCKET_MISSING", "STORE_UNREACHABLE", "STORE_FAILED", "STORE_LOCKED",
  "STORE_OBJECT_MISSING", "STORE_UNKNOWN",
];

export function severity(n: number): number {
  if (isGolden(n)) return 0;
  const i = SEVERITY_ORDER.indexOf(codeName(n) as CodeName);
  return i < 0 ? 1 : 1000 - i;
}

export function mostSevere(codes: readonly number[]): number {
  let worst = code("NEW_ARCHIVE");
  for (const c of codes) if (severity(c) > severity(worst)) worst = c;
  return worst;
}
