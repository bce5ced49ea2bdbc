/**
 * Restore points made of several archives (docs/incremental.md): which restore point a time
 * names, which archives it needs, and restoring it.
 *
 * GNU tar replays a chain: it extracts each archive in turn and deletes, directory by
 * directory, what a dumpdir does not list. shoot restores the same tree without deleting
 * anything: the newest archive's file list is the tree of the restore point, and each entry
 * of it is taken from the one archive of the chain whose list has the very same line (its
 * inode and ctime included, so no older version can pass for it). Directories come from the
 * newest archive, which holds every one of them, so their modes and times are set last. So a
 * restore point is restored into a directory like a single archive: nothing that is there is
 * deleted, nothing is overwritten without --force, and the same checks keep every entry
 * inside it. Every archive of the chain is read whole and checked against its list before
 * anything is written.
 */
import fs from "node:fs";
import path from "node:path";
import { codeName } from "../common/codes.ts";
import { systemClock } from "../common/deps.ts";
import { ShootError, errnoCode, errorMessage } from "../common/errors.ts";
import { formatBytes, formatDuration } from "../common/units.ts";
import type { TarListing } from "../archive/tar.ts";
import { chainOf, levelOf } from "../state/chain.ts";
import { readDirOrEmpty } from "../state/fsutil.ts";
import { LIST_SUFFIX } from "../state/naming.ts";
import { lineKey, nameOfKey, openList, walkOrder } from "../scan/scan.ts";
import { runRestore, selectionKey, splitEntryName, type EntryNote, type RestoreOptions, type RestoreResult } from "./restore.ts";
import { restoreNoting } from "./unfinished.ts";
import { describeArchive, verifyArchive, type HeldArchive } from "./verify.ts";

/** The archives restore point `point` needs, oldest first and ending with it; each with its file list. */
export function chainFor(point: HeldArchive): HeldArchive[] {
  // a full archive, or a file named otherwise (made elsewhere): a restore point by itself
  if (!levelOf(point.file)) return [point];
  const c = chainOf(point.file, readDirOrEmpty(point.dir));
  if (!c.ok) throw new ShootError("CHAIN_INCOMPLETE", `restore point ${point.file} needs ${c.missing}, which is not in ${point.dir}; nothing was restored`);
  return c.chain.map((file, i) => {
    const a = file === point.file ? point : describeArchive(path.join(point.dir, file), point.role, point.owner);
    if (!a) throw new ShootError("CHAIN_INCOMPLETE", `restore point ${point.file} needs ${file}, which cannot be read in ${point.dir}; nothing was restored`);
    if (c.chain.length === 1) return a;
    const h = a.list;
    if (!h) throw new ShootError("CHAIN_INCOMPLETE", `restore point ${point.file} needs the file list ${file}${LIST_SUFFIX}, which is not in ${point.dir} (a restore point of several archives is put together from their lists); nothing was restored`);
    const level = levelOf(file) ?? 0;
    if ((h.level ?? 0) !== level || (i > 0 && h.base !== c.chain[i - 1])) {
      throw new ShootError("CHAIN_INCOMPLETE", `${file}${LIST_SUFFIX} says level ${h.level ?? 0} against ${h.base ?? "nothing"}; its name and the archives here say level ${level}${i > 0 ? ` against ${c.chain[i - 1]}` : ""}; nothing was restored`);
    }
    return a;
  });
}

/** The restore point a time names: the newest archive of `owner`'s made at or before `at`. */
export function pointAt(held: readonly HeldArchive[], at: Date): HeldArchive | undefined {
  let best: HeldArchive | undefined;
  for (const h of held) if (h.made && h.made.getTime() <= at.getTime() && (!best || best.made!.getTime() <= h.made.getTime())) best = h;
  return best;
}

/**
 * The latest time a Date holds: what "newest" names, since an archive's name can be a little
 * ahead of the clock (two runs in one second take the next free second).
 */
export const NEWEST = new Date(8.64e15);

