/**
 * Restore an archive, or some paths of it, into a directory. Nothing is written until the
 * archive has been read whole and matched its checksum; nothing that exists is overwritten
 * without `force`; and nothing lands or points outside the target directory, whoever made the
 * archive:
 *
 * - absolute names and names with `..` are refused;
 * - an entry whose path runs through a symbolic link (one from the archive, or one already in
 *   the target directory) is refused;
 * - symbolic links are created last, after every file, and only when their target resolves
 *   inside the target directory (following the archive's other links), unless the caller
 *   allows links that point out;
 * - node-tar, which writes the files, keeps its own checks as a second line of defence.
 *
 * Directory modes and times are set at the end, deepest first, so that writing the files in
 * them does not undo them.
 */
import fs from "node:fs";
import path from "node:path";
import * as tar from "tar";
import { code, type CodeName } from "./codes.ts";
import { ShootError, errnoCode, errorMessage } from "./errors.ts";
import type { Progress } from "./progress.ts";
import type { TarListing } from "./tar.ts";
import { formatBytes, formatDuration } from "./units.ts";
import { ArchiveReadError, archivePass, describeReadError, tarSink, type HeldArchive, type PassResult } from "./verify.ts";
import { CHECKSUM_SUFFIX } from "./naming.ts";

export interface RestoreOptions {
  /** The target directory; created when missing. */
  to: string;
  /** Archive paths to restore (with or without a leading "/"); all when empty. */
  paths?: readonly string[];
  /** Overwrite files that exist in the target directory. */
  force?: boolean;
  /** false: restore an archive that has no checksum file beside it (one made elsewhere). */
  checksum?: boolean;
  /** Create symbolic links whose target lies outside the target directory (after everything else). */
  allowOutsideLinks?: boolean;
  progressFor?: (label: string, total: number) => Progress;
  signal?: AbortSignal;
}

export interface EntryNote {
  name: string;
  why: string;
}

export interface RestoreResult {
  code: number;
  message: string;
  archive: string;
  to: string;
  /** Entries written: files, directories, links. */
  restored: number;
  /** Bytes of file content written. */
  bytes: number;
  /** Entries refused because they would land or point outside the target. */
  refused: EntryNote[];
  /** Entries left out for other reasons (types a tar restore does not make, hard links to nothing). */
  skipped: EntryNote[];
  /** Files that exist and would have been overwritten (nothing was restored). */
  conflicts: EntryNote[];
  /** Entries that could not be written. */
  failed: EntryNote[];
  /** Hard-link targets restored because a selected path links to them. */
  alsoRestored: string[];
  ms: number;
}

type Decision = "restore" | "unselected" | "refused" | "skipped" | "conflict";

interface Planned {
  listing: TarListing;
  /** Normalised path components; undefined when the name itself is refused. */
  parts?: string[];
  key: string;
  decision: Decision;
  why?: string;
}

/** Components of an archive name, or why it may not be restored. */
export function splitEntryName(raw: string): { parts: string[] } | { why: string } {
  if (raw.startsWith("/")) return { why: "absolute path" };
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return { why: "path with '..'" };
  return { parts };
}

/** A path as a person writes it (`/etc/hosts`, `etc/hosts/`) in archive form. */
export function selectionKey(p: string): string {
  const parts = p.split("/").filter((x) => x !== "" && x !== ".");
  if (parts.includes("..")) throw new ShootError("USAGE", `path ${JSON.stringify(p)} contains '..': name paths as the archive lists them (shoot list ARCHIVE)`);
  if (parts.length === 0) throw new ShootError("USAGE", `path ${JSON.stringify(p)} names nothing`);
  return parts.join("/");
}

type DiskKind = "none" | "dir" | "file" | "symlink" | "other" | "blocked";

/** What is on disk below the target, cached: a restore looks at the same parents again and again. */
class DiskView {
  private cache = new Map<string, { kind: DiskKind; target?: string }>();
  constructor(private readonly root: string) {}

