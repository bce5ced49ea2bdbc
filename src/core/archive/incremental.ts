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

interface Frame {
  name: string;
  children: DumpdirChild[];
  at: number;
}

function join(dir: string, leaf: string): string {
  return dir === "" ? leaf : `${dir}/${leaf}`;
}

function parentOf(name: string): string {
  const i = name.lastIndexOf("/");
  return i < 0 ? "" : name.slice(0, i);
}

/**
 * Checks an archive's dumpdirs against its file list as both stream by in walk order (see
 * restore/verify.ts): each directory's dumpdir must list exactly the names the list has in it,
 * in the same order, `D` for the directories, `Y` for the names the archive holds and `N` for
 * the others. A listed name the archive does not hold is accounted for only by an `N`.
 */
export class DumpdirCheck {
  private readonly stack: Frame[] = [];
  /** A directory record of this archive carried a dumpdir. */
  seen = false;

  /** @param explained names (archive form) the list may lack although a dumpdir has them: the run warned that they vanished or could not be read */
  constructor(private readonly explained: (name: string) => boolean = () => false) {}

  /** A directory entry of the archive, after its own list line went through `listed`. */
  directory(name: string, dumpdir: string | undefined): string | undefined {
    if (dumpdir === undefined) return undefined;
    this.seen = true;
    const parsed = parseDumpdir(dumpdir);
    if ("problem" in parsed) return `${name === "" ? "/" : `/${name}`}: its directory record is damaged: ${parsed.problem}`;
    this.stack.push({ name, children: parsed.children, at: 0 });
    return undefined;
  }

  /**
   * A name of the list, in list order, with whether the archive holds it. Returns a problem, or
   * "unchanged" for a name the archive does not hold and its directory's dumpdir says so.
   */
  listed(name: string, isDir: boolean, held: boolean): string | "unchanged" | undefined {
    const problem = this.closeUntil(name);
    if (problem) return problem;
    const f = this.stack.at(-1);
    // a directory written without a dumpdir (one the walk could not list) has nothing listed below it
    if (!f || f.name !== parentOf(name)) return undefined;
    const leaf = f.name === "" ? name : name.slice(f.name.length + 1);
    while (f.at < f.children.length && f.children[f.at]!.name !== leaf && this.explained(join(f.name, f.children[f.at]!.name))) f.at++;
    const c = f.children[f.at];
    if (c?.name !== leaf) return `/${f.name}: its dumpdir ${c ? `has ${JSON.stringify(c.name)}` : "ends"} where the list has ${JSON.stringify(leaf)}`;
    f.at++;
    const want = isDir ? "D" : held ? "Y" : "N";
    if (c.flag !== want) return `/${name}: its directory's dumpdir flags it ${c.flag}, but it is ${isDir ? "a directory" : held ? "in the archive" : "not in the archive"}`;
    return held ? undefined : "unchanged";
  }

  /** The list has ended. */
  finish(): string | undefined {
    return this.closeUntil(undefined);
  }

  /** Close the directories the list has left for `name` (all when it is undefined); a name a dumpdir listed and the list did not have is a problem. */
  private closeUntil(name: string | undefined): string | undefined {
    const inside = (dir: string) => name !== undefined && (dir === "" || name.startsWith(`${dir}/`));
    while (this.stack.length > 0 && !inside(this.stack.at(-1)!.name)) {
      const f = this.stack.pop()!;
      const rest = f.children.slice(f.at).filter((c) => !this.explained(join(f.name, c.name)));
      if (rest.length > 0) return `/${f.name}: its dumpdir lists ${rest.slice(0, 3).map((c) => JSON.stringify(c.name)).join(", ")}, which the file list does not have`;
    }
    return undefined;
  }
}
