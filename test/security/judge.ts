/**
 * What the differential suite and the fuzz run hold every restore to: the way it differs from
 * GNU tar's extraction of the same archive, and what a run of the CLI must never show.
 */
import { CODES } from "../../src/core/common/codes.ts";
import type { Restored } from "../helpers/sandbox.ts";

export type User = "root" | "nobody";

/** Every code the table names, but INTERNAL_ERROR. */
export const NAMED: ReadonlySet<number> = new Set(CODES.filter((c) => c.code !== 1).map((c) => c.code));

/**
 * The ways shoot's restore differs from GNU tar's extraction of the same archive by the same
 * user: a name shoot made that GNU tar did not, or made otherwise (type, content, mode, time,
 * link target, and as root the owner); and when shoot said OK, a name GNU tar made that shoot
 * did not. A directory's time counts only where GNU tar set it from the archive (before
 * `since`), not one it made on the way.
 */
export function differences(mine: Map<string, Restored>, theirs: Map<string, Restored>, code: number, user: User, since: bigint): string[] {
  const out: string[] = [];
  for (const [p, m] of mine) {
    const t = theirs.get(p);
    if (!t) {
      out.push(`${JSON.stringify(p)}: made by shoot, not by GNU tar`);
      continue;
    }
    const fields: Array<keyof Restored> = ["type"];
    if (m.type === "file") fields.push("sha256", "size", "mode", "mtimeNs");
    if (m.type === "dir") fields.push("mode");
    if (m.type === "dir" && t.mtimeNs < since) fields.push("mtimeNs");
    if (m.type === "symlink") fields.push("link");
    if (user === "root" && m.type !== "symlink") fields.push("uid", "gid");
    for (const f of fields) if (m[f] !== t[f]) out.push(`${JSON.stringify(p)}: ${f} ${String(m[f])} here, ${String(t[f])} by GNU tar`);
  }
  if (code === 0) for (const p of theirs.keys()) if (!mine.has(p)) out.push(`${JSON.stringify(p)}: made by GNU tar, not by shoot, which said OK`);
  return out;
}

export function sameTrees(a: Map<string, Restored>, b: Map<string, Restored>): boolean {
  if (a.size !== b.size) return false;
  for (const [p, x] of a) {
    const y = b.get(p);
    if (!y || x.type !== y.type || x.sha256 !== y.sha256 || x.link !== y.link) return false;
  }
  return true;
}

/** What a CLI run must never show: exit 1 or a code the table does not name, an internal error, a stack trace. */
export function crashes(r: { code: number; stderr: string }): string[] {
  const out: string[] = [];
  if (r.code === 1 || !NAMED.has(r.code)) out.push(`exit ${r.code}, not a named code`);
  if (/internal error/i.test(r.stderr)) out.push("an internal error");
  if (/^\s+at .+[:(]\d+/m.test(r.stderr)) out.push("a stack trace");
  return out;
}
