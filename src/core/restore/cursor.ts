/**
 * The directory a restore writes into, held open: the descriptors of each component of the
 * current path below the target, each opened from its parent without following a link
 * (at.ts). Entries come in archive order, which keeps siblings together, so the next entry's
 * parent is nearly always open already: one openat of the file itself is all the per-file
 * lookup there is. A link or file where a directory belongs stops the walk (ENOTDIR, ELOOP):
 * nothing is ever made through one.
 *
 * Only the deepest MAX_OPEN components stay open, and every RUNG-th one above them, so that
 * a tree thousands of levels deep needs no more than a hundred descriptors; an ancestor closed
 * that way is opened again from the rung above it when the walk climbs back to it (a climb
 * from the bottom of such a tree to its top opens each level once more, no more).
 */
import { errnoCode } from "../common/errors.ts";
import type { At } from "./at.ts";

const MAX_OPEN = 64;
const RUNG = 64;

export class DirCursor {
  private readonly names: string[] = [];
  /** The descriptor of each component in `names`, or -1 where it was closed to save descriptors. */
  private readonly fds: number[] = [];
  private open = 0;

  /**
   * @param modeFor the mode a missing directory is made with, by its key ("a/b"); the caller
   *   sets the modes of the directories the archive holds at the end
   * @param release closes the descriptor of a directory (by its key) the walk leaves: where
   *   another thread may still use it, that thread does, after its last use
   */
  constructor(
    private readonly at: At,
    private readonly rootFd: number,
    private readonly modeFor: (key: string) => number,
    private readonly release: (key: string, fd: number) => void = (_k, fd) => at.close(fd),
  ) {}

  /**
   * The directory made of the first `count` of `parts` (the target itself for 0). With
   * `create`, missing directories are made.
   */
  dir(parts: readonly string[], count: number, create: boolean): number {
    let same = 0;
    const n = Math.min(count, this.names.length);
    while (same < n && this.names[same] === parts[same]) same++;
    this.truncate(same);
    for (let i = same; i < count; i++) {
      const parent = this.fdAt(i - 1);
      const name = parts[i]!;
      let fd: number;
      try {
        fd = this.at.openDir(parent, name);
      } catch (e) {
        if (!create || errnoCode(e) !== "ENOENT") throw notADirectory(e, parts, i);
        try {
          this.at.mkdir(parent, name, this.modeFor(parts.slice(0, i + 1).join("/")));
        } catch (e2) {
          if (errnoCode(e2) !== "EEXIST") throw e2;
        }
        try {
          fd = this.at.openDir(parent, name);
        } catch (e3) {
          throw notADirectory(e3, parts, i);
        }
      }
      this.names.push(name);
      this.fds.push(fd);
      this.open++;
      this.trim();
    }
    return this.fdAt(count - 1);
  }

  /** Close everything held. */
  close(): void {
    this.truncate(0);
  }

  private fdAt(i: number): number {
    if (i < 0) return this.rootFd;
    if (this.fds[i]! >= 0) return this.fds[i]!;
    // closed to save descriptors: open again from the nearest ancestor still open
    let j = i - 1;
    while (j >= 0 && this.fds[j]! < 0) j--;
    let fd = j < 0 ? this.rootFd : this.fds[j]!;
    for (let k = j + 1; k <= i; k++) {
      try {
        fd = this.at.openDir(fd, this.names[k]!);
      } catch (e) {
        throw notADirectory(e, this.names, k);
      }
      this.fds[k] = fd;
      this.open++;
    }
    return fd;
  }

  private truncate(n: number): void {
    while (this.names.length > n) {
      const fd = this.fds.pop()!;
      if (fd >= 0) {
        this.release(this.names.join("/"), fd);
        this.open--;
      }
      this.names.pop();
    }
  }

  /** Close the components above the deepest MAX_OPEN, but for every RUNG-th. */
  private trim(): void {
    if (this.open <= MAX_OPEN + this.fds.length / RUNG) return;
    for (let i = 0; i < this.fds.length - MAX_OPEN; i++) {
      if (this.fds[i]! < 0 || i % RUNG === RUNG - 1) continue;
      this.release(this.names.slice(0, i + 1).join("/"), this.fds[i]!);
      this.fds[i] = -1;
      this.open--;
    }
  }
}

/** What a walk met where a directory belongs, in words (the errno stays for the caller). */
function notADirectory(e: unknown, parts: readonly string[], i: number): unknown {
  const c = errnoCode(e);
  if (c !== "ENOTDIR" && c !== "ELOOP") return e;
  const where = parts.slice(0, i + 1).join("/");
  return Object.assign(new Error(`${where} is not a directory here (a link or a file is in the way): nothing is made through it`), { code: c });
}
