import { defineCommand } from "citty";
import { exitCodeFor } from "../../core/common/codes.ts";
import { runClient } from "../../core/client/client.ts";
import { loadConfig, requireClient, resolveConfigPath } from "../../core/common/config.ts";
import { realDeps } from "../../core/common/deps.ts";
import { configArgs, quietArgs } from "../args.ts";
import { cliLog } from "../log.ts";
import { finishRun, refusedSpool } from "../finish.ts";
import { pingHealthcheck } from "../../core/report/metrics.ts";
import { abortOnSignals } from "../signals.ts";
import { systemClock } from "../../core/common/deps.ts";

// variadic: any number of source names (see checkArgs in run.ts)
const meta = { name: "client", description: "Pull, verify and keep the servers' archives (all sources, or the ones named)", variadic: true };

export default defineCommand({
  meta,
  args: {
    ...configArgs,
    ...quietArgs,
    json: { type: "boolean", description: "Print the outcome as JSON" },
    name: { type: "positional", required: false, description: "Sources to pull (default: all)", valueHint: "NAME…" },
  },
  async run({ args }) {
    const config = loadConfig(resolveConfigPath(args.config, process.env));
    const cfg = requireClient(config);
    const signals = abortOnSignals();
    try {
      const log = cliLog(args.quiet);
      const ping = await pingHealthcheck("start", { role: "client" }, config);
      if (ping.error) log.warn(ping.error);
      // loaded only when a store is configured: the S3 and age code stays out of a plain run's start
      const afterVerified = config.offsite?.length
        ? (await import("../../core/offsite/hook.ts")).offsiteAfterVerified(config.offsite, { env: process.env, clock: systemClock, log, signal: signals.signal })
        : undefined;
      const outcome = refusedSpool(config, cfg.dest_dir, "client") ?? await runClient(cfg, realDeps(log), { only: args._, signal: signals.signal, afterVerified });
      await finishRun(outcome, { config, roleDir: cfg.dest_dir, log, quiet: args.quiet, json: args.json });
      return exitCodeFor(outcome.code);
    } finally {
      signals.dispose();
    }
  },
});