  at(key: string): { kind: DiskKind; target?: string } {
    let hit = this.cache.get(key);
    if (hit) return hit;
    const abs = key === "" ? this.root : path.join(this.root, key);
    try {
      const st = fs.lstatSync(abs);
      if (st.isSymbolicLink()) hit = { kind: "symlink", target: fs.readlinkSync(abs) };
      else hit = { kind: st.isDirectory() ? "dir" : st.isFile() ? "file" : "other" };
    } catch (e) {
      hit = { kind: errnoCode(e) === "ENOTDIR" ? "blocked" : "none" };
    }
    this.cache.set(key, hit);
    return hit;
  }
}

/** The longest chain of links followed before a target counts as a loop (as the kernel's ELOOP). */
const MAX_LINK_HOPS = 40;

/**
 * Does a link at `linkParts` with `target` resolve inside the root? Followed component by
 * component, through the archive's own links and those already on disk, because `..` after
 * a link climbs from where the link points, not from where it stands.
 */
export function linkStaysInside(linkParts: readonly string[], target: string, rootIsSlash: boolean, linkAt: (key: string) => string | undefined): boolean {
  if (rootIsSlash) return true;
  if (target.startsWith("/")) return false;
  const stack = linkParts.slice(0, -1);
  const queue = target.split("/");
  let hops = 0;
  while (queue.length > 0) {
    const c = queue.shift()!;
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (stack.length === 0) return false;
      stack.pop();
      continue;
    }
    stack.push(c);
    const t = linkAt(stack.join("/"));
    if (t === undefined) continue;
    if (++hops > MAX_LINK_HOPS || t.startsWith("/")) return false;
    stack.pop();
    queue.unshift(...t.split("/"));
  }
  return true;
}

function isWithin(key: string, sel: string): boolean {
  return key === sel || key.startsWith(`${sel}/`);
}

/**
 * What the first pass keeps of the archive's entries: with a selection, only what the plan needs
 * (the entries selected, those whose names are refused, and the files selected hard links point
 * to), so that restoring a few paths of an archive of millions of files holds a few entries, not
 * millions. It also notes which of the paths asked for no entry is or lies below, and the first
 * names at the archive's top, for the message when some are missing.
 */
class FirstPassKeep {
  readonly listings: TarListing[] = [];
  /** Files outside the selection that selected hard links point to (keys): kept by a further pass. */
  readonly linkTargets = new Set<string>();
  readonly tops = new Set<string>();
  private readonly unmatched: Set<string>;

  constructor(private readonly selection: readonly string[]) {
    this.unmatched = new Set(selection);
  }

  take(l: TarListing): void {
    const s = splitEntryName(l.name);
    if ("why" in s) {
      this.listings.push(l); // refused whatever the selection
      return;
    }
    const key = s.parts.join("/");
    if (this.tops.size < 5 && s.parts[0] !== undefined) this.tops.add(s.parts[0]);
    for (const sel of this.unmatched) if (isWithin(key, sel)) this.unmatched.delete(sel);
    if (!this.selected(key)) return;
    this.listings.push(l);
    if (l.type !== "hardlink") return;
    const t = splitEntryName(l.linkTarget ?? "");
    if ("parts" in t && !this.selected(t.parts.join("/"))) this.linkTargets.add(t.parts.join("/"));
  }

  /** In a further pass: an entry named as a file selected hard links point to. */
  takeLinkTarget(l: TarListing): void {
    const s = splitEntryName(l.name);
    if ("parts" in s && this.linkTargets.has(s.parts.join("/"))) this.listings.push(l);
  }

  /** Paths asked for that no entry of the archive is, or lies below. */
  missing(): string[] {
    return [...this.unmatched];
  }

  private selected(key: string): boolean {
    return this.selection.length === 0 || this.selection.some((sel) => isWithin(key, sel));
  }
}

