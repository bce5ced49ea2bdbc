import fs from "node:fs";
import { defineCommand } from "citty";
import { codeName } from "../../core/common/codes.ts";
import { loadConfig, requireClient, resolveConfigPath, type Config, type OffsiteConfig } from "../../core/common/config.ts";
import { systemClock } from "../../core/common/deps.ts";
import { ShootError, UsageError, errorMessage } from "../../core/common/errors.ts";
import { offsiteList, offsitePrune, offsitePush, offsiteRestore, offsiteVerify, selectStores, type OffsiteReport } from "../../core/offsite/ops.ts";
import { openStore } from "../../core/offsite/store.ts";
import { createProgress } from "../../core/report/progress.ts";
import { configArgs, quietArgs } from "../args.ts";
import { cliLog } from "../log.ts";
import { abortOnSignals } from "../signals.ts";

// variadic: source names, or for restore the archive and the paths in it
const meta = { name: "offsite", description: "Copies in S3-compatible object storage: push, list, verify [--deep], restore ARCHIVE --to DIR, prune", variadic: true };

const ACTIONS = ["push", "list", "verify", "restore", "prune"] as const;

/** age identities (AGE-SECRET-KEY-1…) from a file, as age -i reads them. */
function readIdentities(file: string | undefined): string[] | undefined {
  if (!file) return undefined;
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ShootError("CONFIG_INVALID", `--identity ${file} cannot be read: ${errorMessage(e)}`);
  }
  const ids = text.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("AGE-SECRET-KEY-"));
  if (ids.length === 0) throw new ShootError("CONFIG_INVALID", `--identity ${file} holds no age identity (AGE-SECRET-KEY-1…)`);
  return ids;
}

function printReport(action: string, r: OffsiteReport): void {
  for (const s of r.stores) {
    console.log(`store ${s.store}: ${s.code === 0 ? "OK" : `FAILED ${s.code} ${codeName(s.code)}`}`);
    for (const l of s.lines) console.log(`  ${l}`);
  }
  console.log(`shoot offsite ${action}: ${r.code === 0 ? "OK" : `FAILED ${r.code} ${codeName(r.code)}`}`);
}

/** A store from the command line alone (restoring on a host with nothing but the binary and the credentials). */
function storeFromFlags(args: Record<string, unknown>): OffsiteConfig {
  if (!args.bucket) throw new UsageError("--endpoint needs --bucket");
  return {
    name: "command-line", endpoint: String(args.endpoint), bucket: String(args.bucket), region: String(args.region ?? "us-east-1"),
    prefix: String(args.prefix ?? ""), part_size: 8 * 1024 * 1024, concurrency: 4, timeout: 120_000,
  };
}

export default defineCommand({
  meta,
  args: {
    ...configArgs,
    ...quietArgs,
    store: { type: "string", description: "Only this store (a name of [[offsite]]; several separated by commas)", valueHint: "NAME" },
    deep: { type: "boolean", description: "verify: read every object back whole and check its tar stream" },
    identity: { type: "string", description: "restore, verify --deep: age identity file for encrypted copies", valueHint: "FILE" },
    to: { type: "string", description: "restore: directory to restore into", valueHint: "DIR" },
    source: { type: "string", description: "restore: the source whose folder holds the archive", valueHint: "NAME" },
    force: { type: "boolean", description: "restore: overwrite files that exist in DIR" },
    "allow-outside-links": { type: "boolean", description: "restore: also create symbolic links that point outside DIR" },
    "dry-run": { type: "boolean", description: "prune: say what would be removed, remove nothing" },
    endpoint: { type: "string", description: "restore without a configuration: the store's URL (with --bucket; keys from $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY)", valueHint: "URL" },
    bucket: { type: "string", description: "with --endpoint: the bucket", valueHint: "NAME" },
    region: { type: "string", description: "with --endpoint: the region (default us-east-1)", valueHint: "REGION" },
    prefix: { type: "string", description: "with --endpoint: the store's key prefix", valueHint: "PREFIX" },
    json: { type: "boolean", description: "Print the result as JSON" },
    action: { type: "positional", description: `One of ${ACTIONS.join(", ")}`, valueHint: "ACTION" },
    name: { type: "positional", required: false, description: "Sources (push, list, verify, prune), or ARCHIVE [PATH…] (restore)", valueHint: "NAME…" },
  },
  async run({ args }) {
    const action = args.action as (typeof ACTIONS)[number];
    if (!ACTIONS.includes(action)) throw new UsageError(`offsite needs an action: ${ACTIONS.join(", ")}`);
    const rest = args._.slice(1);
    const names = args.store ? String(args.store).split(",").filter(Boolean) : undefined;
    const signals = abortOnSignals();
    const deps = { env: process.env, clock: systemClock, log: cliLog(args.quiet), signal: signals.signal };
    try {
      if (action === "restore") return await restore(args, rest, names, deps);
      const config = loadConfig(resolveConfigPath(args.config, process.env));
      const client = requireClient(config);
      const stores = selectStores(config, names);
      const identities = readIdentities(args.identity);
      const report = action === "push" ? await offsitePush(config, client, stores, deps, rest)
        : action === "list" ? await offsiteList(client, stores, deps, rest)
        : action === "verify" ? await offsiteVerify(client, stores, deps, { only: rest, deep: args.deep, identities })
        : await offsitePrune(client, stores, deps, { only: rest, dryRun: args["dry-run"] });
      if (args.json) console.log(JSON.stringify(report, null, 2));
      else printReport(action, report);
      return report.code;
    } finally {
      signals.dispose();
    }
  },
});

async function restore(args: Record<string, any>, rest: string[], names: string[] | undefined, deps: { env: NodeJS.ProcessEnv; signal: AbortSignal }): Promise<number> {
  const [archive, ...paths] = rest;
  if (!archive) throw new UsageError("offsite restore needs the archive: shoot offsite restore ARCHIVE --to DIR [PATH…]");
  if (!args.to) throw new UsageError("offsite restore needs --to DIR: the directory to restore into");
  let config: Config | undefined;
  let cfg: OffsiteConfig;
  if (args.endpoint) cfg = storeFromFlags(args);
  else {
    config = loadConfig(resolveConfigPath(args.config, process.env));
    const stores = selectStores(config, names);
    if (stores.length > 1 && !names) throw new UsageError(`several stores are configured (${stores.map((s) => s.name).join(", ")}): name one with --store`);
    cfg = stores[0]!;
  }
  const store = openStore(cfg, deps.env);
  const result = await offsiteRestore(store, config?.client, archive, {
    to: args.to, paths, force: args.force, allowOutsideLinks: args["allow-outside-links"], source: args.source,
    identities: readIdentities(args.identity), signal: deps.signal,
    progressFor: (label, total) => createProgress({ label: `${label} ${archive} (from ${cfg.name})`, total, quiet: args.quiet }),
  });
  if (args.json) console.log(JSON.stringify(result, null, 2));
  else console.log(`shoot offsite restore: ${result.code === 0 ? "OK" : `FAILED ${result.code} ${codeName(result.code)}`}: ${result.message}`);
  return result.code;
}
