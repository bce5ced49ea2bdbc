import { defineCommand } from "citty";
import type { TarListing } from "../../core/archive/tar.ts";
import { errnoCode } from "../../core/common/errors.ts";
import { escapeText } from "../../core/common/escape.ts";
import { readEntries } from "../../core/restore/read.ts";
import { formatBytes } from "../../core/common/units.ts";
import { configForArchive, heldArchives, resolveArchive, type HeldArchive } from "../../core/restore/verify.ts";
import { configArgs } from "../args.ts";
import { chainOf, levelOf } from "../../core/state/chain.ts";

const TYPE_CHAR: Record<string, string> = { file: "-", dir: "d", symlink: "l", hardlink: "h" };

/** `ls -l` style permissions, set-id and sticky bits included. */
function modeString(type: string, mode: number): string {
  const rwx = (bits: number, special: boolean, on: string, off: string) =>
    `${bits & 4 ? "r" : "-"}${bits & 2 ? "w" : "-"}${special ? (bits & 1 ? on : off) : bits & 1 ? "x" : "-"}`;
  return `${TYPE_CHAR[type] ?? "?"}${rwx(mode >> 6, (mode & 0o4000) !== 0, "s", "S")}${rwx(mode >> 3, (mode & 0o2000) !== 0, "s", "S")}${rwx(mode, (mode & 0o1000) !== 0, "t", "T")}`;
}

/** An entry as `list --json` prints it. */
interface ListedEntry {
  name: string;
  type: string;
  size: number;
  mode: number;
  /** Modification time in ms since the epoch (with the fraction the archive holds). */
  mtime: number;
  mtimeNs: bigint;
  linkTarget?: string;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** For "other": what it is (a FIFO, a device, an unknown type). */
  kind?: string;
}

function listed(t: TarListing): ListedEntry {
  const { name, type, size, mode, mtimeNs, linkTarget, uid, gid, uname, gname, kind } = t;
  return { name, type, size, mode, mtime: Number(mtimeNs / 1_000_000n) + Number(mtimeNs % 1_000_000n) / 1e6, mtimeNs, linkTarget, uid, gid, uname, gname, kind };
}

/** One `ls -l` line; names, link targets and owners come from the archive, so the line is escaped as GNU tar escapes. */
function entryLine(e: ListedEntry): string {
  const owner = `${e.uname || e.uid}/${e.gname || e.gid}`;
  const when = new Date(e.mtime).toISOString().slice(0, 16).replace("T", " ");
  const link = e.type === "symlink" ? ` -> ${e.linkTarget}` : e.type === "hardlink" ? ` link to ${e.linkTarget}` : "";
  return escapeText(`${modeString(e.type, e.mode)} ${owner.padEnd(17)} ${String(e.size).padStart(12)} ${when} ${e.name}${e.type === "dir" ? "/" : ""}${link}`);
}

/** Write to standard output, waiting while the reader is behind. */
function write(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * Each entry as it is read, as `ls -l` lines or one JSON array. A reader that goes away (`| head`)
 * ends the listing quietly, as it ends tar's.
 */
async function printEntries(file: string, json: boolean): Promise<void> {
  const ignore = () => {}; // EPIPE arrives as an event too: the rejected write below handles it
  process.stdout.on("error", ignore);
  try {
    let first = true;
    await readEntries(file, async (entries) => {
      let out = "";
      for (const e of entries.map(listed)) {
        if (json) out += `${first ? "[\n" : ",\n"}${JSON.stringify(e, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2).replace(/^/gm, "  ")}`;
        else out += `${entryLine(e)}\n`;
        first = false;
      }
      await write(out);
    });
    if (json) await write(first ? "[]\n" : "\n]\n");
  } catch (e) {
    if (errnoCode(e) !== "EPIPE") throw e;
  } finally {
    process.stdout.off("error", ignore);
  }
}

const CHECK_WORDS: Record<HeldArchive["checksumFile"], string> = { ok: "md5 file ok", missing: "NO .md5 FILE", bad: "BAD .md5 FILE", "size-mismatch": "SIZE ≠ LIST" };

/**
 * Each archive as a restore point: a full one alone, an incremental one with the archives it
 * needs (docs/incremental.md), or what is missing from its chain.
 */
function restorePoint(h: HeldArchive, held: readonly HeldArchive[]): { level: number; needs: string[]; missing?: string } {
  const c = chainOf(h.file, held.filter((x) => x.dir === h.dir).map((x) => x.file));
  const level = levelOf(h.file) ?? 0;
  return c.ok ? { level, needs: c.chain.slice(0, -1) } : { level, needs: c.found.slice(0, -1), missing: c.missing };
}

function pointWords(p: ReturnType<typeof restorePoint>): string {
  if (p.missing) return `INCOMPLETE: needs ${p.missing}`;
  return p.level === 0 ? "full" : `incremental (level ${p.level}): needs ${p.needs.length} earlier`;
}

function heldTable(held: readonly HeldArchive[]): string {
  const rows = held.map((h) => [h.role, escapeText(h.owner), escapeText(h.file), h.made ? h.made.toISOString().slice(0, 19).replace("T", " ") : "?", formatBytes(h.bytes), CHECK_WORDS[h.checksumFile], escapeText(pointWords(restorePoint(h, held)))]);
  const head = ["ROLE", "OF", "ARCHIVE", "MADE (UTC)", "SIZE", "CHECKSUM", "RESTORE POINT"];
  const widths = head.map((t, i) => Math.max(t.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

export default defineCommand({
  meta: { name: "list", description: "List the archives held here (either role) with date, size and checksum state, or the entries of one" },
  args: {
    ...configArgs,
    json: { type: "boolean", description: "Print JSON" },
    archive: { type: "positional", required: false, description: "An archive held here (name) or any archive file (path): list its entries", valueHint: "ARCHIVE" },
  },
  async run({ args }) {
    const cfg = configForArchive(args.config, args.archive, process.env);
    if (!args.archive) {
      const held = heldArchives(cfg!);
      if (args.json) console.log(JSON.stringify(held.map((h) => ({ ...h, point: restorePoint(h, held) })), null, 2));
      else console.log(held.length ? `${heldTable(held)}\n(the CHECKSUM column checks the .md5 file, not the data: shoot verify hashes the archives; each archive is a restore point: shoot restore ARCHIVE, or --at TIME)` : "no archives held here");
      return 0;
    }
    const a = resolveArchive(cfg, args.archive);
    // a first read makes sure the archive reads whole (ARCHIVE_DAMAGED, with the byte where it
    // does not): a damaged one is never listed in part; the second prints as it reads, so that
    // millions of entries are never held
    await readEntries(a.path, () => {});
    await printEntries(a.path, args.json === true);
    return 0;
  },
});
