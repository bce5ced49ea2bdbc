/**
 * The unchanged check, spread over the cores: most runs of a busy cron find nothing changed,
 * and on a large tree that answer costs one lstat per file. The tree is cut into subtrees
 * (tasks), which worker threads and this thread take from a shared counter; each task's
 * file-list lines come back as UTF-8 bytes, compared in order with the recorded list. Hard
 * links are settled here, in walk order, since the first name of a linked file may lie in
 * another task.
 *
 * The answer is only ever "exactly the recorded list" or "something differs"; in the second
 * case the server walks again the ordinary way (scanSources) to make the archive.
 */
import fs from "node:fs";
import os from "node:os";
import { compileExcludes } from "./exclude.ts";
import { openStatx } from "./statx.ts";
import { entryLine, listStart, normaliseSources, TreeWalker, type LineSink, type ListHeader, type ScanEntry, type ScanWarning } from "./scan.ts";
import { startWorkerFile } from "../common/worker-file.ts";
import { listChunks } from "../state/list-file.ts";

/** A file with more than one link: its line depends on whether its first name came earlier. */
interface LinkedFile {
  key: string;
  name: string;
  size: number;
  /** Its line as the first name (a file). */
  file: string;
  /** Its line as a later name, less the link target and the closing bracket. */
  later: string;
}

/** A run of whole lines ("…\n") as UTF-8, or one linked file. */
type Part = Uint8Array | LinkedFile;

export interface TaskResult {
  parts: Part[];
  entries: number;
  bytes: number;
  warnings: ScanWarning[];
}

export interface WalkTask {
  abs: string;
  nameJson: string;
  /** The device of `abs`. */
  dev: number;
}

export interface WalkSetup {
  excludes: readonly string[];
  skip: readonly string[];
  oneFileSystem?: boolean;
}

const encoder = new TextEncoder();

/**
 * Collects lines into parts, each run of lines encoded once when it ends: the list is
 * compared as bytes, and bytes pass from a worker to this thread without a copy.
 */
class PartWriter implements LineSink {
  readonly parts: Part[] = [];
  entries = 0;
  bytes = 0;
  private lines: string[] = [];

  line(line: string, bytes: number): void {
    this.entries++;
    this.bytes += bytes;
    this.lines.push(line);
  }

  linked(key: string, name: string, bytes: number, file: string, laterWithEmptyTarget: string): void {
    this.entries++;
    this.bytes += bytes;
    this.flush();
    this.parts.push({ key, name, size: bytes, file, later: laterWithEmptyTarget.slice(0, -3) });
  }

  /** An entry the planning walk made (a source, or a level opened to find subtrees). */
  add(e: ScanEntry): void {
    if (e.name === "") return; // the root itself is not an entry
    if (e.linkKey === undefined) this.line(entryLine(e), e.type === "file" ? e.size : 0);
    else this.linked(e.linkKey, e.name, e.size, entryLine(e), entryLine({ ...e, type: "hardlink", size: 0, linkTarget: "" }));
  }

  flush(): void {
    if (this.lines.length) this.parts.push(encoder.encode(`${this.lines.join("\n")}\n`));
    this.lines = [];
  }
}

/** The memory a result's parts hold, to hand over to another thread without a copy. */
export function transferList(r: TaskResult): ArrayBuffer[] {
  return r.parts.flatMap((p) => (p instanceof Uint8Array ? [p.buffer as ArrayBuffer] : []));
}

/** Walk one subtree (without its own entry) into parts: what a worker does per task. */
export function walkTask(walker: TreeWalker, task: WalkTask): TaskResult {
  const out = new PartWriter();
  const before = walker.warnings.length;
  walker.lines(task.abs, task.nameJson, out, task.dev);
  out.flush();
  return { parts: out.parts, entries: out.entries, bytes: out.bytes, warnings: walker.warnings.splice(before) };
}

export function taskWalker(setup: WalkSetup): TreeWalker {
  return new TreeWalker(compileExcludes(setup.excludes), setup.skip, undefined, undefined, openStatx(), setup.oneFileSystem);
}

/** A segment of the walk in order: lines already known, or a subtree still to walk. */
type Segment = { parts: Part[] } | { task: number };

/** Enough tasks that threads finishing at different times still share the work fairly. */
const TASKS_PER_THREAD = 4;
const MAX_EXPANSIONS = 6;

