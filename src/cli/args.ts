import type { ArgsDef } from "citty";

/** Flags every command that reads the configuration takes. */
export const configArgs = {
  config: { type: "string", description: "Configuration file (default: $SHOOT_CONFIG, else /etc/shoot/shoot.toml)", valueHint: "FILE" },
} as const satisfies ArgsDef;

export const quietArgs = {
  quiet: { type: "boolean", alias: "q", description: "Print only warnings and errors" },
} as const satisfies ArgsDef;

/**
 * Every value of a flag given more than once (`--source a --source b`, `--source=c`), in
 * order: citty keeps only the last. Values after `--` are positional, not flags.
 */
export function repeatedFlag(rawArgs: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === "--") break;
    if (a === `--${name}` && i + 1 < rawArgs.length) out.push(rawArgs[++i]!);
    else if (a.startsWith(`--${name}=`)) out.push(a.slice(name.length + 3));
  }
  return out;
}
