/**
 * `shoot offsite push | list | verify | restore | prune`: what each does for each store. Every
 * store is handled on its own and ends with its own code (0, or a store failure 110-117).
 */
import fs from "node:fs";
import path from "node:path";
import { code, mostSevere, type CodeName } from "../common/codes.ts";
import type { ClientConfig, Config, OffsiteConfig } from "../common/config.ts";
import { systemClock, type Clock, type Log } from "../common/deps.ts";
import { errorMessage } from "../common/errors.ts";
import { CHECKSUM_SUFFIX, md5Line, parseMd5Line } from "../state/naming.ts";
import { heldCopies as copiesIn, readCopyIndex } from "../state/copies.ts";
import { CLIENT_STATUS, readStatusFile } from "../state/status.ts";
import { formatBytes } from "../common/units.ts";
import { listObjects, objectText, type ListedObject } from "./download.ts";
import { describePush, judgeStored, pushCopy, type HeldCopy } from "./push.ts";
import { keepCount, type StoreRetention } from "./retention.ts";
import { S3Failure } from "./s3.ts";
import { META, StoreError, archiveOfKey, failureCode, keysOf, openStore, sourcePrefix, storeTakes, type Store } from "./store.ts";
import { abortAbandoned } from "./upload.ts";
import { LIST_SUFFIX, archiveTime } from "../state/naming.ts";
import { Readable } from "node:stream";
import { verifyArchive, type HeldArchive } from "../restore/verify.ts";
import { runRestore, type RestoreOptions, type RestoreResult } from "../restore/restore.ts";
import { restoreNoting } from "../restore/unfinished.ts";
import { objectStream } from "./download.ts";

export interface OffsiteDeps {
  env: Record<string, string | undefined>;
  clock: Clock;
  log: Log;
  signal?: AbortSignal;
}

export interface StoreReport {
  store: string;
  /** 0, or the most severe store failure met. */
  code: number;
  lines: string[];
}

export interface OffsiteReport {
  code: number;
  stores: StoreReport[];
}

/** The stores a command works on: all configured, or the ones named. */
export function selectStores(config: Config, names: readonly string[] | undefined): OffsiteConfig[] {
  const all = config.offsite ?? [];
  if (all.length === 0) throw new StoreError("STORE_UNKNOWN", `${config.file} configures no [[offsite]] store`);
  if (!names?.length) return all;
  const unknown = names.filter((n) => !all.some((s) => s.name === n));
  if (unknown.length) throw new StoreError("STORE_UNKNOWN", `unknown store ${unknown.map((n) => JSON.stringify(n)).join(", ")} (configured: ${all.map((s) => s.name).join(", ")})`);
  return all.filter((s) => names.includes(s.name));
}

export function finalCode(stores: readonly StoreReport[]): number {
  const bad = stores.map((s) => s.code).filter((c) => c !== 0);
  return bad.length ? mostSevere(bad) : 0;
}

/** SHA-256s the server recorded, by archive name, from the client's status files. */
function recordedSha256(client: ClientConfig): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of [`${CLIENT_STATUS}.1`, CLIENT_STATUS]) {
    for (const r of readStatusFile(path.join(client.dest_dir, f))?.records ?? []) {
      if (r.archive?.file && typeof r.archive.sha256 === "string" && /^[0-9a-f]{64}$/.test(r.archive.sha256)) out.set(r.archive.file, r.archive.sha256);
    }
  }
  return out;
}

/** When the backup host verified a copy: its entry in the copy index, else when its .md5 was written. */
export function verifiedAt(dir: string, file: string, index = readCopyIndex(dir)): string | undefined {
  const e = index.get(file);
  if (e) return e.verified;
  const st = fs.statSync(path.join(dir, `${file}${CHECKSUM_SUFFIX}`), { throwIfNoEntry: false });
  return st ? st.mtime.toISOString() : undefined;
}

