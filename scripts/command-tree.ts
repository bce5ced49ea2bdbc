/**
 * The command line as data, read from the commands' own definitions (src/cli/root.ts and each
 * citty command): what the man page and the shell completions are generated from, so neither
 * can drift from what `shoot COMMAND --help` says.
 */
import type { ArgsDef, CommandDef } from "citty";
import { SUBCOMMANDS } from "../src/cli/root.ts";

export interface FlagInfo {
  name: string;
  /** One-letter aliases (`-q`). */
  short: string[];
  boolean: boolean;
  /** A boolean that is on unless `--no-NAME` is given. */
  negatable: boolean;
  description: string;
  /** What `--no-NAME` does. */
  negativeDescription?: string;
  /** FILE, DIR, PATH… as the command writes it; what a completion offers follows it. */
  valueHint?: string;
}

export interface PositionalInfo {
  name: string;
  required: boolean;
  description: string;
  valueHint: string;
}

export interface CommandInfo {
  name: string;
  /** The one line `shoot --help` shows. */
  summary: string;
  /** The longer line `shoot COMMAND --help` shows. */
  description: string;
  flags: FlagInfo[];
  positionals: PositionalInfo[];
  /** The last positional takes any number of values. */
  variadic: boolean;
}

export async function commandTree(): Promise<CommandInfo[]> {
  const out: CommandInfo[] = [];
  for (const [name, entry] of Object.entries(SUBCOMMANDS)) {
    const cmd: CommandDef<ArgsDef> = await entry.load();
    const meta = (typeof cmd.meta === "function" ? await cmd.meta() : cmd.meta) as { description?: string; variadic?: boolean } | undefined;
    const args = (typeof cmd.args === "function" ? await cmd.args() : cmd.args ?? {}) as ArgsDef;
    const flags: FlagInfo[] = [];
    const positionals: PositionalInfo[] = [];
    for (const [argName, def] of Object.entries(args)) {
      const d = def as {
        type?: string; alias?: string | string[]; description?: string; negativeDescription?: string;
        valueHint?: string; required?: boolean; default?: unknown;
      };
      if (d.type === "positional") {
        positionals.push({ name: argName, required: d.required !== false, description: d.description ?? "", valueHint: d.valueHint ?? argName.toUpperCase() });
        continue;
      }
      const alias = Array.isArray(d.alias) ? d.alias : d.alias ? [d.alias] : [];
      flags.push({
        name: argName,
        short: alias.filter((a) => a.length === 1),
        boolean: d.type === "boolean",
        negatable: d.type === "boolean" && (d.default === true || d.negativeDescription !== undefined),
        description: d.description ?? "",
        negativeDescription: d.negativeDescription,
        valueHint: d.type === "boolean" ? undefined : (d.valueHint ?? "VALUE"),
      });
    }
    out.push({ name, summary: entry.describe, description: meta?.description ?? entry.describe, flags, positionals, variadic: meta?.variadic === true });
  }
  return out;
}

/** What a value hint asks a completion to offer. */
export function valueKind(hint: string | undefined): "file" | "dir" | "none" | readonly string[] {
  if (!hint) return "none";
  if (hint.includes("|")) return hint.split("|");
  if (/^DIR/.test(hint)) return "dir";
  if (/^(FILE|PATH|ARCHIVE)/.test(hint)) return "file";
  return "none";
}
