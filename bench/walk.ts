/**
 * A minimal tree walk that turns a directory into ArchiveEntry values, for the archive tests
 * and the benchmark (production runs get their entries from the scan module). Names are
 * sorted so the order, and therefore the archive, is deterministic.
 */
import fs from "node:fs";
import path from "node:path";
import type { ArchiveEntry } from "../src/core/archive/writer.ts";

export function* walkTree(root: string): Generator<ArchiveEntry> {
  const firstName = new Map<string, string>();
  function* visit(p: string): Generator<ArchiveEntry> {
    const st = fs.lstatSync(p, { bigint: true });
    const base = {
      source: p,
      name: p.replace(/^\/+/, ""),
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: 0,
      mtimeMs: Number(st.mtimeMs),
      mtimeNs: st.mtimeNs,
    };
    if (st.isDirectory()) {
      yield { ...base, type: "dir" };
      for (const n of fs.readdirSync(p).sort()) yield* visit(path.join(p, n));
    } else if (st.isSymbolicLink()) {
      yield { ...base, type: "symlink", linkTarget: fs.readlinkSync(p) };
    } else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? firstName.get(key) : undefined;
      if (first !== undefined) {
        yield { ...base, type: "hardlink", linkTarget: first };
      } else {
        if (st.nlink > 1n) firstName.set(key, base.name);
        yield { ...base, type: "file", size: Number(st.size) };
      }
    }
  }
  yield* visit(path.resolve(root));
}