/** The verified copies held of a source, oldest first in the order the backup host verified them. */
export function heldCopies(client: ClientConfig, source: string, sha = recordedSha256(client)): HeldCopy[] {
  const dir = path.join(client.dest_dir, source);
  const index = readCopyIndex(dir);
  const out: HeldCopy[] = [];
  for (const file of copiesIn(dir)) {
    const p = path.join(dir, file);
    try {
      const st = fs.lstatSync(p);
      const md5 = parseMd5Line(fs.readFileSync(`${p}${CHECKSUM_SUFFIX}`, "utf8"), file);
      if (!st.isFile() || !md5) continue;
      out.push({ source, file, path: p, size: st.size, md5, sha256: sha.get(file), listPath: `${p}${LIST_SUFFIX}`, verified: verifiedAt(dir, file, index) });
    } catch {
      // removed while we looked, or its .md5 is not one line for it: not a verified copy
    }
  }
  return out;
}

function sourcesOf(client: ClientConfig, cfg: OffsiteConfig, only?: readonly string[]): string[] {
  return client.sources.map((s) => s.name).filter((n) => storeTakes(cfg, n) && (!only?.length || only.includes(n)));
}

/** Run `fn` for each store with its own report; a thrown failure becomes the store's code. */
async function perStore(stores: readonly OffsiteConfig[], deps: OffsiteDeps, fn: (store: Store, add: (line: string, failure?: CodeName) => void) => Promise<void>): Promise<OffsiteReport> {
  const reports: StoreReport[] = [];
  for (const cfg of stores) {
    const r: StoreReport = { store: cfg.name, code: 0, lines: [] };
    const add = (line: string, failure?: CodeName) => {
      r.lines.push(line);
      if (failure) r.code = mostSevere([r.code || code(failure), code(failure)]);
    };
    try {
      const store = openStore(cfg, deps.env, () => deps.clock.now());
      if (store.warning) r.lines.push(`warning: ${store.warning}`);
      await fn(store, add);
    } catch (e) {
      add(errorMessage(e), failureCode(e));
    }
    reports.push(r);
  }
  return { code: finalCode(reports), stores: reports };
}

/** Abort multipart uploads under the store's prefix that no run has touched for a day. */
async function cleanAbandoned(store: Store, now: Date, add: (line: string) => void): Promise<void> {
  for (const u of await abortAbandoned(store.s3, store.cfg.prefix, now)) add(`aborted an upload abandoned since ${u.initiated}: ${u.key}`);
}

export async function offsitePush(config: Config, client: ClientConfig, stores: readonly OffsiteConfig[], deps: OffsiteDeps, only?: readonly string[]): Promise<OffsiteReport> {
  const sha = recordedSha256(client);
  return perStore(stores, deps, async (store, add) => {
    await store.s3.checkBucket();
    for (const source of sourcesOf(client, store.cfg, only)) {
      // newest first: when time runs short, the copy that matters most is there
      for (const copy of heldCopies(client, source, sha).reverse()) {
        if (deps.signal?.aborted) return add("interrupted", "STORE_FAILED");
        try {
          add(`${source}/${copy.file}: ${describePush(await pushCopy(store, copy, { now: deps.clock.now(), signal: deps.signal }))}`);
        } catch (e) {
          const c = failureCode(e);
          add(`${source}/${copy.file}: ${errorMessage(e)}`, c);
          if (c === "STORE_UNREACHABLE" || c === "STORE_CREDENTIALS" || c === "STORE_BUCKET_MISSING") return;
        }
      }
    }
    await cleanAbandoned(store, deps.clock.now(), add);
  });
}

// --- what a store holds ------------------------------------------------------------------------

export interface StoredCopy {
  source: string;
  file: string;
  key: string;
  encrypted: boolean;
  size: number;
  /** The .md5 object is there (the last one a push writes). */
  complete: boolean;
  md5?: string;
  sha256?: string;
  plainSize?: number;
  /** When the backup host verified it (metadata), else when the store took it. */
  verified?: string;
  lockMode?: string;
  lockUntil?: string;
  versionId?: string;
}

