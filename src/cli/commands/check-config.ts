import { defineCommand } from "citty";
import { loadConfig, resolveConfigPath } from "../../core/common/config.ts";
import { configWarnings, resolvedText } from "../../core/setup/check.ts";
import { configArgs } from "../args.ts";

export default defineCommand({
  meta: {
    name: "check-config",
    description: "Validate the configuration file, print what it resolves to and what a run would trip over",
  },
  args: { ...configArgs, json: { type: "boolean", description: "Print the resolved configuration as JSON" } },
  run({ args }) {
    const file = resolveConfigPath(args.config, process.env);
    const cfg = loadConfig(file);
    if (args.json) {
      console.log(JSON.stringify(cfg, null, 2));
      return 0;
    }
    const sources = cfg.client && `[client] with ${cfg.client.sources.length} source(s)`;
    const parts = [cfg.server && "[server]", sources, cfg.mail && "[mail]"].filter(Boolean);
    const warnings = configWarnings(cfg);
    console.log(`${file}: valid (${parts.join(", ") || "no sections"})`);
    console.log(`\nAs shoot reads it, defaults filled in:\n\n${resolvedText(cfg)}`);
    if (warnings.length) console.log(`\n${warnings.map((w) => `warning: ${w}`).join("\n")}`);
    return 0;
  },
});
