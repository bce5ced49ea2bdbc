import { defineCommand } from "citty";
import { loadConfig, resolveConfigPath } from "../../core/common/config.ts";
import { UsageError } from "../../core/common/errors.ts";
import { prunePlan, renderPlan } from "../../core/report/prune.ts";
import { configArgs } from "../args.ts";

// variadic: any number of source names (default: everything held)
const meta = { name: "prune", description: "Show what the keep rules keep of every copy held here, and why (--dry-run); runs apply the rules", variadic: true };

export default defineCommand({
  meta,
  args: {
    ...configArgs,
    "dry-run": { type: "boolean", description: "List every copy with the rule that keeps it, or \"removed\"; remove nothing" },
    json: { type: "boolean", description: "Print the plan as JSON" },
    source: { type: "positional", required: false, description: "Sources to show (backup host; default: all)", valueHint: "SOURCE…" },
  },
  run({ args }) {
    // removal happens in runs, which hold the lock and record what they removed
    if (!args["dry-run"]) throw new UsageError("prune only shows what the keep rules keep: give --dry-run (server and client runs remove, and record it)");
    const plan = prunePlan(loadConfig(resolveConfigPath(args.config, process.env)), args._);
    console.log(args.json ? JSON.stringify(plan, null, 2) : renderPlan(plan).join("\n"));
    return 0;
  },
});