/** Decide, entry by entry, what is restored: pure apart from looking at the target directory. */
export function planRestore(listings: readonly TarListing[], opts: { root: string; selection: readonly string[]; force: boolean; allowOutsideLinks: boolean }): { plan: Planned[]; alsoRestored: string[] } {
  const disk = new DiskView(opts.root);
  const rootIsSlash = opts.root === "/";
  const plan: Planned[] = listings.map((l) => {
    const s = splitEntryName(l.name);
    if ("why" in s) return { listing: l, key: l.name, decision: "refused", why: s.why };
    const key = s.parts.join("/");
    if (key === "") return { listing: l, parts: s.parts, key, decision: "unselected", why: "the archive's top directory" };
    const selected = opts.selection.length === 0 || opts.selection.some((sel) => isWithin(key, sel));
    return { listing: l, parts: s.parts, key, decision: selected ? "restore" : "unselected" };
  });

  // a selected hard link needs its target restored too
  const alsoRestored: string[] = [];
  const byKey = new Map<string, Planned>();
  for (const p of plan) if (p.parts) byKey.set(p.key, p);
  for (const p of plan) {
    if (p.decision !== "restore" || p.listing.type !== "hardlink") continue;
    const t = splitEntryName(p.listing.linkTarget ?? "");
    const target = "parts" in t ? byKey.get(t.parts.join("/")) : undefined;
    if (target && target.decision === "unselected" && target.listing.type === "file") {
      target.decision = "restore";
      alsoRestored.push(target.key);
    }
  }

  const links = new Map<string, string>();
  for (const p of plan) if (p.decision === "restore" && p.listing.type === "symlink") links.set(p.key, p.listing.linkTarget ?? "");
  const linkAt = (key: string) => links.get(key) ?? (disk.at(key).kind === "symlink" ? disk.at(key).target : undefined);
  const refuse = (p: Planned, decision: Decision, why: string) => {
    p.decision = decision;
    p.why = why;
  };
  /** The first parent of `parts` that is a link (the archive's or one on disk), if any. */
  const linkInPath = (parts: readonly string[]): string | undefined => {
    for (let i = 1; i < parts.length; i++) {
      const k = parts.slice(0, i).join("/");
      if (links.has(k)) return `the archive's symbolic link ${k}`;
      if (disk.at(k).kind === "symlink") return `the existing symbolic link ${path.join(opts.root, k)}`;
    }
    return undefined;
  };

  for (const p of plan) {
    if (p.decision !== "restore" || !p.parts) continue;
    const l = p.listing;
    if (l.type === "other") {
      refuse(p, "skipped", "not a file, directory or link (device, FIFO or sparse file): not restored");
      continue;
    }
    const through = linkInPath(p.parts);
    if (through) {
      refuse(p, "refused", `would be written through ${through}`);
      continue;
    }
    if (l.type === "symlink" && !opts.allowOutsideLinks && !linkStaysInside(p.parts, l.linkTarget ?? "", rootIsSlash, linkAt)) {
      refuse(p, "refused", `symbolic link to ${JSON.stringify(l.linkTarget)}, which points outside ${opts.root}`);
      continue;
    }
    if (l.type === "hardlink") {
      const t = splitEntryName(l.linkTarget ?? "");
      if ("why" in t) {
        refuse(p, "refused", `hard link to ${JSON.stringify(l.linkTarget)} (${t.why})`);
        continue;
      }
      const via = linkInPath([...t.parts, ""]);
      if (via) {
        refuse(p, "refused", `hard link through ${via}`);
        continue;
      }
      const target = byKey.get(t.parts.join("/"));
      if (!target || target.decision !== "restore") {
        if (disk.at(t.parts.join("/")).kind !== "file") {
          refuse(p, "skipped", `hard link to /${t.parts.join("/")}, which is neither restored nor on disk`);
          continue;
        }
      }
    }
  }

  // what is in the way: checked for every entry still to be written, before anything is
  for (const p of plan) {
    if (p.decision !== "restore" || !p.parts) continue;
    const here = disk.at(p.key);
    if (here.kind === "blocked") {
      if (!opts.force) refuse(p, "conflict", "a parent directory of it is a file here");
      continue;
    }
    if (here.kind === "none") continue;
    if (p.listing.type === "dir") {
      if (here.kind === "dir") continue;
      if (!opts.force) refuse(p, "conflict", `exists here as a ${here.kind}`);
      continue;
    }
    if (here.kind === "dir") refuse(p, "conflict", "a directory of that name is in the way (remove it first; --force does not remove directories)");
    else if (!opts.force) refuse(p, "conflict", "exists");
  }
  return { plan, alsoRestored };
}

