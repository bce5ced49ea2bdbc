/**
 * Incremental archives on the server (docs/incremental.md): the level of the next archive and
 * the archive it is made against, whether the chain it extends is whole, what the status record
 * says about the chain, and the entries of an incremental archive.
 *
 * A link is whole when its archive is there at the size its file list records, its checksum
 * file agrees with that list, and the list says the level and base the names say. That much is
 * cheap enough for every run; a flipped bit inside an archive is what `verify --deep` finds.
 */
import fs from "node:fs";
import path from "node:path";
import type { ArchiveEntry } from "../archive/writer.ts";
import type { ServerConfig } from "../common/config.ts";
import { errorMessage } from "../common/errors.ts";
import { formatDuration } from "../common/units.ts";
import { chainOf, levelOf } from "../state/chain.ts";
import { readLines } from "../state/fsutil.ts";
import { CHECKSUM_SUFFIX, compressionOf, LIST_SUFFIX, archiveTime, parseMd5Line } from "../state/naming.ts";
import type { ArchiveInfo } from "../state/status.ts";
import type { ChangeSet } from "../scan/changes.ts";
import { entryFromLine, listHeaderOf, normaliseSources, systemOwners, type ListHeader } from "../scan/scan.ts";

/** The highest level an archive name can say. */
const MAX_LEVEL = 9999;
/** A run this much earlier than `full_every` (at most) still counts as due: daily runs start a few seconds apart. */
const MAX_SLACK_MS = 3600_000;

export interface LevelPlan {
  /** 0: a full archive. */
  level: number;
  /** The archive the new one is made against (level > 0), and its list's header. */
  base?: { file: string; header: ListHeader };
  /** The archives the new one needs before it, oldest first. */
  chain: ArchiveInfo[];
  /** Why the archive is a full one, or which base it extends. */
  why: string;
  /** The chain that should have been extended is missing or damaged: said in a FULL_INSTEAD warning. */
  broken?: string;
}

/** The sources as a list header records them: archive names, a directory's with a trailing "/". */
export function sourcesKey(sources: readonly string[]): string[] {
  return normaliseSources(sources).map((s) => {
    let dir = false;
    try {
      dir = fs.lstatSync(s).isDirectory();
    } catch {
      // a source that vanished is a failure of its own: the run has checked them all
    }
    return `${s.replace(/^\/+/, "")}${dir ? "/" : ""}`;
  });
}

/** The archive `file` as a link of a chain: whole, with its list's header; or what is wrong with it. */
export function checkLink(dir: string, file: string, prev: string | undefined): { info: ArchiveInfo; header: ListHeader } | { problem: string } {
  let size: number;
  try {
    const st = fs.statSync(path.join(dir, file));
    if (!st.isFile()) return { problem: `${file} is not a regular file` };
    size = st.size;
  } catch (e) {
    return { problem: `${file} cannot be read (${errorMessage(e)})` };
  }
  let md5: string | undefined;
  try {
    md5 = parseMd5Line(fs.readFileSync(path.join(dir, file + CHECKSUM_SUFFIX), "utf8"), file);
  } catch {
    md5 = undefined;
  }
  if (!md5) return { problem: `${file}${CHECKSUM_SUFFIX} is missing or not one md5sum line for it` };
  let header: ListHeader;
  try {
    header = listHeaderOf(path.join(dir, file + LIST_SUFFIX));
  } catch (e) {
    return { problem: `the file list of ${file} cannot be read (${errorMessage(e)})` };
  }
  if (header.size !== size) return { problem: `${file} is ${size} bytes, its file list recorded ${header.size}` };
  if (header.md5 !== md5) return { problem: `${file}${CHECKSUM_SUFFIX} says ${md5}, its file list recorded ${header.md5}` };
  const level = levelOf(file) ?? -1;
  if ((header.level ?? 0) !== level) return { problem: `${file} is named level ${level}, its file list says ${header.level ?? 0}` };
  if (level > 0 && header.base !== prev) return { problem: `${file} was made against ${header.base ?? "nothing"}, not ${prev}` };
  return { info: { file, size, md5, ...(header.sha256 ? { sha256: header.sha256 } : {}) }, header };
}


