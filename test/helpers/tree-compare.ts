/**
 * Compare a restored tree with its source: names, types, content, modes, owners, mtimes,
 * link targets and hard links. Used by every test and benchmark that extracts an archive
 * with GNU tar, because a checksum only proves the bytes did not change since they were
 * written, never that they restore.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

export interface TreeEntry {
  type: "dir" | "file" | "symlink" | "other";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  sha256?: string;
  link?: string;
  ino: bigint;
}

/** Every entry under `root`, by path relative to it ("" is the root itself). */
export function snapshotTree(root: string): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  const visit = (p: string, rel: string) => {
    const st = fs.lstatSync(p, { bigint: true });
    const type = st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other";
    out.set(rel, {
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === "file" ? Number(st.size) : 0,
      mtimeNs: st.mtimeNs,
      sha256: type === "file" ? fileSha256(p) : undefined,
      link: type === "symlink" ? fs.readlinkSync(p) : undefined,
      ino: st.ino,
    });
    if (type === "dir") for (const n of fs.readdirSync(p)) visit(path.join(p, n), rel ? `${rel}/${n}` : n);
  };
  visit(root, "");
  return out;
}

function fileSha256(p: string): string {
  const h = crypto.createHash("sha256");
  const fd = fs.openSync(p, "r");
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest("hex");
}

export interface CompareOptions {
  /** Compare owners (meaningful when the extraction ran as root with --numeric-owner). */
  owners?: boolean;
  /** Compare the root directory's own mode and times too. */
  root?: boolean;
  /**
   * The resolution mtimes are compared at: 1 (the default) for archives written from what a
   * walk of the tree saw; 1000 for those a server run writes, whose file list keeps whole
   * microseconds.
   */
  mtimeResolutionNs?: number;
}

/**
 * Every difference between two trees, as readable lines; empty when they are the same.
 * Directory mtimes count: tar sets them after their contents.
 */
export function treeDifferences(source: string, restored: string, opts: CompareOptions = {}): string[] {
  return snapshotDifferences(snapshotTree(source), snapshotTree(restored), opts);
}

/** treeDifferences of two snapshots (a tree as it was when its snapshot was taken). */
export function snapshotDifferences(a: ReadonlyMap<string, TreeEntry>, b: ReadonlyMap<string, TreeEntry>, opts: CompareOptions = {}): string[] {
  const diffs: string[] = [];
  for (const rel of a.keys()) if (!b.has(rel)) diffs.push(`missing: ${JSON.stringify(rel)}`);
  for (const rel of b.keys()) if (!a.has(rel)) diffs.push(`extra: ${JSON.stringify(rel)}`);
  for (const [rel, want] of a) {
    const got = b.get(rel);
    if (!got || (rel === "" && !opts.root)) continue;
    const fields: Array<keyof TreeEntry> = ["type", "size", "sha256", "link", "mode", "mtimeNs"];
    if (opts.owners) fields.push("uid", "gid");
    const res = BigInt(opts.mtimeResolutionNs ?? 1);
    for (const f of fields) {
      if (want.type === "symlink" && f === "mode") continue;
      if (f === "mtimeNs" && res > 1n) {
        const d = want.mtimeNs - got.mtimeNs;
        if (d < res && d > -res) continue;
      }
      if (want[f] !== got[f]) diffs.push(`${JSON.stringify(rel)}: ${f} ${String(got[f])}, expected ${String(want[f])}`);
    }
  }
  // names sharing an inode in the source share one after extraction, and no others do
  const groups = new Map<bigint, string[]>();
  for (const [rel, e] of a) if (e.type === "file") groups.set(e.ino, [...(groups.get(e.ino) ?? []), rel]);
  for (const names of groups.values()) {
    const inos = new Set(names.map((n) => b.get(n)?.ino));
    if (inos.size > 1) diffs.push(`hard links split: ${names.map((n) => JSON.stringify(n)).join(", ")}`);
  }
  const restoredGroups = new Map<bigint, number>();
  for (const [rel, e] of b) if (e.type === "file" && a.has(rel)) restoredGroups.set(e.ino, (restoredGroups.get(e.ino) ?? 0) + 1);
  const sourceGroupSizes = new Map<string, number>();
  for (const names of groups.values()) for (const n of names) sourceGroupSizes.set(n, names.length);
  for (const [rel, e] of b) {
    if (e.type !== "file" || !a.has(rel)) continue;
    if ((restoredGroups.get(e.ino) ?? 0) !== (sourceGroupSizes.get(rel) ?? 1)) diffs.push(`hard links joined: ${JSON.stringify(rel)}`);
  }
  return diffs;
}
