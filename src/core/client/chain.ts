/**
 * The archives a pulled restore point needs before it (docs/incremental.md), as the server's
 * final record lists them: judged like the archive itself, since server.status is untrusted.
 * An incremental archive is useless alone, so the client pulls each link it does not hold
 * before the archive, and keeps every link a kept copy needs (state/chain.ts).
 */
import { levelOf } from "../state/chain.ts";
import { isArchiveName, parseArchiveName } from "../state/naming.ts";
import type { ArchiveInfo } from "../state/status.ts";

/** The largest size a record may claim for an archive, as for the newest one (client.ts). */
const MAX_ARCHIVE_SIZE = 2 ** 50;

export type ChainVerdict = { ok: true; links: ArchiveInfo[]; lists: boolean } | { ok: false; why: string };

function shown(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
  return JSON.stringify(s.length > 100 ? `${s.slice(0, 100)}…` : s);
}

/** One link of the chain, checked as judgeStatus checks the archive; a fresh object with only the checked fields. */
function judgeLink(x: unknown, i: number, a: ArchiveInfo): ArchiveInfo | string {
  if (typeof x !== "object" || x === null) return `link ${i + 1} of the chain is not a record`;
  const l = x as Partial<Record<keyof ArchiveInfo, unknown>>;
  if (typeof l.file !== "string" || !isArchiveName(l.file)) return `link ${i + 1} of the chain names ${shown(l.file)}, which is not a plain file name of the archive pattern`;
  const p = parseArchiveName(l.file)!;
  const own = parseArchiveName(a.file)!;
  if (p.prefix !== own.prefix) return `link ${l.file} is not an archive of ${own.prefix}`;
  if (p.level !== i) return `link ${i + 1} of the chain, ${l.file}, is not of level ${i}`;
  if (p.key >= own.key) return `link ${l.file} is not older than ${a.file}`;
  if (typeof l.size !== "number" || !Number.isSafeInteger(l.size) || l.size <= 0 || l.size > MAX_ARCHIVE_SIZE) return `link ${l.file} has an impossible size (${shown(l.size)})`;
  if (typeof l.md5 !== "string" || !/^[0-9a-f]{32}$/.test(l.md5)) return `link ${l.file} has a checksum that is not 32 hex digits`;
  if (l.sha256 !== undefined && (typeof l.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(l.sha256))) return `link ${l.file} has a sha256 that is not 64 hex digits`;
  return { file: l.file, size: l.size, md5: l.md5, ...(l.sha256 ? { sha256: l.sha256 as string } : {}) };
}

/**
 * The links archive `a` (already judged) needs before it, oldest first, from its final record's
 * `data`; and whether its file lists are needed too (a restore point of several archives is put
 * together from their lists, so every archive of a server with incremental archives on needs
 * one). A level-n archive needs exactly n links, of levels 0 to n-1, each older than the next.
 */
export function judgeChain(data: unknown, a: ArchiveInfo): ChainVerdict {
  const level = levelOf(a.file) ?? 0;
  const d = typeof data === "object" && data !== null ? (data as Record<string, unknown>) : {};
  if (d.level !== undefined && d.level !== level) return { ok: false, why: `the final record gives ${a.file} the level ${shown(d.level)}; its name says ${level}` };
  if (level === 0) return { ok: true, links: [], lists: d.level === 0 };
  if (!Array.isArray(d.chain)) return { ok: false, why: `${a.file} is an incremental archive (level ${level}), but the final record lists no chain of archives it needs` };
  if (d.chain.length !== level) return { ok: false, why: `${a.file} is of level ${level}, so it needs ${level} archive(s) before it; the final record lists ${d.chain.length}` };
  const links: ArchiveInfo[] = [];
  for (const [i, x] of d.chain.entries()) {
    const link = judgeLink(x, i, a);
    if (typeof link === "string") return { ok: false, why: link };
    if (i > 0 && parseArchiveName(link.file)!.key <= parseArchiveName(links[i - 1]!.file)!.key) return { ok: false, why: `link ${link.file} is not newer than ${links[i - 1]!.file}` };
    links.push(link);
  }
  if (d.base !== links.at(-1)!.file) return { ok: false, why: `the final record gives ${a.file} the base ${shown(d.base)}, but its chain ends with ${links.at(-1)!.file}` };
  return { ok: true, links, lists: true };
}