/**
 * A time as `--at` takes it: "newest" (or "now": the newest archive, whatever time its name
 * says), a date (the end of that day) or a date and time, in the host's local time unless it
 * ends in Z or an offset.
 */
export function parseAt(text: string): Date | undefined {
  if (text === "newest" || text === "now") return NEWEST;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/.exec(text.trim());
  if (!m) return undefined;
  const dateOnly = m[4] === undefined;
  const f = [Number(m[1]), Number(m[2]) - 1, Number(m[3]), dateOnly ? 23 : Number(m[4]), dateOnly ? 59 : Number(m[5]), dateOnly ? 59 : Number(m[6] ?? 0)] as const;
  const zone = m[7];
  // built as UTC first, to see that every field was in range (no 30 February)
  const utc = new Date(Date.UTC(...f));
  if (utc.getUTCMonth() !== f[1] || utc.getUTCDate() !== f[2] || utc.getUTCHours() !== f[3] || utc.getUTCMinutes() !== f[4] || utc.getUTCSeconds() !== f[5]) return undefined;
  let ms: number;
  if (zone === undefined) ms = new Date(...f).getTime();
  else {
    const offset = zone === "Z" ? 0 : (zone.startsWith("-") ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(-2)));
    ms = utc.getTime() - offset * 60_000;
  }
  return new Date(ms + (dateOnly ? 999 : 0));
}

/** A recorded list read in walk order, looked up by name as the archive's entries come. */
class ListCursor {
  private line: string | undefined;
  private key: string | undefined;
  private readonly lines: Generator<string>;

  constructor(file: string) {
    this.lines = openList(file).lines;
    this.advance();
  }

  /** The line of `name` (given as JSON in `key`), if the list has it; names must come in walk order. */
  seek(name: string, key: string): string | undefined {
    while (this.key !== undefined && this.key !== key && walkOrder(nameOfKey(this.key), name) < 0) this.advance();
    return this.key === key ? this.line : undefined;
  }

  close(): void {
    this.lines.return(undefined);
  }

  private advance(): void {
    for (let r = this.lines.next(); !r.done; r = this.lines.next()) {
      if (r.value === "") continue;
      this.line = r.value;
      this.key = lineKey(r.value);
      if (this.key === undefined) throw new ShootError("VERIFY_FAILED", `a file list holds a line that is not an entry: ${r.value.slice(0, 80)}`);
      return;
    }
    this.line = this.key = undefined;
  }
}

/** Which entries of one archive of the chain the restore point takes from it (see the top of this file). */
class Take {
  private memo = new Uint8Array(4096);
  private decided = 0;
  private readonly final: ListCursor;
  private readonly own: ListCursor | undefined;
  /** Database dumps of the point: entries after the files, named by its list's header, not by its lines. */
  private readonly dumps: Set<string>;

  constructor(link: HeldArchive, point: HeldArchive, private readonly newest: boolean) {
    this.final = new ListCursor(`${point.path}${LIST_SUFFIX}`);
    this.own = newest ? undefined : new ListCursor(`${link.path}${LIST_SUFFIX}`);
    this.dumps = new Set(newest ? (point.list?.dumps ?? []).map((d) => d.name) : []);
  }

  readonly only = (ordinal: number, l: TarListing): boolean => {
    if (ordinal < this.decided) return this.memo[ordinal] === 1;
    if (ordinal !== this.decided) throw new Error(`entry ${ordinal} decided out of turn`);
    const take = this.decide(l);
    if (ordinal >= this.memo.length) {
      const grown = new Uint8Array(this.memo.length * 2);
      grown.set(this.memo);
      this.memo = grown;
    }
    this.memo[ordinal] = take ? 1 : 0;
    this.decided++;
    return take;
  };

  private decide(l: TarListing): boolean {
    if (l.name === "") return false;
    if (this.dumps.has(l.name)) return l.type === "file";
    const key = JSON.stringify(l.name);
    const wanted = this.final.seek(l.name, key);
    if (wanted === undefined) return false;
    if (this.newest) return true;
    return l.type !== "dir" && this.own!.seek(l.name, key) === wanted;
  }

  close(): void {
    this.final.close();
    this.own?.close();
  }
}

