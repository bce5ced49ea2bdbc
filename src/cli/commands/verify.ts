import { defineCommand } from "citty";
import { codeName } from "../../core/common/codes.ts";
import { configForArchive, heldArchives, resolveArchive, runVerify, type ArchiveVerdict } from "../../core/restore/verify.ts";
import { chainProblem, withChains } from "../../core/restore/chain.ts";
import { createProgress } from "../../core/report/progress.ts";
import { escapeLines } from "../../core/common/escape.ts";
import { formatBytes } from "../../core/common/units.ts";
import { configArgs, quietArgs } from "../args.ts";
import { abortOnSignals } from "../signals.ts";

// variadic: any number of archives (default: every one held)
const meta = { name: "verify", description: "Check every held archive against its checksum; --deep also reads every entry and compares with the server's file list", variadic: true };

/** A verdict's lines; problems quote entries of the archive and its file list, so every line is escaped. */
function printVerdict(v: ArchiveVerdict): void {
  const a = v.archive;
  const verdict = v.gone ? "GONE" : v.ok ? "OK" : "FAILED";
  const print = (line: string) => console.log(escapeLines(line));
  print(`${verdict.padEnd(6)} ${a.role}${a.owner ? ` ${a.owner}` : ""}: ${a.file} (${formatBytes(a.bytes)})${v.md5 ? ` md5 ${v.md5}` : ""}`);
  for (const p of v.problems) print(`  problem: ${p}`);
  for (const n of v.notes) print(`  ${n}`);
}

export default defineCommand({
  meta,
  args: {
    ...configArgs,
    ...quietArgs,
    deep: { type: "boolean", description: "Also decompress and read every entry, compare with the file list, and time it (a restore drill)" },
    json: { type: "boolean", description: "Print the verdicts as JSON" },
    archive: { type: "positional", required: false, description: "Archives to check (names held here or paths; default: all held)", valueHint: "ARCHIVE…" },
  },
  async run({ args }) {
    // archives named by path need no configuration; names and "everything held" do
    const onlyPaths = args._.length > 0 && args._.every((x) => x.includes("/"));
    const cfg = configForArchive(args.config, onlyPaths ? args._[0] : undefined, process.env);
    const named = args._.length ? args._.map((x) => resolveArchive(cfg, x)) : heldArchives(cfg!);
    // a restore point of several archives is checked whole: every archive it needs, and that they fit together
    const archives = withChains(named);
    const signals = abortOnSignals();
    try {
      const report = await runVerify(archives, {
        deep: args.deep,
        signal: signals.signal,
        progressFor: (a) => createProgress({ label: `${args.deep ? "reading" : "hashing"} ${a.file}`, total: a.bytes, quiet: args.quiet }),
        onVerdict: (v) => {
          const broken = v.gone ? undefined : chainProblem(v.archive);
          if (broken) {
            v.problems.push(`as a restore point: ${broken}`);
            v.ok = false;
          }
          // --quiet: only the archives that failed are named
          if (!args.json && !(args.quiet && v.ok)) printVerdict(v);
        },
      });
      if (args.json) console.log(JSON.stringify(report, null, 2));
      else if (!(args.quiet && report.code === 0)) console.log(escapeLines(`shoot verify: ${report.code === 0 ? "OK" : `FAILED ${report.code} ${codeName(report.code)}`}: ${report.message}`));
      return report.code;
    } finally {
      signals.dispose();
    }
  },
});
