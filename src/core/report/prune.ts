/**
 * `shoot prune --dry-run`: every copy this host holds, with the rule that keeps it or
 * "removed", as the next run would decide (same function, same times, same order).
 */
import path from "node:path";
import type { Config } from "../common/config.ts";
import { ShootError } from "../common/errors.ts";
import { verifiedCopies } from "../client/client.ts";
import { clientCopies, serverCopies } from "../state/held.ts";
import { decideRetention, describeReason, describeRules, localTimeZone, type RetainedCopy, type RetentionRules } from "../state/retention.ts";

export interface PrunedCopy {
  file: string;
  /** When it was made, as its source of truth records it (ISO 8601), or "unknown". */
  made: string;
  keep: boolean;
  /** The rules that keep it, in words; empty when it would be removed. */
  reasons: string[];
}

export interface PruneGroup {
  role: "server" | "client";
  /** The server's name, or the source's. */
  owner: string;
  dir: string;
  rules: string;
  copies: PrunedCopy[];
}

function group(role: PruneGroup["role"], owner: string, dir: string, rules: RetentionRules, copies: RetainedCopy[], zone: string): PruneGroup {
  const decisions = decideRetention(copies, rules, { timeZone: zone });
  return {
    role, owner, dir, rules: describeRules(rules),
    copies: decisions.map((d, i) => ({
      file: d.id,
      made: Number.isFinite(copies[i]!.madeMs) ? new Date(copies[i]!.madeMs).toISOString() : "unknown",
      keep: d.keep,
      reasons: d.reasons.map(describeReason),
    })),
  };
}

/** What the rules keep of every copy held here: the server's archives, then each source's copies (or only the sources named). */
export function prunePlan(cfg: Config, only: readonly string[] = [], zone = localTimeZone()): PruneGroup[] {
  const out: PruneGroup[] = [];
  if (cfg.server && only.length === 0) out.push(group("server", cfg.server.name, cfg.server.backup_dir, cfg.server.retention, serverCopies(cfg.server.backup_dir, cfg.server.name), zone));
  if (cfg.client) {
    const known = cfg.client.sources.map((s) => s.name);
    const unknown = only.filter((n) => !known.includes(n));
    if (unknown.length) throw new ShootError("SOURCE_UNKNOWN", `unknown source ${unknown.map((n) => JSON.stringify(n)).join(", ")} (configured: ${known.join(", ")})`);
    for (const s of cfg.client.sources) {
      if (only.length && !only.includes(s.name)) continue;
      const dir = path.join(cfg.client.dest_dir, s.name);
      out.push(group("client", s.name, dir, s.retention ?? cfg.client.retention, clientCopies(dir, verifiedCopies(dir)), zone));
    }
  } else if (only.length) {
    throw new ShootError("SOURCE_UNKNOWN", "sources are named only on a backup host ([client])");
  }
  return out;
}

/** The plan as lines for a terminal: times in the zone the periods are taken in. */
export function renderPlan(groups: readonly PruneGroup[], zone = localTimeZone()): string[] {
  const local = (iso: string) => (iso === "unknown" ? iso : new Date(iso).toLocaleString("sv-SE", { timeZone: zone }));
  const lines: string[] = [];
  for (const g of groups) {
    const removed = g.copies.filter((c) => !c.keep).length;
    lines.push(`${g.role === "server" ? "server" : "source"} ${g.owner} (${g.dir}): ${g.rules}; ${g.copies.length} held, ${removed} would be removed`);
    const width = Math.max(0, ...g.copies.map((c) => c.file.length));
    for (const c of g.copies) lines.push(`  ${c.file.padEnd(width)}  ${local(c.made)}  ${c.keep ? `kept: ${c.reasons.join(", ")}` : "removed"}`);
  }
  lines.push(`times in ${zone}, the zone periods are taken in`);
  return lines;
}