/**
 * What stands in the way before anything is written: paths asked for that the restore point
 * does not hold, and (without force) names of it that exist in the target directory.
 */
function preflight(point: HeldArchive, root: string, selection: readonly string[], force: boolean): void {
  const unmatched = new Set(selection);
  const conflicts: EntryNote[] = [];
  let count = 0;
  const list = openList(`${point.path}${LIST_SUFFIX}`);
  try {
    for (const line of list.lines) {
      const key = line === "" ? undefined : lineKey(line);
      if (key === undefined) continue;
      const parts = splitEntryName(nameOfKey(key));
      if ("why" in parts) continue; // never restored: the archive's entry is refused when its turn comes
      const name = parts.parts.join("/");
      const within = (sel: string) => name === sel || name.startsWith(`${sel}/`);
      if (selection.length > 0 && !selection.some(within)) continue;
      for (const sel of unmatched) if (within(sel)) unmatched.delete(sel);
      if (force) continue;
      let st: fs.Stats | undefined;
      try {
        st = fs.lstatSync(path.join(root, name));
      } catch (e) {
        if (errnoCode(e) === "ENOTDIR" && ++count <= 5) conflicts.push({ name, why: "a parent directory of it is a file here" });
        continue;
      }
      if (st.isDirectory() && line.startsWith(`[${key},"dir"`)) continue;
      if (++count <= 5) conflicts.push({ name, why: st.isDirectory() ? "a directory of that name is in the way" : "exists" });
    }
  } finally {
    list.lines.return(undefined);
  }
  for (const d of point.list?.dumps ?? []) {
    const parts = splitEntryName(d.name);
    if ("why" in parts) continue;
    const name = parts.parts.join("/");
    const within = (sel: string) => name === sel || name.startsWith(`${sel}/`);
    if (selection.length > 0 && !selection.some(within)) continue;
    for (const sel of unmatched) if (within(sel)) unmatched.delete(sel);
    if (force) continue;
    let there = true;
    try {
      fs.lstatSync(path.join(root, name));
    } catch (e) {
      there = errnoCode(e) === "ENOTDIR";
    }
    if (there && ++count <= 5) conflicts.push({ name, why: "exists" });
  }
  if (unmatched.size > 0) throw new ShootError("ARCHIVE_NOT_FOUND", `not in restore point ${point.file}: ${[...unmatched].map((u) => `/${u}`).join(", ")}; nothing was restored`);
  if (count > 0) {
    throw new ShootError("RESTORE_EXISTS", `${count} entr${count === 1 ? "y" : "ies"} of restore point ${point.file} exist in ${root} already (${conflicts.map((c) => `${c.name} (${c.why})`).join("; ")}${count > conflicts.length ? "; …" : ""}); nothing was restored (--force overwrites files)`);
  }
}

/** Read every archive of the chain whole and check it against its list before anything is written. */
async function verifyChain(chain: readonly HeldArchive[], opts: RestoreOptions): Promise<void> {
  for (const a of chain) {
    // restoring an archive without its .md5 file (--no-checksum): its list's checksum stands in
    const checked = opts.checksum === false && a.checksumFile !== "ok" ? { ...a, checksumFile: "ok" as const, md5: a.list?.md5 } : a;
    const v = await verifyArchive(checked, { deep: true, worker: true, signal: opts.signal, progress: opts.progressFor?.(`checking ${a.file}`, a.bytes) });
    if (v.gone) throw new ShootError("CHAIN_INCOMPLETE", `${a.file} was removed while it was being checked; nothing was restored`);
    if (!v.ok) throw new ShootError("VERIFY_FAILED", `${a.file}, which restore point ${chain.at(-1)!.file} needs, does not verify: ${v.problems.join("; ")}; nothing was restored`);
  }
}

function entries(n: number): string {
  return `${n} ${n === 1 ? "entry" : "entries"}`;
}

/** Outcomes of one archive after which the chain goes on (the rest was restored), the worst first. */
const PARTIAL = ["RESTORE_UNSAFE", "RESTORE_CONFLICT", "ARCHIVE_UNSUPPORTED"] as const;

