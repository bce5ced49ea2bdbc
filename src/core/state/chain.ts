/**
 * Restore points and the archives each one needs, from archive names alone (pure). A full
 * archive (level 0) is a restore point by itself. An incremental archive of level n holds what
 * changed since its base, the archive of level n-1 it was made against, so restoring it needs
 * its base's restore point first: the chain full, level 1, …, level n.
 *
 * The base of a level-n archive is the newest archive of the same prefix before it whose level
 * is n-1. The server keeps this true: a new archive always sorts after every other, a "chain"
 * incremental is made against the newest archive, a "differential" one (always level 1)
 * against the newest full, and whenever that base or its own chain is missing or damaged the
 * run makes a full instead. So the client, which holds no file lists, and retention, which
 * must never remove an archive a kept restore point needs, can tell a chain from the names.
 * The file lists record each archive's base as well, and readers that have them check both.
 */
import { parseArchiveName, sortArchives } from "./naming.ts";

/** The level an archive name says (0 for a full), or undefined for a name that is not an archive's. */
export function levelOf(name: string): number | undefined {
  return parseArchiveName(name)?.level;
}

export type Chain = { ok: true; chain: string[] } | { ok: false; found: string[]; missing: string };

/**
 * The archives restore point `point` needs, oldest first and ending with `point` itself, among
 * `names` (any order; other prefixes are ignored). When a link cannot be found, `found` holds
 * the links that were (oldest first, ending with `point`) and `missing` says which one is not
 * there.
 */
export function chainOf(point: string, names: readonly string[]): Chain {
  const p = parseArchiveName(point);
  if (!p) return { ok: false, found: [], missing: `${point} is not an archive name` };
  const sorted = sortArchives(names, p.prefix);
  let at = sorted.indexOf(point);
  if (at < 0) return { ok: false, found: [], missing: `${point} itself` };
  const chain = [point];
  for (let want = p.level - 1; want >= 0; want--) {
    let i = at - 1;
    while (i >= 0 && parseArchiveName(sorted[i]!)!.level !== want) i--;
    if (i < 0) return { ok: false, found: chain.reverse(), missing: `the ${want === 0 ? "full archive" : `level-${want} archive`} before ${sorted[at]}` };
    chain.push(sorted[i]!);
    at = i;
  }
  return { ok: true, chain: chain.reverse() };
}

/**
 * Which archives restore point `point` needs (itself included), for retention: every link of
 * its chain that is there, even when the chain is broken (what is left is never made worse).
 */
export function archivesNeeded(point: string, names: readonly string[]): string[] {
  const c = chainOf(point, names);
  return c.ok ? c.chain : c.found;
}

/**
 * `remove` (names retention chose, among `names`) less every archive that a restore point
 * kept (a name of `names` not in `remove`) needs.
 */
export function sparingChains(names: readonly string[], remove: readonly string[]): string[] {
  const removing = new Set(remove);
  const needed = new Set<string>();
  for (const kept of names) {
    if (removing.has(kept) || parseArchiveName(kept) === undefined) continue;
    for (const n of archivesNeeded(kept, names)) needed.add(n);
  }
  return remove.filter((n) => !needed.has(n));
}
