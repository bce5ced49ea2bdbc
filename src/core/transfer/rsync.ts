/**
 * Command lines for rsync and ssh, built by pure functions: configuration and validated names
 * in, argv out. Nothing read from a server ever becomes an option here: remote paths are
 * joined from the configured directory and names that passed isArchiveName, and every list of
 * paths follows `--`.
 */
import path from "node:path";
import type { ClientConfig, SourceConfig } from "../common/config.ts";
import { isLocalRemote, parseRemote, PASSWORD_ENV } from "../common/config.ts";
import type { CodeName } from "../common/codes.ts";
import { ShootError } from "../common/errors.ts";
import { shPath, shWord } from "../common/shell-word.ts";
import { compressionOf } from "../state/naming.ts";
import { SERVER_STATUS } from "../state/status.ts";

/** Sub-directory of the staging directory where rsync keeps an interrupted transfer. */
export const PARTIAL_DIR = ".shoot-partial";
/** ssh keep-alive: a peer silent for ServerAliveInterval × ServerAliveCountMax is given up. */
export const SERVER_ALIVE_INTERVAL_S = 15;
export const SERVER_ALIVE_COUNT_MAX = 4;
/** server.status is small; a bigger one is refused rather than filling the disk. */
export const MAX_STATUS_BYTES = 16 * 1024 * 1024;

/** Whole seconds for ssh and rsync options, at least 1 (0 would mean "no time-out"). */
export function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/**
 * One word of rsync's `-e` command: rsync splits that string at spaces itself and honours
 * single quotes (a doubled quote inside stands for one).
 */
export function rshQuote(word: string): string {
  if (word !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, "''")}'`;
}

/**
 * A file path handed to ssh. ssh expands `%` sequences in IdentityFile and UserKnownHostsFile
 * and quotes are consumed twice on the way (rsync's -e, then ssh's option parser): such paths
 * are refused with a clear message instead of being guessed at.
 */
