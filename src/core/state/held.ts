/**
 * The copies a directory holds, as the retention function sees them: an id, when the copy was
 * made and whether it is verified, oldest first. Where "made" comes from (its source of truth):
 *
 * - On the server, an archive was made when its run wrote it: the `made` time in the header of
 *   its file list (.list), which the run writes with the archive; for an archive made before
 *   lists carried it, the archive's modification time, which the run sets to the same time.
 * - On the backup host, the modification time of the copy: rsync keeps the time the server
 *   gave the archive, never later than when this host verified the copy (the time of the
 *   .md5 file it writes then). A server's clock or a hostile server cannot date a copy later
 *   than the backup host saw it.
 *
 * A name's time is used by neither: names are only ever sorted.
 */
import fs from "node:fs";
import path from "node:path";
import { CHECKSUM_SUFFIX, LIST_SUFFIX, sortArchives } from "./naming.ts";
import { readDirOrEmpty } from "./fsutil.ts";
import { decideRetention, describeRules, type CopyDecision, type RetainedCopy, type RetentionRules } from "./retention.ts";
import { listHeaderOf, type ListHeader } from "../scan/scan.ts";
import { archivesNeeded } from "./chain.ts";

/** A server archive's list header; undefined when none can be read, or a link stands in its place. */
function headerOf(file: string): ListHeader | undefined {
  try {
    return listHeaderOf(file, true);
  } catch {
    return undefined;
  }
}

function mtimeMs(file: string): number {
  try {
    return fs.lstatSync(file).mtimeMs;
  } catch {
    return NaN;
  }
}

/** When a server archive was made: its list's `made`, else its modification time. */
export function serverMadeMs(dir: string, name: string): number {
  const made = headerOf(path.join(dir, name + LIST_SUFFIX))?.made;
  const t = typeof made === "string" ? Date.parse(made) : NaN;
  return Number.isFinite(t) ? t : mtimeMs(path.join(dir, name));
}

/** The archives of `prefix` in a server's backup_dir, oldest first; verified when their .md5 is there. */
export function serverCopies(dir: string, prefix: string): RetainedCopy[] {
  const names = readDirOrEmpty(dir);
  const present = new Set(names);
  // an incremental archive needs its chain (chain.ts): retention keeps it with the archive
  const sorted = sortArchives(names, prefix);
  return sorted.map((n) => ({ id: n, madeMs: serverMadeMs(dir, n), verified: present.has(n + CHECKSUM_SUFFIX), needs: archivesNeeded(n, sorted).slice(0, -1) }));
}

/** When a copy on the backup host was made: its modification time, never later than its verification. */
export function clientMadeMs(dir: string, name: string): number {
  const made = mtimeMs(path.join(dir, name));
  const verified = mtimeMs(path.join(dir, name + CHECKSUM_SUFFIX));
  return Number.isFinite(verified) ? Math.min(made, verified) : made;
}

/** Verified copies in a source's directory, in the order given (oldest first). */
export function clientCopies(dir: string, verifiedOldestFirst: readonly string[]): RetainedCopy[] {
  return verifiedOldestFirst.map((n) => ({ id: n, madeMs: clientMadeMs(dir, n), verified: true, needs: archivesNeeded(n, verifiedOldestFirst).slice(0, -1) }));
}

/** What a retention pass removed, and why each one went: for the status record. */
export interface PruneRecord {
  rules: string;
  removed: Array<{ file: string; made: string }>;
}

/** Decide, with the host's time zone; the record of what goes. */
export function planRemoval(copies: readonly RetainedCopy[], rules: RetentionRules): { decisions: CopyDecision[]; record: PruneRecord } {
  const decisions = decideRetention(copies, rules);
  const removed = decisions.filter((d) => !d.keep).map((d) => ({ file: d.id, made: isoOrUnknown(copies.find((c) => c.id === d.id)!.madeMs) }));
  return { decisions, record: { rules: describeRules(rules), removed } };
}

export function isoOrUnknown(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : "unknown";
}

/** One line of a removal record: "web1-….tar.gz (made 2024-03-01T02:00:00Z)". */
export function describeRemoved(r: PruneRecord): string {
  return `${r.removed.map((x) => `${x.file} (made ${x.made})`).join(", ")}: no rule of ${r.rules} keeps ${r.removed.length === 1 ? "it" : "them"}`;
}
