import { defineCommand } from "citty";
import os from "node:os";
import { loadConfig, resolveConfigPath } from "../../core/common/config.ts";
import { UsageError } from "../../core/common/errors.ts";
import { escapeLines } from "../../core/common/escape.ts";
import { mailTest } from "../../core/report/notify.ts";
import { configArgs } from "../args.ts";

export default defineCommand({
  meta: { name: "mail", description: "Mail a test message with the current [mail] settings and say exactly what failed" },
  args: { ...configArgs, test: { type: "boolean", description: "Send a test message to the [mail] recipients" } },
  async run({ args }) {
    if (!args.test) throw new UsageError("shoot mail needs --test (send a test message with the current [mail] settings)");
    const cfg = loadConfig(resolveConfigPath(args.config, process.env));
    for (const line of await mailTest(cfg, { env: process.env, hostname: os.hostname() })) console.log(escapeLines(line));
    return 0;
  },
});