async function describeStored(store: Store, source: string, o: ListedObject, names: Set<string>): Promise<StoredCopy | undefined> {
  const base = o.key.slice(o.key.lastIndexOf("/") + 1);
  const a = archiveOfKey(base);
  if (!a) return undefined;
  const head = await store.s3.send({ method: "HEAD", key: o.key });
  const h = head.headers;
  return {
    source, file: a.file, key: o.key, encrypted: a.encrypted, size: o.size, complete: names.has(`${a.file}${CHECKSUM_SUFFIX}`),
    md5: h.get(`x-amz-meta-${META.md5}`) ?? undefined, sha256: h.get(`x-amz-meta-${META.sha256}`) ?? undefined,
    plainSize: h.get(`x-amz-meta-${META.size}`) ? Number(h.get(`x-amz-meta-${META.size}`)) : undefined,
    verified: h.get(`x-amz-meta-${META.verified}`) ?? o.lastModified,
    lockMode: h.get("x-amz-object-lock-mode") ?? undefined, lockUntil: h.get("x-amz-object-lock-retain-until-date") ?? undefined,
    versionId: h.get("x-amz-version-id") ?? undefined,
  };
}

/** The copies a store holds of a source, oldest first. */
export async function storedCopies(store: Store, source: string): Promise<StoredCopy[]> {
  const prefix = sourcePrefix(store.cfg, source);
  const objects = (await listObjects(store, prefix)).filter((o) => !o.key.slice(prefix.length).includes("/"));
  const names = new Set(objects.map((o) => o.key.slice(prefix.length)));
  const out: StoredCopy[] = [];
  for (const o of objects) {
    const c = await describeStored(store, source, o, names);
    if (c) out.push(c);
  }
  // a server chooses the names: the order is when the backup host verified each copy
  const t = (c: StoredCopy) => Date.parse(c.verified ?? "") || 0;
  return out.sort((x, y) => t(x) - t(y) || (x.file < y.file ? -1 : x.file > y.file ? 1 : 0));
}

function lockText(c: StoredCopy, now: Date): string {
  if (!c.lockUntil) return "not locked";
  return Date.parse(c.lockUntil) > now.getTime() ? `locked (${c.lockMode?.toLowerCase() ?? "?"}) until ${c.lockUntil}` : `lock ended ${c.lockUntil}`;
}

export async function offsiteList(client: ClientConfig, stores: readonly OffsiteConfig[], deps: OffsiteDeps, only?: readonly string[]): Promise<OffsiteReport> {
  return perStore(stores, deps, async (store, add) => {
    for (const source of sourcesOf(client, store.cfg, only)) {
      const copies = await storedCopies(store, source);
      add(`${source}: ${copies.length} cop${copies.length === 1 ? "y" : "ies"} in ${store.s3.where(sourcePrefix(store.cfg, source))}`);
      for (const c of copies) {
        const state = !c.complete ? "INCOMPLETE (no .md5 yet)" : c.md5 ? "verified at upload" : "NO CHECKSUM";
        add(`  ${c.file}${c.encrypted ? " (age)" : ""}  ${formatBytes(c.size)}  ${state}  ${lockText(c, deps.clock.now())}`);
      }
    }
  });
}

// --- checking what a store holds ---------------------------------------------------------------

/** Problems with a stored copy from its metadata, its .md5 object and the copy held here. */
export async function checkStored(store: Store, c: StoredCopy, held?: HeldCopy): Promise<string[]> {
  const problems: string[] = [];
  if (!c.complete) problems.push(`${c.file}${CHECKSUM_SUFFIX} is not in the store`);
  if (!c.md5) problems.push("the object carries no checksum of shoot's");
  if (!c.encrypted && c.plainSize !== undefined && c.plainSize !== c.size) problems.push(`it is ${c.size} bytes, the server recorded ${c.plainSize}`);
  if (c.complete && c.md5) {
    const text = await objectText(store, keysOf(store.cfg, c.source, c.file, c.encrypted).md5);
    if (text !== md5Line(c.md5, c.file)) problems.push(`${c.file}${CHECKSUM_SUFFIX} in the store does not give the object's MD5 ${c.md5}`);
  }
  if (held) {
    const h = new Headers({ [`x-amz-meta-${META.md5}`]: c.md5 ?? "", ...(c.sha256 ? { [`x-amz-meta-${META.sha256}`]: c.sha256 } : {}), ...(c.plainSize !== undefined ? { [`x-amz-meta-${META.size}`]: String(c.plainSize) } : {}) });
    const p = judgeStored(h, held);
    if (p) problems.push(`the copy held here differs: ${p}`);
  }
  return problems;
}

