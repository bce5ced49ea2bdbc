import { defineCommand } from "citty";
import path from "node:path";
import { loadConfig, resolveConfigPath, type Config } from "../../core/common/config.ts";
import { ShootError } from "../../core/common/errors.ts";
import { spoolDirs } from "../../core/report/notify.ts";
import { configWarnings, resolvedText } from "../../core/setup/check.ts";
import { exposedSecret, unsafeDir } from "../../core/state/strict-modes.ts";
import { configArgs } from "../args.ts";

/** Directories the runs would refuse, and a password file others may read (those that exist). */
function unsafePaths(cfg: Config): string[] {
  const dirs: Array<[string, string]> = [];
  if (cfg.server) dirs.push(["backup_dir", cfg.server.backup_dir]);
  if (cfg.client) {
    dirs.push(["dest_dir", cfg.client.dest_dir]);
    for (const s of cfg.client.sources) {
      dirs.push([`the copies' directory of ${s.name}`, path.join(cfg.client.dest_dir, s.name)]);
    }
  }
  if (cfg.mail && cfg.mail.when !== "never") for (const d of spoolDirs(cfg)) dirs.push(["the mail spool", d]);
  const problems = dirs.map(([what, dir]) => unsafeDir(dir, what));
  if (cfg.mail?.password_file) problems.push(exposedSecret(cfg.mail.password_file, "password_file"));
  return problems.filter((p): p is string => p !== undefined);
}

export default defineCommand({
  meta: {
    name: "check-config",
    description: "Validate the configuration, check the modes of what it names, show what it resolves to and warns of",
  },
  args: { ...configArgs, json: { type: "boolean", description: "Print the resolved configuration as JSON" } },
  run({ args }) {
    const file = resolveConfigPath(args.config, process.env);
    const cfg = loadConfig(file);
    const unsafe = unsafePaths(cfg);
    if (unsafe.length > 0) {
      throw new ShootError("UNSAFE_PERMISSIONS", `${file} is valid, but:\n${unsafe.map((p) => `  ${p}`).join("\n")}`);
    }
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
