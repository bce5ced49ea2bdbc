import { defineCommand } from "citty";
import { exitCodeFor } from "../../core/common/codes.ts";
import { loadConfig, requireServer, resolveConfigPath } from "../../core/common/config.ts";
import { realDeps } from "../../core/common/deps.ts";
import { createProgress, type Progress } from "../../core/report/progress.ts";
import { runServer } from "../../core/server/server.ts";
import { parentRunFromEnv } from "../../core/server/wrapper-env.ts";
import { configArgs, quietArgs } from "../args.ts";
import { cliLog } from "../log.ts";
import { finishRun, refusedSpool } from "../finish.ts";
import { abortOnSignals } from "../signals.ts";

export default defineCommand({
  meta: { name: "server", description: "Make the backup archive when something changed (cron runs `shoot wrapper`, which runs this)" },
  args: { ...configArgs, ...quietArgs },
  async run({ args }) {
    const config = loadConfig(resolveConfigPath(args.config, process.env));
    const cfg = requireServer(config);
    const parent = parentRunFromEnv(process.env);
    const signals = abortOnSignals(parent ? { orphanCheckMs: 1000 } : {});
    try {
      const log = cliLog(args.quiet);
      let progress: Progress | undefined;
      const onArchiveProgress = (done: number, total: number) => {
        progress ??= createProgress({ label: "archive", total, quiet: args.quiet });
        progress.update(done);
      };
      // under the wrapper, the wrapper has looked at the spool already
      const refused = parent ? undefined : refusedSpool(config, cfg.backup_dir, "server");
      const outcome = refused ?? await runServer(cfg, realDeps(log), { parent, signal: signals.signal, onArchiveProgress });
      progress?.finish();
      // under the wrapper, the wrapper reports (its report and the status file say how this run
      // ended; a line of our own would show up twice in a hand-run wrapper's output); a server
      // run by hand reports itself
      if (!parent) await finishRun(outcome, { config, roleDir: cfg.backup_dir, log, quiet: args.quiet });
      return exitCodeFor(outcome.code);
    } finally {
      signals.dispose();
    }
  },
});
