/**
 * What `shoot check-config` says beyond "valid": the file as shoot resolves it (every key of
 * the sections present, defaults filled in, written as the file would write them), and what a
 * run would trip over that the file's syntax cannot show: a source, a directory, a key or a
 * known_hosts file that is not there.
 */
import fs from "node:fs";
import { code } from "../common/codes.ts";
import { KEYS, type Config, type KeyDef, type Section } from "../common/config.ts";

const SIZE_STEPS: Array<[string, number]> = [
  ["TiB", 1024 ** 4], ["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024],
];
const DURATION_STEPS: Array<[string, number]> = [
  ["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000], ["ms", 1],
];

/** A size as the file would write it: in the largest unit that divides it ("1GiB"), else in bytes. */
export function sizeText(n: number): string {
  for (const [unit, bytes] of SIZE_STEPS) if (n > 0 && n % bytes === 0) return `"${n / bytes}${unit}"`;
  return String(n);
}

/** A duration as the file would write it, in the largest unit that divides it: "6h", "26h", "90s". */
export function durationText(ms: number): string {
  const [unit, size] = DURATION_STEPS.find(([, size]) => ms % size === 0)!;
  return `"${ms / size}${ms === 0 ? "s" : unit}"`;
}

/** A value as TOML, or undefined for a value shoot keeps in a shape of its own the file does not write. */
function valueText(d: KeyDef, v: unknown): string | undefined {
  if (d.type === "every" && typeof v === "object" && v !== null) {
    const e = v as { ms?: number; count?: number };
    return e.ms !== undefined ? durationText(e.ms) : e.count !== undefined ? String(e.count) : undefined;
  }
  if (typeof v === "object" && v !== null && !Array.isArray(v)) return undefined;
  if (d.type === "size" && typeof v === "number") return sizeText(v);
  if (d.type === "duration" && typeof v === "number") return durationText(v);
  if (Array.isArray(v)) return `[${v.map((x) => JSON.stringify(x)).join(", ")}]`;
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

function block(header: string, section: Section, values: object): string[] {
  const out = [header];
  for (const d of KEYS.filter((k) => k.section === section)) {
    const v = (values as Record<string, unknown>)[d.key];
    const text = v === undefined ? undefined : valueText(d, v);
    if (v === undefined) out.push(`# ${d.key}: not set (${d.default ?? "none"})`);
    else out.push(text === undefined ? `# ${d.key}: as the file gives it` : `${d.key} = ${text}`);
  }
  return out;
}

/** The configuration as shoot resolved it, in TOML: what each run will use. */
export function resolvedText(cfg: Config): string {
  const out: string[][] = [];
  if (cfg.server) out.push(block("[server]", "server", cfg.server));
  if (cfg.client) {
    const { sources, ...client } = cfg.client;
    out.push(block("[client]", "client", client));
    for (const s of sources) out.push(block("[[client.source]]", "client.source", s));
  }
  if (cfg.mail) out.push(block("[mail]", "mail", cfg.mail));
  if (cfg.monitor) out.push(block("[monitor]", "monitor", cfg.monitor));
  return out.map((b) => b.join("\n")).join("\n\n");
}

/** What a run would trip over: things the configuration names that are not there. */
export function configWarnings(cfg: Config, exists: (p: string) => boolean = fs.existsSync): string[] {
  const out: string[] = [];
  const fails = (name: Parameters<typeof code>[0]) => `${code(name)} ${name}`;
  if (cfg.server) {
    for (const s of cfg.server.sources.filter((x) => !exists(x))) {
      out.push(`the source ${s} does not exist (yet): a run fails with ${fails("SOURCE_MISSING")} until it does`);
    }
    const dir = cfg.server.backup_dir;
    if (!exists(dir)) {
      out.push(`backup_dir ${dir} does not exist: a run fails with ${fails("BACKUP_DIR_UNUSABLE")}; ` +
        `create it: install -d -m 700 ${dir}`);
    }
  }
  const kh = cfg.client?.known_hosts;
  if (kh && !exists(kh) && !cfg.client?.accept_new_host_key) {
    out.push(`known_hosts ${kh} does not exist: every pull over ssh fails with ${fails("HOST_KEY_FAILED")} ` +
      "until it holds the servers' keys (ssh-keyscan)");
  }
  for (const s of cfg.client?.sources ?? []) {
    if (s.identity && !exists(s.identity)) {
      out.push(`[[client.source]] ${s.name}: identity ${s.identity} does not exist: ` +
        `its pulls fail with ${fails("STATUS_PULL_FAILED")} (ssh-keygen makes it)`);
    }
  }
  const pw = cfg.mail?.password_file;
  if (pw && !exists(pw)) {
    out.push(`[mail] password_file ${pw} does not exist: reports cannot be mailed (${fails("MAIL_FAILED")}); ` +
      "they wait in the spool");
  }
  return out;
}
