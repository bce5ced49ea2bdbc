import { consola } from "consola";
import type { Log } from "../core/deps.ts";

/** Progress and warnings on stderr (stdout carries the report, which cron mails). */
export function cliLog(quiet = false): Log {
  const c = consola.create({ stdout: process.stderr, stderr: process.stderr, level: quiet ? 1 : 3 });
  return { info: (m) => c.info(m), warn: (m) => c.warn(m), error: (m) => c.error(m) };
}
