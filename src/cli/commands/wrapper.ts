import { defineCommand } from "citty";
import { exitCodeFor } from "../../core/common/codes.ts";
import { loadConfig, requireServer, resolveConfigPath } from "../../core/common/config.ts";
import { realDeps } from "../../core/common/deps.ts";
import { runWrapper } from "../../core/server/wrapper.ts";
import { configArgs, quietArgs } from "../args.ts";
import { cliLog } from "../log.ts";
import { finishRun, refusedSpool } from "../finish.ts";
import { pingHealthcheck } from "../../core/report/metrics.ts";
import { selfArgv } from "../self.ts";
import { abortOnSignals } from "../signals.ts";

export default defineCommand({
  meta: { name: "wrapper", description: "Cron's entry point on a server: lock, recover, run and supervise `shoot server`, report" },
  args: { ...configArgs, ...quietArgs },
  async run({ args }) {
    const file = resolveConfigPath(args.config, process.env);
    const config = loadConfig(file);
    const cfg = requireServer(config);
    const signals = abortOnSignals();
    try {
      const serverArgv = [...selfArgv(), "server", "--config", file, ...(args.quiet ? ["--quiet"] : [])];
      const log = cliLog(args.quiet);
      const ping = await pingHealthcheck("start", { role: "wrapper" }, config);
      if (ping.error) log.warn(ping.error);
      const outcome = refusedSpool(config, cfg.backup_dir, "wrapper") ?? await runWrapper(cfg, realDeps(log), { serverArgv, signal: signals.signal });
      await finishRun(outcome, { config, roleDir: cfg.backup_dir, log, quiet: args.quiet });
      return exitCodeFor(outcome.code);
    } finally {
      signals.dispose();
    }
  },
});
