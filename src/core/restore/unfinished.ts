/**
 * A note in the target directory while a restore writes there. A restore stopped part way
 * (killed, the machine down, Ctrl-C, the disk full) leaves it behind, so that the next restore
 * into the same directory can say what happened and what it will do; a restore that wrote
 * everything it could removes it.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { code } from "../common/codes.ts";
import { ShootError, errnoCode } from "../common/errors.ts";
import type { RestoreOptions, RestoreResult } from "./restore.ts";

export const UNFINISHED_NOTE = ".shoot-restore-unfinished";

export interface UnfinishedRestore {
  archive: string;
  /** When it began writing (ISO 8601). */
  started: string;
  host: string;
  pid: number;
}

/** Outcomes after which everything the archive gave was written, or refused by name. */
const FINISHED = new Set([0, code("RESTORE_UNSAFE"), code("RESTORE_CONFLICT"), code("ARCHIVE_UNSUPPORTED")]);

export function finishedWriting(exitCode: number): boolean {
  return FINISHED.has(exitCode);
}

/** What stands by the note's name: an earlier restore's note, something else, or nothing. */
type Earlier = UnfinishedRestore | "unreadable" | undefined;

/** The note an earlier restore left in `to`; "unreadable" when something stands there that is not one. */
export function earlierUnfinished(to: string): Earlier {
  const file = path.join(to, UNFINISHED_NOTE);
  try {
    const st = fs.lstatSync(file);
    if (!st.isFile() || st.size > 4096) return "unreadable";
    const n = JSON.parse(fs.readFileSync(file, "utf8")) as Partial<UnfinishedRestore>;
    // a note comes from the target, which an archive restored there before may have written: only plain text is told
    const ok = printable(n.archive) && printable(n.started) && printable(n.host) && Number.isInteger(n.pid);
    return ok ? (n as UnfinishedRestore) : "unreadable";
  } catch (e) {
    const c = errnoCode(e);
    return c === "ENOENT" || c === "ENOTDIR" ? undefined : "unreadable";
  }
}

function printable(x: unknown): x is string {
  return typeof x === "string" && x.length <= 1024 && !/[\u0000-\u001f\u007f-\u009f]/.test(x);
}

/** How the note reads in a message. */
export function describeUnfinished(n: UnfinishedRestore | "unreadable", to: string): string {
  if (n === "unreadable") return `${path.join(to, UNFINISHED_NOTE)} is there but is not a note shoot can read`;
  return `a restore of ${n.archive} into ${to} begun ${n.started} (process ${n.pid} on ${n.host}) did not finish`;
}

/**
 * The note of this restore: written just before its first file, removed when it has written
 * everything. Best effort: a note that cannot be written never stops a restore.
 */
export class UnfinishedNote {
  /** The target, once this restore began to write there. */
  began: string | undefined;
  private written: { dev: number; ino: number; text: string } | undefined;

  constructor(private readonly archive: string, private readonly now: () => Date) {}

  /** Before writing into `root` (the target, resolved); once, whatever it is called for after. */
  mark(root: string): void {
    if (this.began !== undefined) return;
    this.began = root;
    const file = path.join(root, UNFINISHED_NOTE);
    const started = this.now().toISOString();
    const note: UnfinishedRestore = { archive: this.archive, started, host: os.hostname(), pid: process.pid };
    try {
      // an earlier one's note is replaced; anything else by that name is left alone (wx: never through a link)
      const before = earlierUnfinished(root);
      if (before !== undefined && before !== "unreadable") fs.unlinkSync(file);
      const fd = fs.openSync(file, "wx", 0o600);
      try {
        const text = `${JSON.stringify(note)}\n`;
        fs.writeSync(fd, text);
        const st = fs.fstatSync(fd);
        this.written = { dev: st.dev, ino: st.ino, text };
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      // the restore goes on without it
    }
  }

  /** What a message says of it while it stays. */
  says(): string {
    const root = this.began ?? "";
    const file = path.join(root, UNFINISHED_NOTE);
    const where = this.written ? `${file} says so until a restore into ${root} finishes: ` : "";
    return `${where}${AGAIN}`;
  }

  /** Remove the note, only if it is still the file this restore wrote (an inode's number may be used again). */
  remove(): void {
    const w = this.written;
    if (!w || this.began === undefined) return;
    const file = path.join(this.began, UNFINISHED_NOTE);
    try {
      const st = fs.lstatSync(file);
      const ours = st.isFile() && st.dev === w.dev && st.ino === w.ino && st.size === Buffer.byteLength(w.text);
      if (ours && fs.readFileSync(file, "utf8") === w.text) fs.unlinkSync(file);
    } catch {
      // gone already
    }
    this.written = undefined;
  }
}

const AGAIN = "run the same command again with --force to finish it (it writes the files that exist again)";

/**
 * Run a restore (`run`, of `archive`) with its note: written before its first file, removed
 * once it has written everything; what an earlier restore's note says, and what to do about
 * it, added to the outcome.
 */
export async function restoreNoting(
  archive: string,
  opts: RestoreOptions,
  run: (opts: RestoreOptions) => Promise<RestoreResult>,
  now: () => Date,
): Promise<RestoreResult> {
  const earlier = earlierUnfinished(opts.to);
  const note = new UnfinishedNote(archive, now);
  let r: RestoreResult;
  try {
    r = await run({ ...opts, beforeWriting: (root) => note.mark(root) });
  } catch (e) {
    throw stoppedWith(e, note, earlier, opts);
  }
  const finished = finishedWriting(r.code);
  if (finished) note.remove();
  const said = [r.message, ofEarlier(earlier, archive, r, finished && note.began !== undefined)];
  if (!finished && note.began !== undefined) said.push(note.says());
  const message = said.filter((x) => x !== undefined).join("; ");
  return earlier === undefined ? { ...r, message } : { ...r, message, earlierUnfinished: earlier };
}

/** What the outcome says of an earlier restore's note; `finishedIt`: this one wrote everything after it. */
function ofEarlier(
  earlier: Earlier, archive: string, r: RestoreResult, finishedIt: boolean,
): string | undefined {
  if (earlier === undefined) return undefined;
  if (earlier === "unreadable") return `${describeUnfinished(earlier, r.to)} (left alone)`;
  if (r.code === code("RESTORE_EXISTS")) return `${describeUnfinished(earlier, r.to)}: ${AGAIN}`;
  if (!finishedIt) return undefined;
  if (earlier.archive === archive) {
    return `it finished the restore of ${archive} begun ${earlier.started}, which had stopped part way`;
  }
  return `${describeUnfinished(earlier, r.to)}: what that wrote and ${archive} does not hold is still there`;
}

/** What a restore that threw says: a signal is INTERRUPTED, an earlier note is named beside a refusal. */
function stoppedWith(e: unknown, note: UnfinishedNote, earlier: Earlier, opts: RestoreOptions): unknown {
  if (opts.signal?.aborted) {
    const by = `interrupted by ${String(opts.signal.reason ?? "a signal")}`;
    if (note.began !== undefined) {
      return new ShootError("INTERRUPTED", `${by} part way: what was written stays; ${note.says()}`);
    }
    return new ShootError("INTERRUPTED", `${by} before anything was written; nothing was restored`);
  }
  if (e instanceof ShootError && e.code === code("RESTORE_EXISTS") && earlier !== undefined) {
    const told = describeUnfinished(earlier, opts.to);
    const said = earlier === "unreadable" ? `${told} (left alone)` : `${told}: ${AGAIN}`;
    return new ShootError("RESTORE_EXISTS", `${e.message}; ${said}`, { cause: e });
  }
  return e;
}