/**
 * Restore `point` and every archive it needs, into opts.to, with a note in the target while it
 * writes there (unfinished.ts). A full archive alone is a plain restore.
 */
export function runPointRestore(point: HeldArchive, opts: RestoreOptions): Promise<RestoreResult> {
  return restoreNoting(point.file, opts, (o) => restorePoint(point, o), systemClock.now);
}

async function restorePoint(point: HeldArchive, opts: RestoreOptions): Promise<RestoreResult> {
  const chain = chainFor(point);
  if (chain.length === 1) return runRestore(point, opts);
  const started = performance.now();
  await verifyChain(chain, opts);
  const selection = (opts.paths ?? []).map(selectionKey);
  try {
    fs.mkdirSync(opts.to, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new ShootError("RESTORE_FAILED", `cannot create the target directory ${opts.to}: ${errorMessage(e)}`);
  }
  const root = fs.realpathSync(opts.to);
  preflight(point, root, selection, opts.force === true);

  const total: RestoreResult = { code: 0, message: "", archive: point.path, to: root, restored: 0, bytes: 0, refused: [], clashes: [], skipped: [], conflicts: [], failed: [], alsoRestored: [], ms: 0 };
  for (const [i, link] of chain.entries()) {
    const take = new Take(link, point, i === chain.length - 1);
    let r: RestoreResult;
    try {
      r = await runRestore(link, { ...opts, to: root, only: take.only });
    } finally {
      take.close();
    }
    total.restored += r.restored;
    total.bytes += r.bytes;
    total.refused.push(...r.refused);
    total.clashes.push(...r.clashes);
    total.skipped.push(...r.skipped);
    total.conflicts.push(...r.conflicts);
    total.failed.push(...r.failed);
    total.alsoRestored.push(...r.alsoRestored);
    // entries left out (unsafe, two kinds, unsupported) leave the rest to go on, as in one archive; anything else stops here
    const goesOn = PARTIAL.indexOf(codeName(r.code) as (typeof PARTIAL)[number]);
    if (r.code !== 0 && goesOn < 0) {
      const message = `restore point ${point.file}: ${link.file} (${i + 1} of ${chain.length}): ${r.message}`;
      return { ...total, code: r.code, message, ms: performance.now() - started };
    }
    if (r.code !== 0 && (total.code === 0 || goesOn < PARTIAL.indexOf(codeName(total.code) as (typeof PARTIAL)[number]))) total.code = r.code;
  }
  const what = `${entries(total.restored)} (${formatBytes(total.bytes)}) of restore point ${point.file} from ${chain.length} archives (${chain.map((a) => a.file).join(", ")}) into ${root} in ${formatDuration(performance.now() - started)}`;
  const also = [
    total.refused.length ? `refused ${entries(total.refused.length)} that would land or point outside it` : "",
    total.clashes.length ? `made ${entries(total.clashes.length)} as neither of the two kinds the archive gives their name` : "",
    total.skipped.length ? `left out ${entries(total.skipped.length)} shoot does not restore` : "",
  ].filter((x) => x !== "");
  return { ...total, message: `restored ${what}${also.map((x) => `; ${x}`).join("")}`, ms: performance.now() - started };
}

/** `archives` with every archive their restore points need, each once, in chain order (`verify` of a restore point checks all of it). */
export function withChains(archives: readonly HeldArchive[]): HeldArchive[] {
  const out = new Map<string, HeldArchive>();
  for (const a of archives) {
    let chain: HeldArchive[];
    try {
      chain = chainFor(a);
    } catch {
      chain = [a]; // chainProblem says why
    }
    for (const link of chain) if (!out.has(link.path)) out.set(link.path, link);
  }
  return [...out.values()];
}

/** Why restore point `a` cannot be put together here, if it cannot. */
export function chainProblem(a: HeldArchive): string | undefined {
  try {
    chainFor(a);
    return undefined;
  } catch (e) {
    return errorMessage(e).replace(/; nothing was restored$/, "");
  }
}
