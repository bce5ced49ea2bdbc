#!/usr/bin/env bun
// The only place that ends the process: everything below returns an exit code.
// `--version` is answered before anything else is loaded: monitoring calls it often.
const argv = process.argv.slice(2);
let exitCode: number;
if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
  const { VERSION, TARGET } = await import("./version.ts");
  // console.log, not process.stdout: setting up the stream would double the time this takes
  console.log(`shoot ${VERSION} (${TARGET})`);
  exitCode = 0;
} else {
  const { runCli } = await import("./cli/run.ts");
  exitCode = await runCli(argv);
}
process.exit(exitCode);
export {};
