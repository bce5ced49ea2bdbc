import { defineCommand } from "citty";
import { loadConfig, resolveConfigPath } from "../../core/common/config.ts";
import { configArgs } from "../args.ts";

export default defineCommand({
  meta: { name: "check-config", description: "Validate the configuration file and print what it resolves to" },
  args: { ...configArgs, json: { type: "boolean", description: "Print the resolved configuration as JSON" } },
  run({ args }) {
    const file = resolveConfigPath(args.config, process.env);
    const cfg = loadConfig(file);
    if (args.json) console.log(JSON.stringify(cfg, null, 2));
    else {
      const parts = [cfg.server && "[server]", cfg.client && `[client] with ${cfg.client.sources.length} source(s)`, cfg.mail && "[mail]"].filter(Boolean);
      console.log(`${file}: valid (${parts.join(", ") || "no sections"})`);
    }
    return 0;
  },
});