/**
 * Cut the sources into the walk's order: each source's entry, then its subtrees as tasks.
 * While there are too few tasks, the subtrees are opened one level further (a source with a
 * single huge directory still spreads).
 */
function planWalk(walker: TreeWalker, sources: readonly string[], threads: number): { segments: Segment[]; tasks: WalkTask[]; head: PartWriter } {
  const head = new PartWriter();
  let plan: Array<{ parts: Part[] } | { walk: WalkTask }> = [];
  const lead = (e: ScanEntry, into: typeof plan, parentDev: number | undefined): void => {
    const w = new PartWriter();
    w.add(e);
    w.flush();
    head.entries += w.entries;
    head.bytes += w.bytes;
    into.push({ parts: w.parts });
    if (e.type === "dir" && walker.descends(e.source, e.dev, parentDev)) into.push({ walk: { abs: e.source, nameJson: e.nameJson, dev: e.dev } });
  };
  for (const src of normaliseSources(sources)) {
    const e = walker.source(src);
    if (e) lead(e, plan, undefined);
  }
  let before = 0;
  for (let round = 0; round < MAX_EXPANSIONS; round++) {
    const open = plan.filter((s) => "walk" in s).length;
    // a level with fewer subtrees than the one above it is where the tree narrows: stop there
    if (open === 0 || open >= threads * TASKS_PER_THREAD || open < before) break;
    before = open;
    const next: typeof plan = [];
    for (const s of plan) {
      if ("walk" in s) walker.children(s.walk.abs, s.walk.nameJson, (e) => lead(e, next, s.walk.dev));
      else next.push(s);
    }
    plan = next;
  }
  const tasks: WalkTask[] = [];
  const segments = plan.map((s): Segment => ("walk" in s ? { task: tasks.push(s.walk) - 1 } : s));
  return { segments, tasks, head };
}

function workerThreads(): number {
  // lstat stops scaling beyond a few threads (the kernel's directory locks), so a few suffice
  return Math.max(1, Math.min(4, os.availableParallelism()));
}


export interface WorkerRequest {
  setup: WalkSetup;
  tasks: WalkTask[];
  /** One Int32: the next task to take, shared by every thread. */
  next: SharedArrayBuffer;
}

export type WorkerReply = { task: number; result: TaskResult } | { done: true; statx: boolean } | { failed: string };

export interface QuickCheck {
  /** True when the walk gives exactly the recorded list's lines, in order. */
  same: boolean;
  entries: number;
  bytes: number;
  warnings: ScanWarning[];
  /** Threads that walked: this one and the workers given tasks. */
  threads: number;
  /** Every thread looked entries up with statx (statx.ts), none with lstat by path. */
  statx: boolean;
  /** Why a worker could not finish (the answer is then "differs"). */
  failure?: string;
  /** The recorded list's header, when it has one. */
  header?: ListHeader;
  /** Not walked: the list holds more entries than the parallel walk takes on. */
  tooLarge?: boolean;
}

/**
 * The walk's lines are held until they can be compared in order, about 100 bytes a file. Above
 * this many entries (some 40 MB of lines) the server's one-thread walk, which compares as it
 * goes and holds nothing, is used instead: memory must not grow with the tree.
 */
export const MAX_ENTRIES = 400_000;

/**
 * Walk the sources on every core and compare with the recorded list in `listFile`. A worker
 * that fails makes the answer "differs", never a wrong "same".
 */