/** Seconds with the fraction the archive holds (to the microsecond a double keeps): utimes takes them as they are. */
function mtimeOf(l: TarListing): number {
  return Number(l.mtimeNs / 1000n) / 1e6;
}

/** One read of the whole archive, each entry to `take`: the checksums, and whether the tar stream ended properly. */
async function listingPass(fd: number, opts: RestoreOptions, total: number, take: (e: TarListing) => void): Promise<{ pass: PassResult; ended: boolean }> {
  const { sink, ended } = tarSink(take);
  const progress = opts.progressFor?.("checking", total);
  try {
    const pass = await archivePass(fd, sink, { progress, signal: opts.signal });
    return { pass, ended: ended() };
  } finally {
    progress?.finish();
  }
}

/** Refuse before writing when the archive is not what its checksum files say. */
function checkIntegrity(a: HeldArchive, pass: PassResult, ended: boolean, checksum: boolean): void {
  const fail = (why: string) => {
    throw new ShootError("VERIFY_FAILED", `${a.file}: ${why}; nothing was restored`);
  };
  if (!ended) fail("the tar stream ends without its end-of-archive blocks: the archive is truncated");
  if (checksum) {
    if (a.checksumFile === "missing") fail(`there is no checksum file ${a.file}${CHECKSUM_SUFFIX} beside it (restore with --no-checksum to go ahead without one)`);
    if (a.checksumFile === "bad") fail(`${a.file}${CHECKSUM_SUFFIX} is not one md5sum line for it`);
    if (a.md5 !== pass.md5) fail(`its MD5 is ${pass.md5}, ${a.file}${CHECKSUM_SUFFIX} says ${a.md5}`);
  }
  const h = a.list;
  if (h?.md5 && h.md5 !== pass.md5) fail(`its MD5 is ${pass.md5}, the server's file list recorded ${h.md5}`);
  if (h?.sha256 && h.sha256 !== pass.sha256) fail(`its SHA-256 is ${pass.sha256}, the server's file list recorded ${h.sha256}`);
}

function entries(n: number): string {
  return `${n} ${n === 1 ? "entry" : "entries"}`;
}

function listNotes(notes: readonly EntryNote[], n = 5): string {
  return `${notes.slice(0, n).map((x) => `${x.name} (${x.why})`).join("; ")}${notes.length > n ? `; … ${notes.length} in all` : ""}`;
}