// --- retention in the store ----------------------------------------------------------------------

async function deleteVersion(store: Store, key: string, versionId?: string): Promise<void> {
  await store.s3.send({ method: "DELETE", key, query: versionId ? [["versionId", versionId]] : [] });
}

async function removeCopy(store: Store, c: StoredCopy): Promise<void> {
  const keys = keysOf(store.cfg, c.source, c.file, c.encrypted);
  // the archive goes first: a .md5 left without it is never taken for a copy, and a delete the
  // store refuses (a lock, a hold) leaves the copy whole
  for (const key of [keys.archive, keys.list, keys.md5]) {
    const head = await store.s3.send({ method: "HEAD", key }, { allow404: true });
    if (head.status === 404) continue;
    try {
      await deleteVersion(store, key, head.headers.get("x-amz-version-id") ?? undefined);
    } catch (e) {
      if (e instanceof S3Failure && e.kind === "locked") {
        const until = head.headers.get("x-amz-object-lock-retain-until-date");
        const hold = head.headers.get("x-amz-object-lock-legal-hold") === "ON";
        // refused with nothing holding the object: these credentials may not delete
        if (!hold && !(until && Date.parse(until) > Date.now())) throw new StoreError("STORE_CREDENTIALS", `${store.s3.where(key)}: the delete was refused (AccessDenied), and no lock holds the object: these credentials may not delete`);
        throw new StoreError("STORE_LOCKED", `${store.s3.where(key)}: the delete was refused: ${hold ? "a legal hold is on it" : `it is locked until ${until}`}`);
      }
      throw e;
    }
  }
}

export function retentionOf(cfg: OffsiteConfig, client: ClientConfig): StoreRetention {
  return keepCount(cfg.keep ?? client.keep);
}

export async function offsitePrune(client: ClientConfig, stores: readonly OffsiteConfig[], deps: OffsiteDeps, opts: { only?: readonly string[]; dryRun?: boolean } = {}): Promise<OffsiteReport> {
  return perStore(stores, deps, async (store, add) => {
    const retention = retentionOf(store.cfg, client);
    const now = deps.clock.now();
    for (const source of sourcesOf(client, store.cfg, opts.only)) {
      const copies = await storedCopies(store, source);
      const verified = copies.filter((c) => c.complete && c.md5);
      const go = new Set(retention.removable(verified.map((c) => c.file), now));
      const stays = verified.length - go.size;
      add(`${source}: ${verified.length} verified cop${verified.length === 1 ? "y" : "ies"}; ${retention.describe()}: ${go.size} to remove, ${stays} kept`);
      for (const c of verified.filter((x) => go.has(x.file))) {
        if (c.lockUntil && Date.parse(c.lockUntil) > now.getTime()) {
          add(`  ${c.file}: kept, still locked until ${c.lockUntil}`);
          continue;
        }
        if (opts.dryRun) {
          add(`  ${c.file}: would be removed`);
          continue;
        }
        try {
          await removeCopy(store, c);
          add(`  ${c.file}: removed`);
        } catch (e) {
          add(`  ${c.file}: ${errorMessage(e)}`, failureCode(e));
        }
      }
    }
  });
}

// --- reading copies back ---------------------------------------------------------------------------

