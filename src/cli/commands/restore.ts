import { defineCommand } from "citty";
import { codeName } from "../../core/common/codes.ts";
import { UsageError } from "../../core/common/errors.ts";
import { escapeLines } from "../../core/common/escape.ts";
import { createProgress } from "../../core/report/progress.ts";
import { runRestore, type EntryNote } from "../../core/restore/restore.ts";
import { configForArchive, resolveArchive } from "../../core/restore/verify.ts";
import { configArgs, quietArgs } from "../args.ts";
import { abortOnSignals } from "../signals.ts";

// variadic: the paths to restore follow the archive (see checkArgs in run.ts)
const meta = { name: "restore", description: "Check an archive, then restore all of it or the paths named into DIR (never over existing files without --force)", variadic: true };

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

export default defineCommand({
  meta,
  args: {
    ...configArgs,
    ...quietArgs,
    to: { type: "string", description: "Directory to restore into (created when missing)", valueHint: "DIR" },
    force: { type: "boolean", description: "Overwrite files that exist in DIR" },
    checksum: { type: "boolean", default: true, description: "Check the archive against its .md5 file first (--no-checksum: an archive without one)" },
    "allow-outside-links": { type: "boolean", description: "Also create symbolic links that point outside DIR (made last, so nothing is written through them)" },
    json: { type: "boolean", description: "Print the result as JSON" },
    archive: { type: "positional", description: "An archive held here (name) or any archive file (path)", valueHint: "ARCHIVE" },
    path: { type: "positional", required: false, description: "Paths in the archive to restore (default: everything)", valueHint: "PATH…" },
  },
  async run({ args }) {
    if (!args.archive) throw new UsageError("restore needs the archive: shoot restore ARCHIVE --to DIR [PATH…]");
    if (!args.to) throw new UsageError("restore needs --to DIR: the directory to restore into");
    const a = resolveArchive(configForArchive(args.config, args.archive, process.env), args.archive);
    const signals = abortOnSignals();
    try {
      const result = await runRestore(a, {
        to: args.to,
        paths: args._.slice(1),
        force: args.force,
        checksum: args.checksum,
        allowOutsideLinks: args["allow-outside-links"],
        progressFor: (label, total) => createProgress({ label: `${label} ${a.file}`, total, quiet: args.quiet }),
        signal: signals.signal,
      });
      if (args.json) console.log(JSON.stringify(result, null, 2));
      else {
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
