/**
 * GNU tar's incremental format, as far as shoot writes and reads it. Facts relied on, checked
 * against GNU tar 1.34 (`tar -x --listed-incremental=/dev/null`, its incremen.c):
 *
 * - Each directory of an incremental archive carries a "dumpdir": one record per name in it,
 *   the flag letter then the name then a NUL, and a NUL after the last record (an empty
 *   directory's dumpdir is a single NUL). `Y`: a non-directory this archive holds; `N`: a
 *   non-directory this archive does not hold (unchanged since the archive it was made
 *   against); `D`: a directory (which has its own record). GNU tar also writes `R`/`T` pairs
 *   for renamed directories and `X` for a temporary name; shoot never does: a renamed
 *   directory is written again whole, like a new one.
 * - In a pax archive the dumpdir is the pax record `GNU.dumpdir` of an ordinary directory
 *   entry (typeflag '5'), which is how GNU tar writes it with --format=posix; other readers
 *   see a plain directory. (GNU's own format uses typeflag 'D' with the dumpdir as content.)
 * - Extracting a directory with a dumpdir, GNU tar first deletes (recursively) every name in
 *   that directory on disk that the dumpdir does not list, or lists as `D` while lstat finds
 *   no directory, or lists as `Y` while lstat finds a directory. Nothing else about Y and N
 *   matters to it: an `N` name is left as it is, and a member is extracted whether its flag
 *   says so or not. A directory without a dumpdir is not purged at all.
 * - So a directory's record must come before anything written inside it (a file that became
 *   a directory is deleted by its parent's record before the directory's own), which the walk
 *   order (a directory, then what it holds) gives; and a hard link's target before the link,
 *   which the walk also gives (its first name carries the content). A hard link to a name the
 *   archive does not hold links to the file an earlier archive restored.
 * - Extracting over an existing file, link or symbolic link, GNU tar replaces it.
 *
 * GNU tar picks what goes into an incremental archive by ctime, which a change of mode, owner
 * or link count moves as well as one of content; shoot's file list records ctime (and inode,
 * mode, owner, size, mtime, link target) for every entry, so any of those changes makes the
 * entry differ from the base's list and puts it in the archive (scan/changes.ts).
 */

export type DumpdirFlag = "Y" | "N" | "D";

/** One name of a dumpdir. */
export interface DumpdirChild {
  flag: DumpdirFlag;
  name: string;
}

/** Appends one record to a dumpdir being built. */
export function dumpdirRecord(flag: DumpdirFlag, name: string): string {
  return `${flag}${name}\0`;
}

/** The dumpdir of a directory from its records (in the order the walk meets the names). */
export function finishDumpdir(records: string): string {
  return `${records}\0`;
}

/**
 * The names of a dumpdir in order, or why it is not one shoot writes (rename records, a name
 * with a "/" or empty, a missing terminator).
 */
export function parseDumpdir(value: string): { children: DumpdirChild[] } | { problem: string } {
  if (!value.endsWith("\0")) return { problem: "it does not end with a NUL" };
  const children: DumpdirChild[] = [];
  let at = 0;
  while (at < value.length - 1) {
    const end = value.indexOf("\0", at);
    const flag = value[at];
    const name = value.slice(at + 1, end);
    if (flag !== "Y" && flag !== "N" && flag !== "D") {
      return { problem: flag === "R" || flag === "T" || flag === "X" ? `it holds a rename record (${flag}), which shoot never writes` : `unknown record ${JSON.stringify(value.slice(at, end))}` };
    }
    if (name === "" || name.includes("/")) return { problem: `a record names ${JSON.stringify(name)}, which is not a name in a directory` };
    children.push({ flag, name });
    at = end + 1;
  }
  if (at !== value.length - 1) return { problem: "its last record is not followed by the closing NUL" };
  return { children };
}
