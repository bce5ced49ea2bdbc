import type { ConsolaInstance } from "consola";
import type { Log } from "../core/common/deps.ts";

/**
 * consola on stderr, loaded at the first message. Importing consola sets up process.stdout
 * and process.stderr as it loads, which took 45 ms of a compiled binary's start (a
 * hello-world takes 20 ms); most runs of `shoot status` or of a server that finds nothing
 * changed have nothing to say there.
 */
function stderrConsola(level: number): ConsolaInstance {
  const { consola } = require("consola") as typeof import("consola");
  return consola.create({ stdout: process.stderr, stderr: process.stderr, level });
}

/** Progress and warnings on stderr (stdout carries the report, which cron mails). */
export function cliLog(quiet = false): Log {
  let c: ConsolaInstance | undefined;
  const log = () => (c ??= stderrConsola(quiet ? 1 : 3));
  return { info: (m) => log().info(m), warn: (m) => log().warn(m), error: (m) => log().error(m) };
}

/** Where a command's error goes, on stderr. */
export function errorLog(): ConsolaInstance {
  return stderrConsola(3);
}
