import { defineCommand } from "citty";
import { listArchive, type ListedEntry } from "../../core/archive.ts";
import { ShootError, errorMessage } from "../../core/errors.ts";
import { formatBytes } from "../../core/units.ts";
import { configForArchive, heldArchives, resolveArchive, type HeldArchive } from "../../core/verify.ts";
import { configArgs } from "../args.ts";

const TYPE_CHAR: Record<string, string> = { file: "-", dir: "d", symlink: "l", hardlink: "h" };

/** `ls -l` style permissions, set-id and sticky bits included. */
function modeString(type: string, mode: number): string {
  const rwx = (bits: number, special: boolean, on: string, off: string) =>
    `${bits & 4 ? "r" : "-"}${bits & 2 ? "w" : "-"}${special ? (bits & 1 ? on : off) : bits & 1 ? "x" : "-"}`;
  return `${TYPE_CHAR[type] ?? "?"}${rwx(mode >> 6, (mode & 0o4000) !== 0, "s", "S")}${rwx(mode >> 3, (mode & 0o2000) !== 0, "s", "S")}${rwx(mode, (mode & 0o1000) !== 0, "t", "T")}`;
}

function entryLine(e: ListedEntry): string {
  const owner = `${e.uname || e.uid}/${e.gname || e.gid}`;
  const when = new Date(e.mtime).toISOString().slice(0, 16).replace("T", " ");
  const link = e.type === "symlink" ? ` -> ${e.linkTarget}` : e.type === "hardlink" ? ` link to ${e.linkTarget}` : "";
  return `${modeString(e.type, e.mode)} ${owner.padEnd(17)} ${String(e.size).padStart(12)} ${when} ${e.name}${e.type === "dir" ? "/" : ""}${link}`;
}

const CHECK_WORDS: Record<HeldArchive["checksumFile"], string> = { ok: "md5 file ok", missing: "NO .md5 FILE", bad: "BAD .md5 FILE", "size-mismatch": "SIZE ≠ LIST" };

function heldTable(held: readonly HeldArchive[]): string {
  const rows = held.map((h) => [h.role, h.owner, h.file, h.made ? h.made.toISOString().slice(0, 19).replace("T", " ") : "?", formatBytes(h.bytes), CHECK_WORDS[h.checksumFile]]);
  const head = ["ROLE", "OF", "ARCHIVE", "MADE (UTC)", "SIZE", "CHECKSUM"];
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
      if (args.json) console.log(JSON.stringify(held, null, 2));
      else console.log(held.length ? `${heldTable(held)}\n(the CHECKSUM column checks the .md5 file, not the data: shoot verify hashes the archives)` : "no archives held here");
      return 0;
    }
    const a = resolveArchive(cfg, args.archive);
    let entries: ListedEntry[];
    try {
      entries = await listArchive(a.path);
    } catch (e) {
      throw new ShootError("VERIFY_FAILED", `${a.path} cannot be listed: ${errorMessage(e)}`);
    }
    if (args.json) console.log(JSON.stringify(entries, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2));
    else for (const e of entries) console.log(entryLine(e));
    return 0;
  },
});
