import { code, type CodeName } from "./codes.ts";

/** A failure with its status code: what commands throw, what the entry point maps to an exit code. */
export class ShootError extends Error {
  readonly code: number;
  constructor(name: CodeName, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ShootError";
    this.code = code(name);
  }
}

/** A wrong command line: exit code 2. */
export class UsageError extends ShootError {
  constructor(message: string) {
    super("USAGE", message);
    this.name = "UsageError";
  }
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The errno code of a Node/Bun system error ("ENOENT", "ENOSPC", ...), if it is one. */
export function errnoCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === "string" ? c : undefined;
}
