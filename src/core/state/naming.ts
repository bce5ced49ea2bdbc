/**
 * Archive names: `<name>-<YYYYMMDD>-<HHMMSS>[-L<level>].tar[.gz|.zst]`, UTC. The same pattern
 * decides on the server what rotation may remove and on the client whether a name read from an
 * untrusted status file may be pulled at all: nothing else ever counts as an archive. A full
 * archive (level 0) has no `-L` part; an incremental one says its level (chain.ts).
 *
 * Names shoot writes sort by age as plain text (`ls`, `sort`, any collation): a second archive
 * within one second takes the next free second rather than a suffix. Older versions wrote
 * `<name>-<YYYYMMDD>-<HHMMSS>-<n>…` for that, which sorts before the name without a suffix as
 * text; such names are still read, and sortArchives puts them in their place.
 */
import type { Compression } from "../common/config.ts";

export const EXTENSIONS: Record<Compression, string> = { gzip: ".tar.gz", zstd: ".tar.zst", none: ".tar" };

/** The compression an archive name says by its extension; undefined for a name of no archive extension. */
export function compressionOf(file: string): Compression | undefined {
  // the longer extensions first: every archive name ends in ".tar" or has it before its own
  if (file.endsWith(EXTENSIONS.gzip)) return "gzip";
  if (file.endsWith(EXTENSIONS.zstd)) return "zstd";
  return file.endsWith(EXTENSIONS.none) ? "none" : undefined;
}

export const CHECKSUM_SUFFIX = ".md5";
export const LIST_SUFFIX = ".list";
/** The hashes of an archive's compressed pieces, kept on the server only (archive/piece-index.ts). */
export const PIECES_SUFFIX = ".pieces";
/** Temporary files start with this; no archive name can. */
export const TEMP_PREFIX = ".shoot-tmp-";
export const MAX_NAME_LENGTH = 200;

const ARCHIVE_RE = /^([A-Za-z0-9][A-Za-z0-9._-]{0,63})-(\d{8})-(\d{6})(?:-(\d{1,4}))?(?:-L([1-9]\d{0,3}))?\.tar(?:\.gz|\.zst)?$/;

export interface ParsedArchiveName {
  prefix: string;
  /** Sort key: timestamp then sequence, so names sort by age. */
  key: string;
  /** 0 for a full archive; n for an incremental one of level n (made against one of level n-1). */
  level: number;
}

export function parseArchiveName(file: string): ParsedArchiveName | undefined {
  if (file.length > MAX_NAME_LENGTH) return undefined;
  const m = ARCHIVE_RE.exec(file);
  if (!m) return undefined;
  return { prefix: m[1]!, key: `${m[2]}${m[3]}${(m[4] ?? "0").padStart(4, "0")}`, level: m[5] ? Number(m[5]) : 0 };
}

/** When an archive was made, from its name (UTC, to the second). */
export function archiveTime(file: string): Date | undefined {
  const k = parseArchiveName(file)?.key;
  if (!k) return undefined;
  return new Date(Date.UTC(+k.slice(0, 4), +k.slice(4, 6) - 1, +k.slice(6, 8), +k.slice(8, 10), +k.slice(10, 12), +k.slice(12, 14)));
}

/** A plain file name of the archive pattern, optionally for one prefix. */
export function isArchiveName(file: string, prefix?: string): boolean {
  const p = parseArchiveName(file);
  return p !== undefined && (prefix === undefined || p.prefix === prefix);
}

export function archiveName(prefix: string, when: Date, compression: Compression, level = 0): string {
  const iso = when.toISOString();
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
  return `${prefix}-${stamp}${level > 0 ? `-L${level}` : ""}${EXTENSIONS[compression]}`;
}

/** Archive names of `prefix` among `files`, oldest first. */
export function sortArchives(files: readonly string[], prefix?: string): string[] {
  return files
    .map((f) => [f, parseArchiveName(f)] as const)
    .filter(([, p]) => p !== undefined && (prefix === undefined || p.prefix === prefix))
    .sort((a, b) => (a[1]!.key < b[1]!.key ? -1 : a[1]!.key > b[1]!.key ? 1 : a[0] < b[0] ? -1 : 1))
    .map(([f]) => f);
}

/** The `md5sum -c` line for a file: "<hex>  <name>\n". */
export function md5Line(md5: string, file: string): string {
  return `${md5}  ${file}\n`;
}

/** The checksum from an `md5sum` line, if the line is one for `file`. */
export function parseMd5Line(text: string, file: string): string | undefined {
  const m = /^([0-9a-f]{32}) [ *](.+)\n?$/.exec(text);
  return m && m[2] === file ? m[1] : undefined;
}
