#!/usr/bin/env bun
// The only place that ends the process: everything below returns an exit code.
import { runCli } from "./cli/run.ts";

const exitCode = await runCli(process.argv.slice(2));
process.exit(exitCode);
