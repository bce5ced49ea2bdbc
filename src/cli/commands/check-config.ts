import { defineCommand } from "citty";
import path from "node:path";
import { loadConfig, resolveConfigPath, type Config } from "../../core/common/config.ts";
import { ShootError } from "../../core/common/errors.ts";
import { spoolDirs } from "../../core/report/notify.ts";
import { exposedSecret, unsafeDir } from "../../core/state/strict-modes.ts";
import { configArgs } from "../args.ts";

/** Directories the runs would refuse, and a password file others may read (those that exist). */
function unsafePaths(cfg: Config): string[] {
  const dirs: Array<[string, string]> = [];
  if (cfg.server) dirs.push(["backup_dir", cfg.server.backup_dir]);
  if (cfg.client) {
    dirs.push(["dest_dir", cfg.client.dest_dir]);
    for (const s of cfg.client.sources) dirs.push([`the copies' directory of ${s.name}`, path.join(cfg.client.dest_dir, s.name)]);
  }
  if (cfg.mail && cfg.mail.when !== "never") for (const d of spoolDirs(cfg)) dirs.push(["the mail spool", d]);
  const problems = dirs.map(([what, dir]) => unsafeDir(dir, what));
  if (cfg.mail?.password_file) problems.push(exposedSecret(cfg.mail.password_file, "password_file"));
  return problems.filter((p): p is string => p !== undefined);
}

export default defineCommand({
  meta: { name: "check-config", description: "Validate the configuration file, check the modes of the directories and password file it names, and print what it resolves to" },
  args: { ...configArgs, json: { type: "boolean", description: "Print the resolved configuration as JSON" } },
  run({ args }) {
    const file = resolveConfigPath(args.config, process.env);
    const cfg = loadConfig(file);
    const unsafe = unsafePaths(cfg);
    if (unsafe.length > 0) throw new ShootError("UNSAFE_PERMISSIONS", `${file} is valid, but:\n${unsafe.map((p) => `  ${p}`).join("\n")}`);
    if (args.json) console.log(JSON.stringify(cfg, null, 2));
    else {
      const parts = [cfg.server && "[server]", cfg.client && `[client] with ${cfg.client.sources.length} source(s)`, cfg.mail && "[mail]"].filter(Boolean);
      console.log(`${file}: valid (${parts.join(", ") || "no sections"})`);
    }
    return 0;
  },
});
