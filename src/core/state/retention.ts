/**
 * Which copies to keep: pure, shared by the server's rotation and the client's. The newest
 * copy is never a candidate, whatever `keep` says, so a failed newer run can never cost the
 * last good copy.
 */

/** The names to remove from `namesOldestFirst` so that `keep` remain (at least one, always the newest). */
export function toRemove(namesOldestFirst: readonly string[], keep: number): string[] {
  const k = Math.max(1, Math.floor(Number.isFinite(keep) ? keep : 1));
  return namesOldestFirst.slice(0, Math.max(0, namesOldestFirst.length - k));
}
