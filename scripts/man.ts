/**
 * shoot(1), in roff, from the command definitions (command-tree.ts) and the table of codes.
 * Written by `bun scripts/docs.ts` into share/man/man1/shoot.1 and shipped beside the binaries.
 */
import { CODES } from "../src/core/common/codes.ts";
import type { CommandInfo, FlagInfo, PositionalInfo } from "./command-tree.ts";

/** Text for roff: backslashes and hyphens escaped, `code` in bold, anything beyond ASCII as a named glyph. */
export function roff(text: string): string {
  const plain = (s: string) =>
    s
      .replace(/\\/g, "\\e")
      .replace(/-/g, "\\-")
      .replace(/[^\x00-\x7f]/gu, (c) => `\\[u${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}]`);
  return text
    .split(/(`[^`]*`)/)
    .map((part) => (part.startsWith("`") && part.endsWith("`") && part.length > 1 ? `\\fB${plain(part.slice(1, -1))}\\fR` : plain(part)))
    .join("");
}

/** A line of running text: one that would start with `.` or `'` is not a request. */
function line(text: string): string {
  const t = roff(text);
  return /^[.']/.test(t) ? `\\&${t}` : t;
}

/** A flag with its names (`-q, --quiet`; `-q|--quiet` in a synopsis) and its value. */
function flagUsage(f: FlagInfo, sep = ", "): string {
  const names = [...f.short.map((s) => `\\-${s}`), `\\-\\-${f.negatable ? "[no\\-]" : ""}${roff(f.name)}`].join(sep);
  return f.valueHint ? `\\fB${names}\\fR \\fI${roff(f.valueHint)}\\fR` : `\\fB${names}\\fR`;
}

function positionalUsage(p: PositionalInfo): string {
  return p.required ? `\\fI${roff(p.valueHint)}\\fR` : `[\\fI${roff(p.valueHint)}\\fR]`;
}

function synopsis(c: CommandInfo): string {
  const flags = c.flags.map((f) => `[${flagUsage(f, "|")}]`);
  return [`\\fBshoot ${roff(c.name)}\\fR`, ...flags, ...c.positionals.map(positionalUsage)].join(" ");
}

function commandSection(c: CommandInfo): string[] {
  const out = [`.SS ${roff(c.name)}`, ".ad l", synopsis(c), ".ad", ".PP", line(c.description)];
  for (const p of c.positionals) out.push(".TP", `\\fI${roff(p.valueHint)}\\fR`, line(p.description));
  for (const f of c.flags) {
    out.push(".TP", flagUsage(f), line(f.description));
    if (f.negativeDescription) out.push(".br", line(`--no-${f.name}: ${f.negativeDescription}`));
  }
  return out;
}

function exitStatus(): string[] {
  const out = [
    ".SH EXIT STATUS",
    line("0 when the run ended with a golden code (4 NEW_ARCHIVE, 9 UNCHANGED, 30 FIRST_ARCHIVE); otherwise the run's failure code, from this table. A client run exits with its most severe source's code. `shoot status --nagios` exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."),
  ];
  for (const c of [...CODES].filter((x) => x.kind === "failure").sort((a, b) => a.code - b.code)) {
    out.push(".TP", `\\fB${c.code}\\fR ${roff(c.name)}`, line(c.meaning));
  }
  return out;
}

/** The whole page. `version` is the package's version (not the commit: the page is kept in git). */
export function manPage(commands: readonly CommandInfo[], version: string): string {
  return [
    `.TH SHOOT 1 "" "shoot ${roff(version)}" "shoot"`,
    // no hyphenation: names such as server.status and --known-hosts are copied from the page
    ".nh",
    ".SH NAME",
    "shoot \\- backups made on the server, pulled and verified by the backup host",
    ".SH SYNOPSIS",
    "\\fBshoot\\fR \\fIcommand\\fR [\\fIflag\\fR ...] [\\fIargument\\fR ...]",
    ".br",
    "\\fBshoot \\-\\-version\\fR | \\fB\\-\\-help\\fR",
    ".br",
    "\\fBshoot\\fR \\fIcommand\\fR \\fB\\-\\-help\\fR",
    ".SH DESCRIPTION",
    line("shoot makes backups of a UNIX host and carries them, over ssh, to a backup host. On the host being backed up (the server), cron runs `shoot wrapper`, which runs `shoot server`: when something changed since the last archive, it writes a plain tar archive (gzip, zstd or none) with an `md5sum -c` checksum file and a file list beside it, and records every step in the status file server.status. On the backup host (the client), cron runs `shoot client`: it pulls server.status over ssh, refuses a stale or failed run, pulls the archive with rsync, verifies it, and keeps a number of copies. The server holds no credential for the backup host; the backup host's key may only read the backup directory, through `shoot serve --read-only`."),
    ".PP",
    line("A run ended clean only when its final code is golden: 4 (a new archive was made), 9 (nothing changed; the last archive is still current) or 30 (the first archive was made). Every run can mail its report through shoot's own SMTP sender."),
    ".SH COMMANDS",
    ...commands.flatMap(commandSection),
    ".SH FILES",
    ".TP", "\\fI/etc/shoot/shoot.toml\\fR", line("The configuration, unless `--config` or SHOOT_CONFIG names another. `shoot init` writes it; `shoot check-config` checks it."),
    ".TP", "\\fIbackup_dir\\fR\\fB/server.status\\fR", line("The server's status file: one JSON record per line; the previous run's is server.status.1."),
    ".TP", "\\fIbackup_dir\\fR\\fB/\\fR\\fIname\\fR\\fB\\-\\fR\\fIYYYYMMDD\\fR\\fB\\-\\fR\\fIHHMMSS\\fR\\fB.tar.gz\\fR", line("An archive, with its .md5 and .list files beside it."),
    ".TP", "\\fIdest_dir\\fR\\fB/client.status\\fR", line("The backup host's status file; the copies are in one directory per source beside it."),
    ".SH ENVIRONMENT",
    ".TP", "\\fBSHOOT_CONFIG\\fR", line("The configuration file when `--config` is not given."),
    ".TP", "\\fBSHOOT_SMTP_PASSWORD\\fR", line("The SMTP password when [mail] password_file is not set."),
    ".TP", "\\fBNO_COLOR\\fR", line("Help without colours on a terminal."),
    ...exitStatus(),
    ".SH SEE ALSO",
    "\\fBrsync\\fR(1), \\fBssh\\fR(1), \\fBsshd\\fR(8), \\fBtar\\fR(1), \\fBmd5sum\\fR(1), \\fBcron\\fR(8)",
    ".PP",
    line("The documentation in the source repository: README.md and docs/ (configuration, operating, mail, restore, monitoring, security, troubleshooting, upgrade)."),
    "",
  ].join("\n");
}
