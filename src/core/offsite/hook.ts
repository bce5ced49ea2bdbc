/**
 * The client's offsite step: after a source's current copy is verified and in place, send it
 * to each store that takes the source. One copy is sent at a time, whatever the number of
 * sources pulled at once, so memory stays within one upload's. A store's failure is its own
 * code beside the pull's; it never changes or undoes the pull.
 */
import path from "node:path";
import { code, codeName } from "../common/codes.ts";
import type { OffsiteConfig } from "../common/config.ts";
import type { Clock, Log } from "../common/deps.ts";
import { errorMessage } from "../common/errors.ts";
import type { AfterVerified, StoreOutcome, VerifiedCopyRef } from "../common/outcome.ts";
import { LIST_SUFFIX } from "../state/naming.ts";
import { describePush, pushCopy, type HeldCopy, type PushResult } from "./push.ts";
import { verifiedAt } from "./ops.ts";
import { failureCode, openStore, sourcePrefix, storeTakes, type Store } from "./store.ts";
import { abortAbandoned } from "./upload.ts";

export interface HookDeps {
  env: Record<string, string | undefined>;
  clock: Clock;
  log: Log;
  signal?: AbortSignal;
}

export function heldCopyOf(c: VerifiedCopyRef): HeldCopy {
  const p = path.join(c.dir, c.archive.file);
  return { source: c.source, file: c.archive.file, path: p, size: c.archive.size, md5: c.archive.md5, sha256: c.archive.sha256, listPath: `${p}${LIST_SUFFIX}`, verified: verifiedAt(c.dir, c.archive.file) };
}

/** Push one copy to one store; never throws: the outcome carries the store's code. */
export async function pushToStore(cfg: OffsiteConfig, copy: HeldCopy, deps: HookDeps, opened?: Store): Promise<StoreOutcome & { result?: PushResult; warning?: string }> {
  try {
    const store = opened ?? openStore(cfg, deps.env, () => deps.clock.now());
    const r = await pushCopy(store, copy, { now: deps.clock.now(), signal: deps.signal });
    // uploads left by copies rotated away before they were sent would stay (and be billed) for ever
    await abortAbandoned(store.s3, sourcePrefix(cfg, copy.source), deps.clock.now()).catch(() => undefined);
    return { store: cfg.name, code: code("OFFSITE_SENT"), key: r.key, message: `${copy.file}: ${describePush(r)}`, result: r, warning: store.warning };
  } catch (e) {
    return { store: cfg.name, code: code(failureCode(e)), message: `${copy.file}: ${errorMessage(e)}` };
  }
}

/** The hook for runClient, or undefined when no store is configured. */
export function offsiteAfterVerified(stores: readonly OffsiteConfig[] | undefined, deps: HookDeps): AfterVerified | undefined {
  if (!stores?.length) return undefined;
  let queue: Promise<unknown> = Promise.resolve();
  return (copy, record) => {
    const run = async (): Promise<StoreOutcome[]> => {
      const out: StoreOutcome[] = [];
      for (const cfg of stores.filter((s) => storeTakes(s, copy.source))) {
        const o = await pushToStore(cfg, heldCopyOf(copy), deps);
        if (o.warning) deps.log.warn(`offsite ${cfg.name}: ${o.warning}`);
        const line = `${copy.source}: offsite ${cfg.name}: ${o.code} ${codeName(o.code)}: ${o.message}`;
        if (o.code === code("OFFSITE_SENT")) deps.log.info(line);
        else deps.log.warn(line);
        record(o.code === code("OFFSITE_SENT") ? "OFFSITE_SENT" : "OFFSITE_FAILED", line, { source: copy.source, store: cfg.name, code: o.code, name: codeName(o.code), key: o.key });
        out.push({ store: o.store, code: o.code, message: o.message, ...(o.key ? { key: o.key } : {}) });
      }
      return out;
    };
    const p = queue.then(run);
    queue = p.catch(() => undefined);
    return p;
  };
}
