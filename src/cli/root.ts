import type { CommandDef } from "citty";

/** The subcommand table. Each loads on demand so that start-up stays fast. */
export const SUBCOMMANDS: Record<string, { describe: string; load: () => Promise<CommandDef<any>> }> = {
  wrapper: { describe: "Cron's entry point on a server: lock, recover, run and supervise the server, report", load: () => import("./commands/wrapper.ts").then((m) => m.default) },
  server: { describe: "Make the backup archive when something changed (run by the wrapper)", load: () => import("./commands/server.ts").then((m) => m.default) },
  client: { describe: "Pull the servers' archives over ssh, verify them, keep copies", load: () => import("./commands/client.ts").then((m) => m.default) },
  serve: { describe: "Forced command for the backup host's key: serve read-only rsync pulls of one directory", load: () => import("./commands/serve.ts").then((m) => m.default) },
  codes: { describe: "Print the table of status and exit codes", load: () => import("./commands/codes.ts").then((m) => m.default) },
  mail: { describe: "Mail a test message with the current [mail] settings (--test)", load: () => import("./commands/mail.ts").then((m) => m.default) },
  "check-config": { describe: "Validate the configuration file, check the modes of the directories and password file it names, print what it resolves to", load: () => import("./commands/check-config.ts").then((m) => m.default) },
  list: { describe: "List the archives held here with date, size and checksum state, or the entries of one", load: () => import("./commands/list.ts").then((m) => m.default) },
  restore: { describe: "Check an archive, then restore it (or some paths) into a directory, safely", load: () => import("./commands/restore.ts").then((m) => m.default) },
  verify: { describe: "Check every held archive against its checksum; --deep reads every entry (a restore drill)", load: () => import("./commands/verify.ts").then((m) => m.default) },
  offsite: { describe: "Copies in S3-compatible object storage: push, list, verify [--deep], restore, prune", load: () => import("./commands/offsite.ts").then((m) => m.default) },
  prune: { describe: "Show what the keep rules keep of every copy held here and why (--dry-run)", load: () => import("./commands/prune.ts").then((m) => m.default) },
  status: { describe: "Is the backup healthy? Exit 0 when it is; --json, --nagios for monitoring", load: () => import("./commands/status.ts").then((m) => m.default) },
  init: { describe: "Write a commented configuration for a server or a backup host and print the next steps", load: () => import("./commands/init.ts").then((m) => m.default) },
  demo: { describe: "Back up sample files and pull them over a local path (or --ssh) in a temporary directory, verified", load: () => import("./commands/demo.ts").then((m) => m.default) },
};
