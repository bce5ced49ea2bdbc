import { defineCommand } from "citty";
import { codeName } from "../../core/common/codes.ts";
import { UsageError } from "../../core/common/errors.ts";
import { escapeLines } from "../../core/common/escape.ts";
import { createProgress } from "../../core/report/progress.ts";
import { ShootError } from "../../core/common/errors.ts";
import { loadConfig, resolveConfigPath } from "../../core/common/config.ts";
import type { EntryNote } from "../../core/restore/restore.ts";
import { parseAt, pointAt, runPointRestore } from "../../core/restore/chain.ts";
import { configForArchive, heldArchives, resolveArchive, type HeldArchive } from "../../core/restore/verify.ts";
import { configArgs, quietArgs } from "../args.ts";
import { abortOnSignals } from "../signals.ts";

// variadic: the paths to restore follow the archive (see checkArgs in run.ts)
const meta = { name: "restore", description: "Check an archive (and every archive its restore point needs), then restore all of it or the paths named into DIR (never over existing files without --force)", variadic: true };

/** Lines on stdout; names come from the archive, so each line is escaped. */
function print(line: string): void {
  console.log(escapeLines(line));
}

function printNotes(title: string, notes: readonly EntryNote[], max = 20): void {
  if (notes.length === 0) return;
  print(`${title} (${notes.length}):`);
  for (const n of notes.slice(0, max)) print(`  ${n.name}: ${n.why}`);
  if (notes.length > max) print(`  … and ${notes.length - max} more`);
}

/** The held archive `--at` names: the newest of one owner's made at or before that time. */
function restorePoint(config: string | undefined, at: string, from: string | undefined): HeldArchive {
  const when = parseAt(at);
  if (!when) throw new UsageError(`--at ${JSON.stringify(at)}: expected "newest", a date (2025-01-31) or a date and time (2025-01-31 03:00, local time unless it ends in Z or an offset)`);
  const held = heldArchives(loadConfig(resolveConfigPath(config, process.env))).filter((h) => from === undefined || h.owner === from);
  const dirs = [...new Set(held.map((h) => h.dir))];
  if (dirs.length === 0) throw new ShootError("ARCHIVE_NOT_FOUND", from === undefined ? "this host holds no archives" : `this host holds no archives of ${JSON.stringify(from)}`);
  if (dirs.length > 1) {
    const owners = [...new Set(held.map((h) => `${h.owner} (${h.role})`))];
    throw new UsageError(`this host holds archives of ${owners.join(", ")}: say whose with --from NAME`);
  }
  const point = pointAt(held, when);
  if (!point) throw new ShootError("ARCHIVE_NOT_FOUND", `no archive here was made at or before ${when.toISOString()}; the oldest is ${held[0]!.file}`);
  return point;
}

export default defineCommand({
  meta,
  args: {
    ...configArgs,
    ...quietArgs,
    to: { type: "string", description: "Directory to restore into (created when missing)", valueHint: "DIR" },
    force: { type: "boolean", description: "Overwrite files that exist in DIR" },
    checksum: {
      type: "boolean",
      default: true,
      description: "Check the archive against its .md5 file first",
      negativeDescription: "Restore an archive that has no .md5 file (one made by hand) without that check",
    },
    "allow-outside-links": { type: "boolean", description: "Also create symbolic links that point outside DIR (made last, so nothing is written through them)" },
    json: { type: "boolean", description: "Print the result as JSON" },
    at: { type: "string", description: "Restore the restore point of that time: the newest archive made then or before, with the archives it needs (\"newest\", a date, or a date and time, local unless it ends in Z or an offset); every argument is then a path", valueHint: "TIME" },
    from: { type: "string", description: "With --at: whose archives (the server's name or a client source), when this host holds several", valueHint: "NAME" },
    archive: { type: "positional", required: false, description: "An archive held here (name) or any archive file (path); without it and --at, the newest restore point", valueHint: "ARCHIVE" },
    path: { type: "positional", required: false, description: "Paths in the archive to restore (default: everything)", valueHint: "PATH…" },
  },
  async run({ args }) {
    if (!args.to) throw new UsageError("restore needs --to DIR: the directory to restore into");
    if (args.from !== undefined && args.at === undefined && args.archive) throw new UsageError("--from picks whose restore point --at names; an archive named on the command line needs neither");
    const byTime = args.at !== undefined || !args.archive;
    const a = byTime ? restorePoint(args.config, args.at ?? "newest", args.from) : resolveArchive(configForArchive(args.config, args.archive, process.env), args.archive);
    const signals = abortOnSignals();
    try {
      const result = await runPointRestore(a, {
        to: args.to,
        paths: byTime ? args._ : args._.slice(1),
        force: args.force,
        checksum: args.checksum,
        allowOutsideLinks: args["allow-outside-links"],
        progressFor: (label, total) => createProgress({ label: `${label} ${a.file}`, total, quiet: args.quiet }),
        signal: signals.signal,
      });
      if (args.json) console.log(JSON.stringify(result, null, 2));
      // --quiet: a restore that wrote everything says nothing, so cron mails only the ones that need a person
      else if (!(args.quiet && result.code === 0)) {
        print(`shoot restore: ${result.code === 0 ? "OK" : `FAILED ${result.code} ${codeName(result.code)}`}: ${result.message}`);
        if (result.alsoRestored.length) print(`also restored, as hard-link targets of what was asked for: ${result.alsoRestored.join(", ")}`);
        printNotes("refused (outside the target)", result.refused);
        printNotes("one name, two kinds (made as neither)", result.clashes);
        printNotes("existing", result.conflicts);
        printNotes("not written", result.failed);
        printNotes("left out (not restored by shoot)", result.skipped);
      }
      return result.code;
    } finally {
      signals.dispose();
    }
  },
});
