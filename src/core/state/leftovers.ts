/**
 * What an interrupted run can leave in a backup directory, and its removal. Only temporary
 * files and the checksum, list and piece index files of an archive that does not exist are
 * removed: a file under a final archive name is never touched here.
 */
import fs from "node:fs";
import path from "node:path";
import { CHECKSUM_SUFFIX, LIST_SUFFIX, PIECES_SUFFIX, TEMP_PREFIX, isArchiveName } from "./naming.ts";

export interface Leftovers {
  removed: string[];
  failed: string[];
}

export function removeLeftovers(dir: string): Leftovers {
  const out: Leftovers = { removed: [], failed: [] };
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out;
  }
  const present = new Set(names);
  for (const n of names) {
    let orphan = false;
    for (const suffix of [CHECKSUM_SUFFIX, LIST_SUFFIX, PIECES_SUFFIX]) {
      if (n.endsWith(suffix)) {
        const archive = n.slice(0, -suffix.length);
        orphan = isArchiveName(archive) && !present.has(archive);
      }
    }
    if (!n.startsWith(TEMP_PREFIX) && !orphan) continue;
    try {
      fs.rmSync(path.join(dir, n), { force: true, recursive: true });
      out.removed.push(n);
    } catch {
      out.failed.push(n);
    }
  }
  return out;
}
