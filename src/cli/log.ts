import type { ConsolaInstance } from "consola";
import type { Log } from "../core/common/deps.ts";
import { escapeLines } from "../core/common/escape.ts";

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

/** Progress and warnings on stderr (stdout carries the report, which cron mails); messages quoting servers are escaped. */
export function cliLog(quiet = false): Log {
  let c: ConsolaInstance | undefined;
  const log = () => (c ??= stderrConsola(quiet ? 1 : 3));
  return { info: (m) => log().info(escapeLines(m)), warn: (m) => log().warn(escapeLines(m)), error: (m) => log().error(escapeLines(m)) };
}

/** Where a command's error goes, on stderr (escaped: an error may quote an archive's entry or a server). */
export function errorLog(): Pick<Log, "error"> {
  return { error: (m) => stderrConsola(3).error(escapeLines(m)) };
}