/** Every link of the chain restore point `point` is made of (itself last), checked; or the first problem. */
export function checkChain(dir: string, point: string, archives: readonly string[]): { links: Array<{ info: ArchiveInfo; header: ListHeader }> } | { problem: string } {
  const c = chainOf(point, archives);
  if (!c.ok) return { problem: `${c.missing} is not here` };
  const links: Array<{ info: ArchiveInfo; header: ListHeader }> = [];
  for (const [i, file] of c.chain.entries()) {
    const link = checkLink(dir, file, c.chain[i - 1]);
    if ("problem" in link) return link;
    links.push(link);
  }
  return { links };
}

/** What a final record says about the archive it names: its level and, for an incremental one, its base and every archive it needs before it. */
export function chainData(level: number, chain: readonly ArchiveInfo[]): Record<string, unknown> {
  return level === 0 ? { level } : { level, base: chain.at(-1)?.file, chain };
}

/**
 * The level of the next archive. `archives`: this server's archives with a checksum file,
 * oldest first; `sources`: sourcesKey of the configuration.
 */
export function planLevel(cfg: Pick<ServerConfig, "incremental" | "full_every" | "compression">, dir: string, archives: readonly string[], now: Date, sources: readonly string[]): LevelPlan {
  const full = (why: string, broken?: string): LevelPlan => ({ level: 0, chain: [], why, broken });
  if (cfg.incremental === "off") return full("incremental archives are off");
  let fullAt = archives.length - 1;
  while (fullAt >= 0 && levelOf(archives[fullAt]!) !== 0) fullAt--;
  if (archives.length === 0) return full("no earlier archive");
  if (fullAt < 0) return full("a full archive", "no full archive is held here");
  const lastFull = archives[fullAt]!;
  const base = cfg.incremental === "chain" ? archives.at(-1)! : lastFull;
  if (compressionOf(base) !== cfg.compression) return full(`a full archive: compression changed to ${cfg.compression}`);
  const every = cfg.full_every;
  if (every.count !== undefined && archives.length - fullAt >= every.count) return full(`a full archive: ${archives.length - fullAt} archive(s) since ${lastFull} (full_every = ${every.count})`);
  if (every.ms !== undefined) {
    const age = now.getTime() - (archiveTime(lastFull)?.getTime() ?? 0);
    if (age + Math.min(MAX_SLACK_MS, every.ms / 10) >= every.ms) return full(`a full archive: ${lastFull} is ${formatDuration(age)} old (full_every = ${formatDuration(every.ms)})`);
  }
  const checked = checkChain(dir, base, archives);
  if ("problem" in checked) return full("a full archive", `the chain of ${base} cannot be extended: ${checked.problem}`);
  const header = checked.links.at(-1)!.header;
  if (header.sources === undefined) return full(`a full archive: ${base} was made before incremental archives were on`);
  if (header.sources.join("\n") !== sources.join("\n")) return full(`a full archive: the sources differ from ${base}'s`);
  const level = (levelOf(base) ?? 0) + 1;
  if (level > MAX_LEVEL) return full(`a full archive: the chain is ${MAX_LEVEL} archives long`);
  return { level, base: { file: base, header }, chain: checked.links.map((l) => l.info), why: `level ${level}, against ${base}` };
}

/**
 * The entries of an archive written with directory records, read back from the walk's list one
 * at a time: those `changes` marks, each directory with its dumpdir; first "/" when it is a source.
 */
export function* recordedEntries(walkList: string, changes: ChangeSet): Generator<ArchiveEntry> {
  const owners = systemOwners();
  if (changes.dumpdirs.root !== undefined) {
    const st = fs.lstatSync("/");
    yield {
      source: "/", name: "", type: "dir", mode: st.mode & 0o7777, uid: st.uid, gid: st.gid,
      uname: owners.user(st.uid), gname: owners.group(st.gid), size: 0, mtimeMs: st.mtimeMs, dumpdir: changes.dumpdirs.root,
    };
  }
  let i = 0;
  let dir = 0;
  for (const line of readLines(walkList)) {
    if (line === "") continue;
    if (!changes.marks[i++]) continue;
    const e = entryFromLine(line, owners);
    if (e.type === "dir") e.dumpdir = changes.dumpdirs.get(dir++);
    yield e;
  }
}
