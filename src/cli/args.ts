import type { ArgsDef } from "citty";

/** Flags every command that reads the configuration takes. */
export const configArgs = {
  config: { type: "string", description: "Configuration file (default: $SHOOT_CONFIG, else /etc/shoot/shoot.toml)", valueHint: "FILE" },
} as const satisfies ArgsDef;

export const quietArgs = {
  quiet: { type: "boolean", alias: "q", description: "Print only warnings and errors" },
} as const satisfies ArgsDef;
