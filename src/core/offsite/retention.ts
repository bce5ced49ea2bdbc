/**
 * Which copies a store keeps. Today a count per source (the store's `keep`, else the
 * client's), through one small interface, so that other rules can take its place. The newest
 * copy is never a candidate.
 */
import { toRemove } from "../state/retention.ts";
import { sparingChains } from "../state/chain.ts";

export interface StoreRetention {
  /** Which of these archive names (oldest first, all verified) may go. */
  removable(namesOldestFirst: readonly string[], now: Date): string[];
  describe(): string;
}

export function keepCount(keep: number): StoreRetention {
  return {
    // never a copy a kept one needs (an incremental archive's chain: state/chain.ts)
    removable: (names) => sparingChains(names, toRemove(names, keep)),
    describe: () => `keep ${keep}`,
  };
}
