/**
 * Parse the command line, run one subcommand, turn its outcome or error into an exit code.
 * Unlike citty's runMain, an unknown flag or subcommand is a usage error (2), and a failure
 * keeps its own code instead of becoming 1.
 */
import { renderUsage, runCommand, type ArgsDef, type CommandDef } from "citty";
import { code } from "../core/common/codes.ts";
import { ShootError, UsageError } from "../core/common/errors.ts";
import { ToolMissingError } from "../io/process.ts";
import { TARGET, VERSION } from "../version.ts";
import { errorLog } from "./log.ts";
import { SUBCOMMANDS } from "./root.ts";

/** The program as citty's usage text names a subcommand's parent. */
const PROGRAM: CommandDef = { meta: { name: "shoot" } };

function rootUsage(): string {
  const width = Math.max(...Object.keys(SUBCOMMANDS).map((n) => n.length));
  const lines = Object.entries(SUBCOMMANDS).map(([n, s]) => `  ${n.padEnd(width)}  ${s.describe}`);
  return [
    `shoot ${VERSION}: backups made on the server, pulled and verified by the backup host`,
    "",
    "Usage: shoot <command> [flags]",
    "",
    "Commands:",
    ...lines,
    "",
    "Flags: --help (any command), --version",
    "Exit codes: 0 when a run ended golden (4, 9, 30), else its status code; see `shoot codes`.",
  ].join("\n");
}

/** Refuse flags the command does not define, and surplus positional arguments. */
export function checkArgs(args: ArgsDef, rawArgs: string[], variadic: boolean): void {
  const names = new Map<string, string>();
  const positionals = Object.entries(args).filter(([, d]) => d.type === "positional").length;
  for (const [name, def] of Object.entries(args)) {
    if (def.type === "positional") continue;
    names.set(name, def.type ?? "string");
    const alias = (def as { alias?: string | string[] }).alias;
    for (const a of Array.isArray(alias) ? alias : alias ? [alias] : []) names.set(a, def.type ?? "string");
  }
  names.set("help", "boolean");
  names.set("h", "boolean");
  let seenPositionals = 0;
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === "--") {
      seenPositionals += rawArgs.length - i - 1;
      break;
    }
    if (a.startsWith("-") && a !== "-") {
      const body = a.replace(/^--?/, "");
      const [flag, inline] = body.split("=", 2) as [string, string | undefined];
      let type = names.get(flag);
      if (!type && flag.startsWith("no-") && names.get(flag.slice(3)) === "boolean") type = "boolean";
      if (!type) throw new UsageError(`unknown flag ${a.split("=")[0]}`);
      if (type !== "boolean" && inline === undefined) {
        if (i + 1 >= rawArgs.length) throw new UsageError(`flag --${flag} needs a value`);
        i++;
      }
      continue;
    }
    seenPositionals++;
  }
  if (!variadic && seenPositionals > positionals) throw new UsageError(`unexpected argument(s): ${rawArgs.filter((a) => !a.startsWith("-")).slice(positionals).join(" ")}`);
}

export async function runCli(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    console.log(rootUsage());
    return first === undefined ? code("USAGE") : 0;
  }
  if (first === "--version" || first === "-V" || first === "version") {
    console.log(`shoot ${VERSION} (${TARGET})`);
    return 0;
  }
  try {
    const entry = SUBCOMMANDS[first];
    if (!entry) throw new UsageError(`unknown command ${JSON.stringify(first)} (see shoot --help)`);
    const cmd: CommandDef<any> = await entry.load();
    const rest = argv.slice(1);
    const args = (typeof cmd.args === "function" ? await cmd.args() : cmd.args ?? {}) as ArgsDef;
    if (rest.includes("--help") || rest.includes("-h")) {
      // with shoot as the parent, the header reads "USAGE shoot restore …", as it is typed
      console.log(await plainUnlessTerminal(await renderUsage(cmd, PROGRAM)));
      return 0;
    }
    checkArgs(args, rest, Boolean((cmd.meta as { variadic?: boolean } | undefined)?.variadic));
    const { result } = await runCommand(cmd, { rawArgs: rest });
    return typeof result === "number" ? result : 0;
  } catch (e) {
    return reportError(e, first);
  }
}

/**
 * citty colours its usage text whatever stdout is: into a pipe or a file (`shoot server --help |
 * less`, a wiki page) that is escape sequences. Kept only for a terminal, and not with NO_COLOR.
 */
async function plainUnlessTerminal(text: string): Promise<string> {
  const { isatty } = await import("node:tty");
  if (isatty(1) && !process.env.NO_COLOR) return text;
  const { stripVTControlCharacters } = await import("node:util");
  return stripVTControlCharacters(text);
}

/** A run stopped by SIGINT or SIGTERM (signals.ts aborts with the signal's name): what stopped, by what. */
function interruption(e: unknown): string | undefined {
  if (typeof e === "string" && e.startsWith("SIG")) return e;
  if ((e as { name?: string } | null)?.name !== "AbortError") return undefined;
  const cause = (e as { cause?: unknown }).cause;
  return typeof cause === "string" ? cause : "a signal";
}

function reportError(e: unknown, command: string): number {
  const signal = interruption(e);
  if (signal) {
    errorLog().error(`shoot ${command}: interrupted by ${signal}`);
    return code("INTERRUPTED");
  }
  if (e instanceof UsageError || (e as { name?: string })?.name === "CLIError") {
    errorLog().error(`shoot ${command}: ${(e as Error).message}`);
    return code("USAGE");
  }
  if (e instanceof ShootError) {
    errorLog().error(`shoot ${command}: ${e.message}`);
    return e.code;
  }
  if (e instanceof ToolMissingError) {
    errorLog().error(`shoot ${command}: ${e.message}`);
    return code("TOOL_MISSING");
  }
  errorLog().error(`shoot ${command}: internal error: ${(e as Error)?.stack ?? String(e)}`);
  return code("INTERNAL_ERROR");
}