export async function quickCompare(sources: readonly string[], setup: WalkSetup, listFile: string, threads = workerThreads(), maxEntries = MAX_ENTRIES): Promise<QuickCheck> {
  // opened first: without a list there is nothing to compare with, and no walk is wasted
  const list = new ListCursor(listFile);
  let header: ListHeader | undefined;
  try {
    header = list.header();
  } catch (e) {
    list.close();
    throw e;
  }
  if (!header || header.entries > maxEntries) {
    list.close();
    return { same: false, entries: 0, bytes: 0, warnings: [], threads: 0, statx: false, header, tooLarge: header !== undefined };
  }
  const walker = taskWalker(setup);
  const workers: Worker[] = [];
  const pending: Array<Promise<void>> = [];
  const results: Array<TaskResult | undefined> = [];
  let failure: string | undefined;
  let statx = walker.fast;
  try {
    for (let i = 1; i < threads; i++) workers.push(startWorkerFile("./core/scan/scan.worker.ts", new URL("./scan.worker.ts", import.meta.url)));
    const { segments, tasks, head } = planWalk(walker, sources, threads);
    const next = new SharedArrayBuffer(4);
    const counter = new Int32Array(next);
    const useWorkers = tasks.length > 1 ? workers : [];
    for (const w of useWorkers) {
      pending.push(
        new Promise<void>((resolve) => {
          w.onmessage = (ev: MessageEvent<WorkerReply>) => {
            const m = ev.data;
            if ("task" in m) results[m.task] = m.result;
            else {
              if ("failed" in m) failure ??= m.failed;
              else statx &&= m.statx;
              resolve();
            }
          };
          w.onerror = (ev) => {
            failure ??= ev.message || "a scan worker failed";
            resolve();
          };
        }),
      );
      w.postMessage({ setup, tasks, next } satisfies WorkerRequest);
    }
    for (let i = Atomics.add(counter, 0, 1); i < tasks.length; i = Atomics.add(counter, 0, 1)) results[i] = walkTask(walker, tasks[i]!);
    await Promise.all(pending);

    const out: QuickCheck = { same: false, entries: head.entries, bytes: head.bytes, warnings: [...walker.warnings], threads: 1 + useWorkers.length, statx, failure };
    for (const r of results) {
      if (!r) continue;
      out.entries += r.entries;
      out.bytes += r.bytes;
      out.warnings.push(...r.warnings);
    }
    if (failure === undefined && (results.length < tasks.length || results.some((r) => !r))) out.failure = "a task was not walked";
    if (out.failure !== undefined) return out;
    out.header = header;
    out.same = sameLines(list, header, segments, results as TaskResult[], out);
    return out;
  } finally {
    for (const w of workers) w.terminate();
    list.close();
  }
}

/**
 * The recorded list, read a piece at a time as the comparison goes (a compressed list's
 * members, a plain list's pieces through one buffer): a 100k-entry list is 10 MB, and fresh
 * memory for all of it cost more than reading it (page faults).
 */
class ListCursor {
  private readonly pieces: Generator<Uint8Array>;
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;
  private end = 0;

  constructor(file: string) {
    this.pieces = listChunks(file);
    // opened now: a missing list is told before any walk
    this.fill();
  }

  /** The header line, or undefined when the list does not start with one; read once, first. */
  header(): ListHeader | undefined {
    const s = listStart(this.buf.subarray(0, this.end));
    if (!s) return undefined;
    this.start = s.pos;
    return s.header;
  }

  /** True when the list goes on with exactly `chunk`, which is then consumed. */
  take(chunk: Uint8Array): boolean {
    for (let at = 0; at < chunk.length; ) {
      if (this.start === this.end && !this.fill()) return false;
      const n = Math.min(chunk.length - at, this.end - this.start);
      if (this.buf.compare(chunk, at, at + n, this.start, this.start + n) !== 0) return false;
      at += n;
      this.start += n;
    }
    return true;
  }

  atEnd(): boolean {
    return this.start === this.end && !this.fill();
  }

  close(): void {
    this.pieces.return(undefined);
  }

  private fill(): boolean {
    let next = this.pieces.next();
    while (!next.done && next.value.length === 0) next = this.pieces.next();
    const piece = next.done ? new Uint8Array(0) : next.value;
    this.buf = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    this.start = 0;
    this.end = this.buf.length;
    return this.end > 0;
  }
}

/** Compare the walk's lines, in order, with the list; settles hard links on the way. */
function sameLines(list: ListCursor, header: ListHeader, segments: Segment[], results: TaskResult[], out: QuickCheck): boolean {
  const firstNames = new Map<string, string>();
  for (const seg of segments) {
    for (const p of "task" in seg ? results[seg.task]!.parts : seg.parts) {
      let chunk: Uint8Array;
      if (p instanceof Uint8Array) chunk = p;
      else {
        const first = firstNames.get(p.key);
        if (first === undefined) {
          firstNames.set(p.key, p.name);
          chunk = encoder.encode(`${p.file}\n`);
        } else {
          out.bytes -= p.size; // a later name holds no content of its own
          chunk = encoder.encode(`${p.later}${JSON.stringify(first)}]\n`);
        }
      }
      if (!list.take(chunk)) return false;
    }
  }
  return list.atEnd() && header.entries === out.entries;
}