function sshPath(p: string, key: string): string {
  if (/[%'"\\\0-\x1f\x7f]/.test(p)) {
    throw new ShootError("CONFIG_INVALID", `${key} ${JSON.stringify(p)}: a path handed to ssh may not contain %, quotes, backslashes or control characters`);
  }
  return p;
}

/**
 * Seconds a shared ssh connection stays up after its last transfer. It is started in the
 * background by ssh itself (ControlPersist), so this bounds how long it outlives a client that
 * was killed before it could close it.
 */
export const SHARED_PERSIST_S = 10;

type SshClientOptions = Pick<ClientConfig, "connect_timeout" | "accept_new_host_key" | "known_hosts">;

/**
 * The ssh command (argv) that rsync runs to reach a source; with `controlPath`, it goes through
 * the shared connection at that socket when there is one, and connects on its own when not.
 */
export function sshArgv(client: SshClientOptions, source: Pick<SourceConfig, "port" | "identity">, controlPath?: string): string[] {
  const argv = [
    "ssh",
    "-o", "BatchMode=yes",
    "-o", `ConnectTimeout=${seconds(client.connect_timeout)}`,
    "-o", `ServerAliveInterval=${SERVER_ALIVE_INTERVAL_S}`,
    "-o", `ServerAliveCountMax=${SERVER_ALIVE_COUNT_MAX}`,
    // a changed host key is always refused; a new one only with the documented opt-in
    "-o", `StrictHostKeyChecking=${client.accept_new_host_key ? "accept-new" : "yes"}`,
    "-o", "ForwardAgent=no",
    "-o", "ForwardX11=no",
    "-o", "ClearAllForwardings=yes",
    "-o", "LogLevel=ERROR",
    "-p", String(source.port),
  ];
  if (client.known_hosts) {
    // the value is a list of files separated by spaces for ssh: quote it as one
    argv.push("-o", `UserKnownHostsFile="${sshPath(client.known_hosts, "known_hosts")}"`);
  }
  if (source.identity) argv.push("-i", sshPath(source.identity, "identity"), "-o", "IdentitiesOnly=yes");
  if (controlPath !== undefined) argv.push("-o", "ControlMaster=no", "-o", `ControlPath=${controlPathOf(controlPath)}`);
  return argv;
}

/** ssh expands % in ControlPath and splits its value at white space: only other paths can be one. */
export function usableControlPath(p: string): boolean {
  return p.startsWith("/") && !/[\s%'"\\\0-\x1f\x7f]/.test(p);
}

function controlPathOf(p: string): string {
  if (!usableControlPath(p)) throw new Error(`ControlPath ${JSON.stringify(p)}: not an absolute path without white space, %, quotes or backslashes`);
  return p;
}

/** `[user@]host` of an ssh remote, as ssh takes it on its command line (an IPv6 address without brackets). */
function sshDestination(remote: string): string {
  const r = parseRemote(remote);
  if (!r || isLocalRemote(remote)) throw new Error(`sshDestination: ${JSON.stringify(remote)} is not an ssh remote`);
  return `${r.user ? `${r.user}@` : ""}${r.host}`;
}

/**
 * Start the shared connection: log in (same options, same host key checks), then go to the
 * background holding the connection open at `controlPath`, running no command (-N), so a
 * forced command in authorized_keys only ever sees the transfers. Exits 0 once logged in.
 */
export function sshSharedStartArgv(
  client: SshClientOptions,
  source: Pick<SourceConfig, "port" | "identity" | "remote">,
  controlPath: string,
  logFile?: string,
): string[] {
  return [
    ...sshArgv(client, source),
    "-o", "ControlMaster=yes",
    "-o", `ControlPath=${controlPathOf(controlPath)}`,
    "-o", `ControlPersist=${SHARED_PERSIST_S}`,
    // its messages to a file: standard error would be held open by the background process
    ...(logFile !== undefined ? ["-E", sshPath(logFile, "the shared connection's log")] : []),
    "-N", "-f", "--", sshDestination(source.remote),
  ];
}

/** Ask the shared connection at `controlPath` to close now. */
export function sshSharedExitArgv(client: SshClientOptions, source: Pick<SourceConfig, "port" | "identity" | "remote">, controlPath: string): string[] {
  return [...sshArgv(client, source), "-o", `ControlPath=${controlPathOf(controlPath)}`, "-O", "exit", "--", sshDestination(source.remote)];
}

/** The single string rsync's `-e` takes. */
export function rshString(argv: readonly string[]): string {
  return argv.map(rshQuote).join(" ");
}

/**
 * rsync's spelling of a file on the source: `[user@]host:/dir/name` over ssh, or a plain path.
 * `name` must already be a checked plain file name.
 */
export function remoteFile(remote: string, name: string): string {
  if (name === "" || name.includes("/") || name.startsWith("-") || name === "." || name === "..") {
    throw new Error(`remoteFile: ${JSON.stringify(name)} is not a plain file name`);
  }
  if (isLocalRemote(remote)) return path.posix.join(remote, name);
  const r = parseRemote(remote);
  if (!r) throw new ShootError("CONFIG_INVALID", `remote ${JSON.stringify(remote)} is neither user@host:/path nor an absolute path`);
  const host = r.host.includes(":") ? `[${r.host}]` : r.host;
  return `${r.user ? `${r.user}@` : ""}${host}:${path.posix.join(r.path, name)}`;
}

export interface PullSpec {
  client: Pick<ClientConfig, "timeout" | "connect_timeout" | "accept_new_host_key" | "known_hosts">;
  source: SourceConfig;
  /** Plain file names in the source's remote directory. */
  files: readonly string[];
  /** Local directory the files land in (the staging directory). */
  into: string;
  /** Files larger than this are not transferred at all. */
  maxSize: number;
  /**
   * Resume and delta options: keep an interrupted transfer in PARTIAL_DIR, and let rsync take a
   * similarly named earlier copy from `basisDir` (relative to `into`) as the basis, so only
   * changed blocks travel. rsync only reads the basis; the new file is written beside it.
   */
  resumable?: { basisDir: string };
  /** The shared ssh connection's socket, when one was started (see sshSharedStartArgv). */
  controlPath?: string;
  /** --compress: for text such as file lists, and for a compressed archive's delta (compressDelta). */
  compress?: boolean;
  /** rsync's delta block size (--block-size), see deltaBlockSize; rsync's own choice when absent. */
  blockSize?: number;
}

/** Bytes of checksums the receiver sends for each block of the basis (7-8 with rsync 3.2 on files of 600 MB). */
const CHECKSUM_BYTES_PER_BLOCK = 8;
/** rsync's bounds: it refuses blocks over 128 KiB; below a few KiB the checksums outweigh any saving. */
const MIN_BLOCK = 2048;
const MAX_BLOCK = 128 * 1024;

/**
 * The delta block size for pulling an archive of `size` bytes of which about `changes`
 * separate places changed. Each block of the basis costs its checksum on the wire; each changed
 * place costs, beyond its own bytes, about a block that no longer matches around it. The sum,
 * size/b·c + changes·b, is least at b = √(c·size/changes). rsync's own choice, about √size,
 * suits a file changed in a few places; an archive a day of changes touched in hundreds of
 * places loses most of its bytes to the blocks around them (measured on a 600 MB archive with
 * 260 changed places: 11.6 MB on the wire with rsync's 24 KiB blocks, 7.8 MB with 4 KiB ones).
 * `exact` says the count is of places in the archive itself (the server compared the hashes of
 * its compressed pieces); otherwise it is the scan's count of changed entries, and the block is
 * never larger than rsync's choice, as one changed entry can be a large file changed in many
 * places. Undefined (rsync's choice) when the number of changes is not known or rsync's blocks
 * are small enough.
 */
export function deltaBlockSize(size: number, changes: number | undefined, exact = false): number | undefined {
  if (changes === undefined || !Number.isFinite(changes) || changes < 1 || !(size > 0)) return undefined;
  const best = Math.sqrt((CHECKSUM_BYTES_PER_BLOCK * size) / changes);
  if (Math.sqrt(size) <= MIN_BLOCK || (!exact && best >= Math.sqrt(size))) return undefined;
  return Math.round(Math.min(MAX_BLOCK, Math.max(MIN_BLOCK, best)) / 512) * 512;
}

/**
 * Whether to pull `file` with --compress, given the copies held (`held`, names). Not for its
 * bytes: rsync leaves .gz and .zst files uncompressed on the way (its skip-compress list). But
 * with --compress it sends the blocks that matched the basis as runs of tokens, where without
 * it every matched block costs 4 bytes, a third of what each block costs beside its checksum;
 * a day-2 delta in small blocks over a 600 MB archive saves about 1 MB that way. Only when a
 * held copy of the same compression can be the basis: a first pull matches nothing, and plain
 * tar would be compressed for real, costing both ends CPU time a fast network does not repay.
 */
export function compressDelta(file: string, held: readonly string[]): boolean {
  const c = compressionOf(file);
  return (c === "gzip" || c === "zstd") && held.some((h) => h !== file && compressionOf(h) === c);
}

/** The full rsync argv for one pull. */
export function rsyncPullArgv(spec: PullSpec): string[] {
  if (spec.files.length === 0) throw new Error("rsyncPullArgv: no files");
  const argv = [
    "rsync",
    "--times",
    "--no-human-readable",
    "--stats",
    `--timeout=${seconds(spec.client.timeout)}`,
    `--max-size=${Math.max(1, Math.floor(spec.maxSize))}`,
  ];
  if (spec.resumable) {
    argv.push(`--partial-dir=${PARTIAL_DIR}`, `--copy-dest=${spec.resumable.basisDir}`, "--fuzzy", "--fuzzy");
  }
  if (spec.compress) argv.push("--compress");
  if (spec.blockSize !== undefined) argv.push(`--block-size=${spec.blockSize}`);
  if (spec.source.bwlimit !== undefined && spec.source.bwlimit > 0) {
    // rsync counts in KiB per second and cannot go below 1
    argv.push(`--bwlimit=${Math.max(1, Math.round(spec.source.bwlimit / 1024))}`);
  }
  if (!isLocalRemote(spec.source.remote)) {
    argv.push("-e", rshString(sshArgv(spec.client, spec.source, spec.controlPath)));
  }
  argv.push("--", ...spec.files.map((f) => remoteFile(spec.source.remote, f)), spec.into.endsWith("/") ? spec.into : `${spec.into}/`);
  return argv;
}

/**
 * glibc's allocator settings for the ssh and rsync processes of a transfer (ignored where the C
 * library is not glibc). ssh grows and frees its channel buffers all through a transfer; with
 * glibc's defaults each large one is a fresh mapping and the top of the heap goes back to the
 * system, so the same memory is faulted in again and again. Measured on the bench machine
 * (a virtual machine where a page fault costs ~25 µs), pulling 700 MB: the client's ssh took
 * 65,000-77,000 page faults with the defaults and 4,700 with these, and the transfer 5.1 s
 * against 3.1 s. The cost is that ssh keeps the few MiB its buffers reached until it exits.
 */
export const TRANSFER_MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728";

/**
 * The environment for rsync: without the variables that would change how it talks to the
 * server (secluded arguments would hide the paths from a forced command that checks them),
 * without the SMTP password (PASSWORD_ENV: rsync and ssh have no use for it, and
 * an ssh_config with `SendEnv *` would hand it to the server), in the C locale so that its
 * messages and numbers read the same everywhere, and with TRANSFER_MALLOC_TUNABLES unless the
 * administrator set glibc's tunables already.
 */
export function rsyncEnv(env: Record<string, string | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) {
    if (k === "RSYNC_PROTECT_ARGS" || k === "RSYNC_OLD_ARGS" || k === "RSYNC_RSH" || k === "RSYNC_CONNECT_PROG") continue;
    if (k === PASSWORD_ENV) continue;
    out[k] = v;
  }
  out.LC_ALL = "C";
  if (out.GLIBC_TUNABLES === undefined) out.GLIBC_TUNABLES = TRANSFER_MALLOC_TUNABLES;
  return out;
}

export interface TransferStats {
  /** Bytes sent as new data. */
  literal?: number;
  /** Bytes rebuilt from the basis already on the client (a partial file, an earlier copy). */
  matched?: number;
  /** Bytes the client received over the connection. */
  received?: number;
  sent?: number;
}

/** Numbers from rsync's --stats output (with or without thousands separators). */
export function parseStats(stdout: string): TransferStats {
  const num = (label: string): number | undefined => {
    const m = new RegExp(`^${label}:\\s*([\\d,.']+)`, "m").exec(stdout);
    if (!m) return undefined;
    const n = Number(m[1]!.replace(/[,.']/g, ""));
    return Number.isSafeInteger(n) ? n : undefined;
  };
  return {
    literal: num("Literal data"),
    matched: num("Matched data"),
    received: num("Total bytes received"),
    sent: num("Total bytes sent"),
  };
}

export interface FailureClass {
  code: CodeName;
  why: string;
  /**
   * Set when the failure is transient by nature, saying how (the run may try the source again):
   * the connection closed or reset during the key exchange, reset later, or timed out before
   * any data came. Never set for a refused key, a changed host key or a missing path.
   */
  transient?: string;
}

const UNREACHABLE_RE = /Connection refused|Connection timed out|Operation timed out|No route to host|Network is unreachable|Could not resolve hostname|Name or service not known|Temporary failure in name resolution|banner exchange/i;
const HOST_KEY_RE = /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|host key for .* has changed|No [A-Z0-9-]+ host key is known/i;
/**
 * The server closed or reset the connection before its ssh banner: sshd's MaxStartups
 * dropping unauthenticated connections beyond its limit, a bastion or NAT at its limit,
 * fail2ban or tcp wrappers. (OpenSSH before 8.3 said ssh_exchange_identification.)
 */
const KEX_CLOSED_RE =
  /(?:kex|ssh)_exchange_identification: (?:read: )?Connection (?:closed by remote host|reset by peer)/i;
/** Time-outs before any data: the TCP connection or the ssh banner; a name server that did not answer. */
const NO_ANSWER_RE = /Connection timed out|Operation timed out|banner exchange|Temporary failure in name resolution/i;
const RESET_RE = /Connection reset by peer/i;
const UNKNOWN_KEY_RE = /No ([A-Z0-9-]+) host key is known for (\S+)/;
const CHANGED_KEY_RE = /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for (\S+) has changed/i;
const OFFENDING_RE = /Offending ([A-Z0-9-]+) key in (.+):(\d+)$/m;
const MISSING_RE = /link_stat "([^"]*)" failed: No such file or directory|change_dir "([^"]*)" failed: No such file or directory/;

/** Where a source's ssh reaches and which known_hosts it checks: what an administrator types to fix a host key. */
type SshTarget = Pick<PullSpec, "client" | "source">;

/** The known_hosts file ssh checks for this source (ssh's default unless [client] known_hosts names one). */
function knownHostsOf(target: SshTarget | undefined): string {
  return target?.client.known_hosts ?? "~/.ssh/known_hosts";
}

/** `ssh-keyscan` for the source's host and port (`type` as ssh names it, e.g. ED25519). */
function keyscan(target: SshTarget | undefined, type: string | undefined): string {
  const r = target && !isLocalRemote(target.source.remote) ? parseRemote(target.source.remote) : undefined;
  const host = r?.host ?? "HOST";
  const port = target?.source.port ?? 22;
  return `ssh-keyscan -p ${port}${type ? ` -t ${type.toLowerCase()}` : ""} ${shWord(host)}`;
}

/** An unknown host key and a changed one need different answers: say which, where, and what to run. */
function hostKeyFailure(text: string, target: SshTarget | undefined, detail: string): FailureClass {
  const unknown = UNKNOWN_KEY_RE.exec(text);
  if (unknown && !CHANGED_KEY_RE.test(text)) {
    const [, type, host] = unknown;
    const file = knownHostsOf(target);
    const which = target?.client.known_hosts ? file : `${file} (ssh's default; [client] known_hosts names another)`;
    return {
      code: "HOST_KEY_FAILED",
      why: `the server's host key is unknown: no ${type} key for ${host} is in ${which}. ` +
        `Fetch it with \`${keyscan(target, type)} > server.key\`, check that \`ssh-keygen -lf server.key\` shows ` +
        `the fingerprint the server shows for its own key, then append server.key to ${file}`,
    };
  }
  if (CHANGED_KEY_RE.test(text)) {
    const off = OFFENDING_RE.exec(text);
    const file = off?.[2] ?? knownHostsOf(target);
    const host = /Host key for (\S+) has changed/i.exec(text)?.[1] ?? "HOST";
    const recorded = off ? `${file}, line ${off[3]}` : file;
    const forget = `ssh-keygen -f ${shPath(file)} -R ${shWord(host)}`;
    return {
      code: "HOST_KEY_FAILED",
      why: `the server's host key has CHANGED: it is not the key recorded for ${host} in ${recorded}. ` +
        "Someone may be posing as the server. If its key was replaced on purpose (a reinstall), remove the old one " +
        `(\`${forget}\`) and record the new one after checking its fingerprint (\`${keyscan(target, off?.[1])}\`)`,
    };
  }
  return { code: "HOST_KEY_FAILED", why: `ssh refused the server's host key: ${detail}` };
}

/** A file the pull asked for is not on the server: server.status missing means no run has made one yet. */
function missingFailure(text: string, fallback: CodeName): FailureClass {
  const m = MISSING_RE.exec(text);
  const missing = m?.[1] ?? m?.[2];
  if (missing !== undefined && path.posix.basename(missing) === SERVER_STATUS) {
    return {
      code: fallback,
      why: `the server has no status file yet (${missing} does not exist there): ` +
        "has `shoot wrapper` run there, and is remote its backup_dir?",
    };
  }
  const line = text.split("\n").find((l) => /No such file or directory|change_dir .* failed/.test(l))?.trim() ?? "";
  return { code: fallback, why: `not found on the server: ${line.slice(0, 300)}` };
}

/**
 * What a failed rsync run means, from its exit status and the tail of its standard error.
 * `fallback` is the code when nothing more specific is recognised (STATUS_PULL_FAILED or
 * PULL_FAILED); `target`, the pull's source and client settings, lets a host key failure say
 * which known_hosts file and which `ssh-keyscan` command to use. Refusals are tested first: a
 * refused key or host key is never transient, whatever else the lines say.
 */
export function classifyFailure(
  r: { exitCode: number | null; signal: string | null; stderrTail: readonly string[]; timedOut: boolean },
  fallback: CodeName,
  target?: SshTarget,
): FailureClass {
  const text = r.stderrTail.join("\n");
  const lastUseful = r.stderrTail.map((l) => l.trim()).filter((l) => l && !/^rsync error:|^rsync: connection unexpectedly closed/.test(l));
  const detail = (lastUseful.at(-1) ?? r.stderrTail.at(-1) ?? "").slice(0, 300);
  if (/Failed to exec ssh|ssh: not found|exec: ssh:/.test(text)) return { code: "TOOL_MISSING", why: "ssh is not installed (or not on PATH); install it with: apt-get install openssh-client" };
  if (HOST_KEY_RE.test(text)) return hostKeyFailure(text, target, detail);
  if (/Permission denied \(publickey|Too many authentication failures/.test(text)) {
    return { code: fallback, why: `ssh login refused (is the key in the server's authorized_keys?): ${detail}` };
  }
  const kex = KEX_CLOSED_RE.exec(text);
  if (kex) {
    return {
      code: "THROTTLED",
      why: "the server closed the connection during the ssh key exchange " +
        `(sshd's MaxStartups, a bastion or NAT limit, fail2ban): ${kex[0]}`,
      transient: "the connection was closed during the key exchange",
    };
  }
  if (UNREACHABLE_RE.test(text)) {
    const noAnswer = NO_ANSWER_RE.test(text)
      ? { transient: "the server did not answer in time (nothing had come yet)" }
      : {};
    return { code: "UNREACHABLE", why: `the server could not be reached: ${detail}`, ...noAnswer };
  }
  if (r.timedOut) return { code: "UNREACHABLE", why: "rsync did not finish within its time limit and was stopped" };
  if (r.exitCode === 30 || /timeout in data send\/receive|io timeout/i.test(text)) {
    return { code: fallback, why: `the transfer stalled past the time-out: ${detail}` };
  }
  if (/No such file or directory|change_dir .* failed/.test(text)) return missingFailure(text, fallback);
  if (RESET_RE.test(text)) {
    return { code: fallback, why: `the connection was reset: ${detail}`, transient: "the connection was reset" };
  }
  if (r.signal) return { code: fallback, why: `rsync was killed by ${r.signal}${detail ? `: ${detail}` : ""}` };
  return { code: fallback, why: `rsync exited with ${r.exitCode}${detail ? `: ${detail}` : ""}` };
}

/**
 * Short options a read-only rsync sender may be asked for. They only change what is read and
 * how it is sent. Absent on purpose: L and k (follow symlinks, which could lead outside the
 * served directory), s (secluded arguments would hide the paths from this check), R, and
 * everything else.
 */
const SENDER_SHORT = new Set("vqtrlpogDdczHxnWSIumAXOJ".split(""));
const SENDER_LONG = /^--(?:timeout=\d{1,9}|bwlimit=[0-9.]{1,12}[A-Za-z]{0,3}|compress-level=\d{1,2}|(?:compress-choice|zc|checksum-choice|cc)=[A-Za-z0-9,-]{1,40}|numeric-ids)$/;
/** Characters rsync leaves unescaped in the command it sends; anything else must come backslashed. */
const PLAIN_CHAR = /[A-Za-z0-9._,:+=@%/-]/;

export interface SenderCommand {
  options: string[];
  paths: string[];
}

export class CommandRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CommandRefused";
  }
}

/**
 * Split the command line ssh hands a forced command ($SSH_ORIGINAL_COMMAND) as rsync writes
 * it: words separated by spaces, shell-active characters escaped with a backslash. No shell
 * ever sees it, so an unescaped shell character is refused rather than interpreted.
 */
export function splitRsyncCommand(cmd: string): string[] {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  for (let i = 0; i < cmd.length; i++) {
    const c = cmd[i]!;
    if (c === " ") {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
      continue;
    }
    inWord = true;
    if (c === "\\") {
      const next = cmd[i + 1];
      if (next === undefined || /[\0-\x1f\x7f]/.test(next)) throw new CommandRefused("a dangling or control-character escape");
      cur += next;
      i++;
      continue;
    }
    if (!PLAIN_CHAR.test(c)) throw new CommandRefused(`unexpected character ${JSON.stringify(c)} (no shell runs this command, so nothing is expanded)`);
    cur += c;
  }
  if (inWord) words.push(cur);
  return words;
}

/**
 * Accept only `rsync --server --sender [checked options] . PATH…`: the rsync a client runs on
 * the server to read files. Returns the options and paths; the caller confines the paths.
 */
export function parseSenderCommand(cmd: string): SenderCommand {
  const w = splitRsyncCommand(cmd);
  if (w.length === 0) throw new CommandRefused("no command: this key only serves rsync reads");
  if (w[0] !== "rsync") throw new CommandRefused(`${JSON.stringify(w[0]!.slice(0, 60))} is not rsync: this key only serves rsync reads`);
  if (w[1] !== "--server") throw new CommandRefused("not an rsync server invocation");
  if (w[2] !== "--sender") throw new CommandRefused("writing is not allowed: this key may only read (rsync --sender)");
  const options: string[] = [];
  let i = 3;
  for (; i < w.length && w[i]!.startsWith("-"); i++) {
    const o = w[i]!;
    if (/^-B\d{1,6}$/.test(o)) {
      // the delta block size (--block-size): how the client's checksums are cut, nothing more
    } else if (/^-[A-Za-z]/.test(o) && !o.startsWith("--")) {
      // "-te.LsfxCIvu": options up to the first "e", then the protocol's capability flags
      const e = o.indexOf("e");
      const letters = e < 0 ? o.slice(1) : o.slice(1, e);
      const caps = e < 0 ? "" : o.slice(e + 1);
      const bad = [...letters].find((c) => !SENDER_SHORT.has(c));
      if (bad) throw new CommandRefused(`rsync option -${bad} is not allowed here`);
      if (!/^[.0-9]*[A-Za-z]*$/.test(caps)) throw new CommandRefused(`unexpected rsync capability string ${JSON.stringify(o)}`);
    } else if (!SENDER_LONG.test(o)) {
      throw new CommandRefused(`rsync option ${JSON.stringify(o.split("=")[0]!.slice(0, 60))} is not allowed here`);
    }
    options.push(o);
  }
  if (w[i] !== ".") throw new CommandRefused("no file to send (expected \".\" and then the paths)");
  const paths = w.slice(i + 1);
  if (paths.length === 0) throw new CommandRefused("no file to send");
  for (const p of paths) {
    if (!p.startsWith("/")) throw new CommandRefused(`${JSON.stringify(p)}: only absolute paths are served`);
    if (p.split("/").includes("..")) throw new CommandRefused(`${JSON.stringify(p)}: ".." is not allowed`);
  }
  return { options, paths };
}
