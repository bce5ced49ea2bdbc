/**
 * The order of the verified copies a backup host holds of one source: the order in which they
 * were verified here, never the order of their names. A server chooses the names, so a name
 * dated 9999 would otherwise count as the newest copy for ever, and retention would remove
 * good copies in its place, run after run.
 *
 * The order lives in a small index beside the copies (dest_dir/<source>/.shoot-copies), which
 * only the backup host writes, replaced atomically: a copy's entry is written before its .md5,
 * which marks it verified, so a copy that counts as held always has its place. Copies without
 * an entry (held before the index existed, or put there by hand) come first, in the order their
 * .md5 files were written (the backup host writes each when it verifies the copy), then by name.
 */
import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "./fsutil.ts";
import { CHECKSUM_SUFFIX, isArchiveName, parseArchiveName } from "./naming.ts";

export const COPY_INDEX = ".shoot-copies";
const INDEX_VERSION = 1;

export interface CopyEntry {
  file: string;
  /** Verification order: larger is later. */
  seq: number;
  /** When it was verified (ISO), for people reading the file. */
  verified: string;
}

/** The index's entries, by file; an unreadable or damaged index counts as empty (every copy then sorts as unindexed). */
export function readCopyIndex(dir: string): Map<string, CopyEntry> {
  const out = new Map<string, CopyEntry>();
  let data: unknown;
  try {
    data = JSON.parse(fs.readFileSync(path.join(dir, COPY_INDEX), "utf8"));
  } catch {
    return out;
  }
  const copies = (data as { v?: unknown; copies?: unknown } | null)?.copies;
  if ((data as { v?: unknown }).v !== INDEX_VERSION || !Array.isArray(copies)) return out;
  for (const c of copies as Array<Partial<CopyEntry>>) {
    if (typeof c?.file === "string" && isArchiveName(c.file) && Number.isSafeInteger(c.seq) && typeof c.verified === "string") {
      out.set(c.file, { file: c.file, seq: c.seq!, verified: c.verified });
    }
  }
  return out;
}

function mtimeMs(file: string): number {
  try {
    return fs.lstatSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

/** Verified copies in `dir` (an archive name whose .md5 is present), oldest first by when they were verified. */
export function heldCopies(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const present = new Set(names);
  const held = names.filter((n) => isArchiveName(n) && present.has(`${n}${CHECKSUM_SUFFIX}`));
  const index = readCopyIndex(dir);
  const unindexed = held.filter((n) => !index.has(n))
    .map((n) => ({ n, t: mtimeMs(path.join(dir, `${n}${CHECKSUM_SUFFIX}`)), key: parseArchiveName(n)!.key }))
    .sort((a, b) => a.t - b.t || (a.key < b.key ? -1 : a.key > b.key ? 1 : a.n < b.n ? -1 : 1))
    .map((x) => x.n);
  const indexed = held.filter((n) => index.has(n)).sort((a, b) => index.get(a)!.seq - index.get(b)!.seq);
  return [...unindexed, ...indexed];
}

function writeIndex(dir: string, entries: readonly CopyEntry[]): void {
  writeFileAtomic(dir, COPY_INDEX, `${JSON.stringify({ v: INDEX_VERSION, copies: entries }, null, 1)}\n`);
}

/** Drop the entries of copies that were removed (retention), so the index lists only what is held. */
export function forgetCopies(dir: string, removed: readonly string[]): void {
  const index = readCopyIndex(dir);
  if (!removed.some((f) => index.has(f))) return;
  writeIndex(dir, [...index.values()].filter((e) => !removed.includes(e.file)).sort((a, b) => a.seq - b.seq));
}

/**
 * Record that `file` is verified now: it becomes the newest copy. Copies held without an entry
 * are given theirs in their present order, entries of copies that are gone are dropped. Call it
 * before the copy's .md5 is written.
 */
export function recordVerified(dir: string, file: string, when: Date): void {
  const index = readCopyIndex(dir);
  const order = heldCopies(dir).filter((n) => n !== file);
  // numbered afresh in their order: only the order counts
  const entries: CopyEntry[] = order.map((n, i) => ({
    file: n, seq: i + 1, verified: index.get(n)?.verified ?? new Date(mtimeMs(path.join(dir, `${n}${CHECKSUM_SUFFIX}`))).toISOString(),
  }));
  entries.push({ file, seq: entries.length + 1, verified: when.toISOString() });
  writeIndex(dir, entries);
}