/** A stored copy as the restore and verify passes take it: read from the store, afresh for each pass. */
export function storedArchive(store: Store, c: StoredCopy, identities?: readonly string[]): HeldArchive {
  return {
    role: "client", owner: c.source, dir: store.s3.where(sourcePrefix(store.cfg, c.source)), file: c.file,
    path: `s3://${store.s3.where(c.key)}`, bytes: c.plainSize ?? c.size, made: archiveTime(c.file), md5: c.md5,
    checksumFile: c.md5 ? "ok" : "missing",
    open: async () => Readable.fromWeb((await objectStream(store, c.key, identities)) as import("node:stream/web").ReadableStream<Uint8Array>),
  };
}

export async function offsiteVerify(client: ClientConfig, stores: readonly OffsiteConfig[], deps: OffsiteDeps, opts: { only?: readonly string[]; deep?: boolean; identities?: readonly string[] } = {}): Promise<OffsiteReport> {
  return perStore(stores, deps, async (store, add) => {
    for (const source of sourcesOf(client, store.cfg, opts.only)) {
      const held = new Map(heldCopies(client, source).map((h) => [h.file, h]));
      const copies = await storedCopies(store, source);
      add(`${source}: ${copies.length} cop${copies.length === 1 ? "y" : "ies"}`);
      for (const c of copies) {
        const problems = await checkStored(store, c, held.get(c.file));
        const notes: string[] = [];
        if (opts.deep && c.encrypted && !opts.identities?.length) problems.push("it is encrypted: --deep needs --identity FILE to read it");
        else if (opts.deep) {
          const v = await verifyArchive(storedArchive(store, c, opts.identities), { deep: true, signal: deps.signal });
          problems.push(...v.problems);
          if (c.sha256 && v.sha256 && v.sha256 !== c.sha256) problems.push(`read back, its SHA-256 is ${v.sha256}; the server recorded ${c.sha256}`);
          notes.push(...v.notes.filter((n) => n.startsWith("restore drill")));
        }
        if (problems.length) add(`  FAILED ${c.file}: ${problems.join("; ")}`, "STORE_CHECKSUM_MISMATCH");
        else add(`  OK     ${c.file}${opts.deep ? " (read back whole)" : ""}${notes.length ? `: ${notes.join("; ")}` : ""}`);
      }
    }
  });
}

/** Find an archive (by name) in a store, in any source's folder; the newest key wins. */
export async function findStored(store: Store, client: ClientConfig | undefined, file: string, source?: string): Promise<StoredCopy> {
  const sources = source ? [source] : client ? client.sources.map((s) => s.name).filter((n) => storeTakes(store.cfg, n)) : [];
  for (const s of sources) {
    const c = (await storedCopies(store, s)).find((x) => x.file === file);
    if (c) return c;
  }
  // no configuration to name the sources: look through the whole prefix
  if (!source) {
    for (const o of await listObjects(store, store.cfg.prefix)) {
      const rel = o.key.slice(store.cfg.prefix.length);
      const [s, name, ...more] = rel.split("/");
      if (more.length || !s || !name || archiveOfKey(name)?.file !== file) continue;
      const c = (await storedCopies(store, s)).find((x) => x.file === file);
      if (c) return c;
    }
  }
  throw new StoreError("STORE_OBJECT_MISSING", `${file} is not in ${store.s3.where(store.cfg.prefix)}${source ? ` under ${source}/` : ""} (shoot offsite list shows what is)`);
}

export async function offsiteRestore(
  store: Store, client: ClientConfig | undefined, file: string,
  opts: Omit<RestoreOptions, "checksum"> & { source?: string; identities?: readonly string[] },
): Promise<RestoreResult> {
  const c = await findStored(store, client, file, opts.source);
  if (c.encrypted && !opts.identities?.length) throw new StoreError("STORE_FAILED", `${c.key} is encrypted with age: give --identity FILE (the age identity of one of its recipients)`);
  if (!c.md5) throw new StoreError("STORE_CHECKSUM_MISMATCH", `${c.key} carries no checksum of shoot's; nothing was restored`);
  // a restore from the store that stops part way says so in its target, as one from a held copy
  const run = (o: RestoreOptions) => runRestore(storedArchive(store, c, opts.identities), o);
  return restoreNoting(file, { ...opts, checksum: true }, run, systemClock.now);
}