export async function runRestore(a: HeldArchive, opts: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const result: RestoreResult = {
    code: 0, message: "", archive: a.path, to: opts.to, restored: 0, bytes: 0,
    refused: [], skipped: [], conflicts: [], failed: [], alsoRestored: [], ms: 0,
  };
  const finish = (name: CodeName | "OK", message: string): RestoreResult => ({
    ...result, code: name === "OK" ? 0 : code(name), message, ms: performance.now() - started,
  });
  const selection = (opts.paths ?? []).map(selectionKey);

  const fd = fs.openSync(a.path, "r");
  try {
    // 1. read it whole: checksum, stream, entry list; nothing is written before this passes
    const keep = new FirstPassKeep(selection);
    let first: { pass: PassResult; ended: boolean };
    try {
      first = await listingPass(fd, opts, a.bytes, (e) => keep.take(e));
      checkIntegrity(a, first.pass, first.ended, opts.checksum !== false);
      const unmatched = keep.missing();
      if (unmatched.length > 0) {
        const tops = [...keep.tops];
        throw new ShootError("ARCHIVE_NOT_FOUND", `not in ${a.file}: ${unmatched.map((u) => `/${u}`).join(", ")} (its entries start with ${tops.map((t) => `/${t}`).join(", ") || "nothing"}; see shoot list ${a.file}); nothing was restored`);
      }
      // files outside the selection that selected hard links point to come before them in the
      // archive: read it once more for those alone (only a selection with such links needs it)
      if (keep.linkTargets.size > 0) {
        // every entry of such a name, so that the n-th of a name in the archive is the n-th planned
        const again = await listingPass(fd, opts, a.bytes, (e) => keep.takeLinkTarget(e));
        if (again.pass.md5 !== first.pass.md5) throw new ShootError("VERIFY_FAILED", `${a.file}: the archive changed while it was being read; nothing was restored`);
      }
    } catch (e) {
      if (!(e instanceof ArchiveReadError)) throw e;
      throw new ShootError("VERIFY_FAILED", `${a.file}: ${describeReadError(e, a.bytes)}; nothing was restored`);
    }
    const listings = keep.listings;

    // 2. the target, and the plan
    try {
      fs.mkdirSync(opts.to, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new ShootError("RESTORE_FAILED", `cannot create the target directory ${opts.to}: ${errorMessage(e)}`);
    }
    const root = fs.realpathSync(opts.to);
    if (!fs.statSync(root).isDirectory()) throw new ShootError("RESTORE_FAILED", `${opts.to} is not a directory`);
    result.to = root;
    const { plan, alsoRestored } = planRestore(listings, { root, selection, force: opts.force === true, allowOutsideLinks: opts.allowOutsideLinks === true });
    result.alsoRestored = alsoRestored;
    const note = (p: Planned) => ({ name: p.key, why: p.why ?? "" });
    result.refused = plan.filter((p) => p.decision === "refused").map(note);
    result.skipped = plan.filter((p) => p.decision === "skipped").map(note);
    result.conflicts = plan.filter((p) => p.decision === "conflict").map(note);
    if (result.conflicts.length > 0) {
      return finish("RESTORE_EXISTS", `${entries(result.conflicts.length)} exist in ${root} already (${listNotes(result.conflicts, 3)}); nothing was restored (--force overwrites files)`);
    }

    // 3. files, directories and hard links through node-tar, in archive order
    const todo = new Map<string, Planned[]>();
    for (const p of plan) {
      if (!p.parts) continue;
      const list = todo.get(p.key) ?? [];
      list.push(p);
      todo.set(p.key, list);
    }
    const seen = new Map<string, number>();
    const written = new Set<string>();
    const unpack = new tar.Unpack({
      cwd: root,
      strict: false,
      unlink: true,
      chmod: true,
      processUmask: 0,
      preserveOwner: process.getuid?.() === 0,
      // times are set at the end, to the microsecond (node-tar would set milliseconds)
      noMtime: true,
      filter: (p: string, entry) => {
        const s = splitEntryName(p);
        if ("why" in s) return false;
        const key = s.parts.join("/");
        const planned = todo.get(key);
        if (!planned) return false;
        // the n-th entry of a name in the archive is the n-th planned: counted for planned names only
        const i = seen.get(key) ?? 0;
        seen.set(key, i + 1);
        const type = (entry as tar.ReadEntry).type;
        if (planned[i]?.decision !== "restore" || type === "SymbolicLink") return false;
        written.add(key);
        return true;
      },
      onwarn: (codeStr, message, data) => {
        if (codeStr === "TAR_ENTRY_INFO") return;
        const d = data as { path?: string; entry?: { path?: string } };
        result.failed.push({ name: String(d?.entry?.path ?? d?.path ?? "?"), why: `${message}${codeStr === "TAR_ENTRY_ERROR" ? "" : ` (${codeStr})`}` });
      },
    });
    const progress = opts.progressFor?.("restoring", a.bytes);
    let second: PassResult;
    try {
      second = await archivePass(fd, unpack as unknown as NodeJS.WritableStream, { progress, signal: opts.signal });
    } catch (e) {
      if (!(e instanceof ArchiveReadError)) throw e;
      result.failed.push({ name: a.file, why: errorMessage(e) });
      return finish("RESTORE_FAILED", `restoring ${a.file} into ${root} failed part way: ${errorMessage(e)}`);
    } finally {
      progress?.finish();
    }
    if (second.md5 !== first.pass.md5) result.failed.push({ name: a.file, why: "the archive changed while it was being restored" });

    // 4. links last, so that nothing was ever written through one; then directory metadata
    const asRoot = process.getuid?.() === 0;
    for (const p of plan) {
      if (p.decision !== "restore" || p.listing.type !== "symlink") continue;
      try {
        makeLink(root, p, opts.force === true || written.has(p.key), asRoot);
        written.add(p.key);
      } catch (e) {
        result.failed.push({ name: p.key, why: errorMessage(e) });
      }
    }
    for (const p of plan) {
      if (p.decision !== "restore" || !written.has(p.key) || p.listing.type === "dir" || p.listing.type === "symlink" || result.failed.some((f) => f.name === p.key)) continue;
      try {
        fs.utimesSync(path.join(root, p.key), mtimeOf(p.listing), mtimeOf(p.listing));
      } catch (e) {
        result.failed.push({ name: p.key, why: `setting its time: ${errorMessage(e)}` });
      }
    }
    // deepest first: setting a directory's time must come after everything inside it is written
    const dirs = plan.filter((p) => p.decision === "restore" && p.listing.type === "dir").sort((x, y) => y.parts!.length - x.parts!.length);
    for (const p of dirs) {
      const abs = path.join(root, p.key);
      try {
        fs.chmodSync(abs, p.listing.mode);
        fs.utimesSync(abs, mtimeOf(p.listing), mtimeOf(p.listing));
      } catch (e) {
        result.failed.push({ name: p.key, why: `setting mode and time: ${errorMessage(e)}` });
      }
    }
    const restored = plan.filter((p) => p.decision === "restore");
    result.restored = restored.length;
    result.bytes = restored.reduce((n, p) => n + (p.listing.type === "file" ? p.listing.size : 0), 0);
    const took = formatDuration(performance.now() - started);
    const what = `${entries(result.restored)} (${formatBytes(result.bytes)}) from ${a.file} into ${root} in ${took}`;
    if (result.failed.length > 0) return finish("RESTORE_FAILED", `restored ${what}, but ${entries(result.failed.length)} could not be written: ${listNotes(result.failed)}`);
    if (result.refused.length > 0) {
      const links = result.refused.some((r) => r.why.includes("points outside")) && !opts.allowOutsideLinks ? " (--allow-outside-links creates links that point out, after everything else)" : "";
      return finish("RESTORE_UNSAFE", `restored ${what}; refused ${entries(result.refused.length)} that would land or point outside it: ${listNotes(result.refused)}${links}`);
    }
    return finish("OK", `restored ${what}${result.skipped.length ? `; skipped ${result.skipped.length}: ${listNotes(result.skipped)}` : ""}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** Create one planned symbolic link; its parents are checked again, now that the files are in place. */
function makeLink(root: string, p: Planned, replace: boolean, asRoot: boolean): void {
  const parts = p.parts!;
  let dir = root;
  for (const c of parts.slice(0, -1)) {
    dir = path.join(dir, c);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(dir);
    } catch {
      fs.mkdirSync(dir, { mode: 0o755 });
      continue;
    }
    if (!st.isDirectory()) throw new Error(`${dir} is not a directory (a link or file is in the way)`);
  }
  const abs = path.join(root, p.key);
  let existing: fs.Stats | undefined;
  try {
    existing = fs.lstatSync(abs);
  } catch {
    existing = undefined;
  }
  if (existing) {
    if (existing.isDirectory()) throw new Error("a directory of that name is in the way");
    if (!replace) throw new Error("exists");
    fs.unlinkSync(abs);
  }
  fs.symlinkSync(p.listing.linkTarget ?? "", abs);
  if (asRoot) fs.lchownSync(abs, p.listing.uid, p.listing.gid);
  fs.lutimesSync(abs, mtimeOf(p.listing), mtimeOf(p.listing));
}
