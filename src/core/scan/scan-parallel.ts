/**
 * The unchanged check, spread over the cores: most runs of a busy cron find nothing changed,
 * and on a large tree that answer costs one lstat per file. The tree is cut into subtrees
 * (tasks), which this thread and worker threads take from a shared counter; each task's
 * file-list lines come as UTF-8 bytes, a few thousand lines at a time, and this thread
 * compares them in walk order with the recorded list as soon as everything before them has
 * been compared, then lets them go: memory does not grow with the tree. Hard links are settled here, in walk order,
 * since the first name of a linked file may lie in another task.
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

/** A run of a task's lines; the last one (`end`) carries the task's warnings. */
export interface TaskChunk {
  parts: Part[];
  entries: number;
  bytes: number;
  end: boolean;
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

/** Lines a task sends at a time: a large subtree streams to the comparison instead of piling up. */
const CHUNK_LINES = 2048;

/**
 * Collects lines into parts, each run of lines encoded once when it ends: the list is
 * compared as bytes, and bytes pass from a worker to this thread without a copy.
 */
class PartWriter implements LineSink {
  parts: Part[] = [];
  entries = 0;
  bytes = 0;
  private lines: string[] = [];

  /** @param full called when CHUNK_LINES lines wait, to take the parts (or stop the walk by throwing) */
  constructor(private readonly full?: (w: PartWriter) => void) {}

  line(line: string, bytes: number): void {
    this.entries++;
    this.bytes += bytes;
    this.lines.push(line);
    if (this.full && this.lines.length >= CHUNK_LINES) this.full(this);
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

  /** The parts so far, flushed; the writer starts a new run. */
  take(): Part[] {
    this.flush();
    const parts = this.parts;
    this.parts = [];
    return parts;
  }
}

/** The memory a chunk's parts hold, to hand over to another thread without a copy. */
export function transferList(parts: readonly Part[]): ArrayBuffer[] {
  return parts.flatMap((p) => (p instanceof Uint8Array ? [p.buffer as ArrayBuffer] : []));
}

/** Thrown inside a walk when the comparison has decided: the rest of the task is not needed. */
export class WalkStopped extends Error {}

/**
 * Walk one subtree (without its own entry), sending its lines in chunks as they come and the
 * last chunk (`end`, with the task's warnings) when it is done: what a worker does per task.
 * Between chunks it looks at `stop`, set once the comparison no longer needs lines.
 */
export function walkTask(walker: TreeWalker, task: WalkTask, stop: Int32Array, send: (chunk: TaskChunk) => void): void {
  const before = walker.warnings.length;
  let entries = 0;
  let bytes = 0;
  const emit = (w: PartWriter, end: boolean) => {
    const chunk = { parts: w.take(), entries: w.entries - entries, bytes: w.bytes - bytes, end, warnings: end ? walker.warnings.splice(before) : [] };
    entries = w.entries;
    bytes = w.bytes;
    send(chunk);
  };
  const out = new PartWriter((w) => {
    if (Atomics.load(stop, 0) !== 0) throw new WalkStopped();
    emit(w, false);
  });
  walker.lines(task.abs, task.nameJson, out, task.dev);
  emit(out, true);
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
function planWalk(walker: TreeWalker, sources: readonly string[], threads: number, crowded: number): { segments: Segment[]; tasks: WalkTask[]; head: PartWriter } {
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
      if ("walk" in s && !isCrowded(s.walk.abs, crowded)) walker.children(s.walk.abs, s.walk.nameJson, (e) => lead(e, next, s.walk.dev));
      else next.push(s);
    }
    plan = next;
  }
  const tasks: WalkTask[] = [];
  const segments = plan.map((s): Segment => ("walk" in s ? { task: tasks.push(s.walk) - 1 } : s));
  return { segments, tasks, head };
}

/**
 * A directory opened while planning holds a line per child until its turn: one that holds very
 * many entries (its size says so, on every common file system) stays one task, whose lines
 * stream like any other's.
 */
function isCrowded(dir: string, bytes: number): boolean {
  try {
    return fs.lstatSync(dir).size > bytes;
  } catch {
    return false; // the walk itself meets the error, and warns as it always does
  }
}

function workerThreads(): number {
  // lstat stops scaling beyond a few threads (the kernel's directory locks), so a few suffice
  return Math.max(1, Math.min(4, os.availableParallelism()));
}


export interface WorkerRequest {
  setup: WalkSetup;
  tasks: WalkTask[];
  /** Two Int32s shared by every thread: the next task to take, and "stop" once the answer is known. */
  shared: SharedArrayBuffer;
}

export type WorkerReply = { task: number; chunk: TaskChunk } | { done: true; statx: boolean } | { failed: string };

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
  /** Given up: the walk got further ahead of the comparison than it may hold (then the answer is "differs"). */
  ahead?: boolean;
}

/**
 * Lines the walk may hold ahead of the comparison: tasks finish out of order, and one that is
 * slow holds up the comparison of those after it. Past this the check gives up and the server
 * walks on one thread, comparing as it goes: memory must not grow with the tree.
 */
export const HOLD_BYTES = 32 << 20;

/**
 * Walk the sources on every core and compare with the recorded list in `listFile`. A worker
 * that fails makes the answer "differs", never a wrong "same".
 */
export async function quickCompare(sources: readonly string[], setup: WalkSetup, listFile: string, threads = workerThreads(), holdBytes = HOLD_BYTES): Promise<QuickCheck> {
  // opened first: without a list there is nothing to compare with, and no walk is wasted
  const list = new ListCursor(listFile);
  const workers: Worker[] = [];
  const shared = new SharedArrayBuffer(12);
  const [next, stop, sent] = [new Int32Array(shared, 0, 1), new Int32Array(shared, 4, 1), new Int32Array(shared, 8, 1)];
  try {
    const header = list.header();
    if (!header) return { same: false, entries: 0, bytes: 0, warnings: [], threads: 0, statx: false };
    const walker = taskWalker(setup);
    // a directory's size is some 20-70 bytes an entry; its lines in planning take more
    const { segments, tasks, head } = planWalk(walker, sources, threads, holdBytes / 32);
    const compare = new InOrder(list, header, segments, tasks.length, holdBytes, head, stop);
    // what planning met (a mount point not walked into, an unreadable directory) comes first
    compare.planned = walker.warnings.splice(0);
    for (let i = 1; i < Math.min(threads, tasks.length); i++) {
      const w = startWorkerFile("./core/scan/scan.worker.ts", new URL("./scan.worker.ts", import.meta.url));
      workers.push(w);
      w.onmessage = (ev: MessageEvent<WorkerReply>) => compare.reply(ev.data, true);
      w.onerror = (ev) => compare.reply({ failed: ev.message || "a scan worker failed" });
      w.postMessage({ setup, tasks, shared } satisfies WorkerRequest);
    }
    compare.workers = workers.length;
    compare.statx = walker.fast;
    compare.waiting(0);
    await walkHere(walker, tasks, compare, { next, stop, sent });
    compare.drain();
    return await compare.settled;
  } finally {
    Atomics.store(stop, 0, 1);
    for (const w of workers) w.terminate();
    list.close();
  }
}

/**
 * This thread's share of the tasks. Its own lines are compared as they come; the workers'
 * arrive between its tasks. Lines the workers sent that wait for this thread (counted in
 * `sent`, as UTF-8 bytes) count as held: too many, and the check gives up.
 */
async function walkHere(walker: TreeWalker, tasks: WalkTask[], compare: InOrder, shared: { next: Int32Array; stop: Int32Array; sent: Int32Array }): Promise<void> {
  const { next, stop, sent } = shared;
  for (let i = Atomics.add(next, 0, 1); i < tasks.length && Atomics.load(stop, 0) === 0; i = Atomics.add(next, 0, 1)) {
    const task = i;
    try {
      walkTask(walker, tasks[task]!, stop, (chunk) => {
        compare.reply({ task, chunk });
        compare.waiting(Atomics.load(sent, 0));
      });
    } catch (e) {
      if (!(e instanceof WalkStopped)) throw e;
    }
    // the workers' replies are taken here
    await new Promise<void>((resolve) => setImmediate(resolve));
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

/**
 * The comparison, fed by the workers' replies: each task's chunks are compared as soon as every
 * segment before them has been, then let go. Settles once the answer is known: at the first
 * difference, or when every worker has finished and every line has been compared.
 */
class InOrder {
  workers = 0;
  statx = true;
  planned: ScanWarning[] = [];
  readonly settled: Promise<QuickCheck>;
  private settle!: (r: QuickCheck) => void;
  private fail!: (e: unknown) => void;
  private readonly out: QuickCheck;
  private readonly queued: Part[][][];
  private readonly done: boolean[];
  private readonly taskWarnings: ScanWarning[][];
  private readonly firstNames = new Map<string, string>();
  private segment = 0;
  private held = 0;
  /** UTF-8 bytes of the workers' chunks received so far (their `sent` counts them as they go). */
  private received = 0;
  private finished = 0;
  private same: boolean | undefined;

  constructor(
    private readonly list: ListCursor, private readonly header: ListHeader, private readonly segments: Segment[],
    tasks: number, private readonly holdBytes: number, head: PartWriter, private readonly stop: Int32Array,
  ) {
    this.out = { same: false, entries: head.entries, bytes: head.bytes, warnings: [], threads: 0, statx: false };
    this.queued = Array.from({ length: tasks }, () => []);
    this.done = new Array<boolean>(tasks).fill(false);
    this.taskWarnings = Array.from({ length: tasks }, () => []);
    // the planning walk's lines wait too, until their turn comes
    for (const seg of segments) if ("parts" in seg) this.held += heldBy(seg.parts);
    this.settled = new Promise<QuickCheck>((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
    });
    // it may fail while this thread still walks: the caller awaits it after its own share
    this.settled.catch(() => {});
  }

  /** The workers have sent `sent` bytes of lines: what has not arrived yet is held too. */
  waiting(sent: number): void {
    // both counts wrap at 2^32 alike; what is on its way is far less, so the difference is exact
    if (this.same === undefined && this.held + ((sent - this.received) | 0) > this.holdBytes) this.end({ ahead: true });
  }

  reply(m: WorkerReply, fromWorker = false): void {
    if (this.same === false) return;
    try {
      if ("chunk" in m) {
        if (fromWorker) this.received = (this.received + lineBytes(m.chunk.parts)) | 0;
        this.take(m.task, m.chunk);
      }
      else if ("failed" in m) this.end({ failure: m.failed });
      else {
        this.statx &&= m.statx;
        this.finished++;
      }
      this.drain();
      // what could not be compared yet waits
      if (this.held > this.holdBytes) this.end({ ahead: true });
    } catch (e) {
      this.same = false;
      this.fail(e);
    }
  }

  /** Compare what can be compared; settle when the answer is known. */
  drain(): void {
    while (this.same === undefined && this.segment < this.segments.length) {
      const seg = this.segments[this.segment]!;
      if ("parts" in seg) {
        this.held -= heldBy(seg.parts);
        if (!this.compare(seg.parts)) return this.end({});
      } else {
        for (let parts = this.queued[seg.task]!.shift(); parts; parts = this.queued[seg.task]!.shift()) {
          this.held -= heldBy(parts);
          if (!this.compare(parts)) return this.end({});
        }
        if (!this.done[seg.task]) return;
      }
      this.segment++;
    }
    if (this.same !== undefined || this.finished < this.workers) return;
    if (this.segment < this.segments.length) return this.end({ failure: "a task was not walked" });
    this.same = this.list.atEnd() && this.header.entries === this.out.entries;
    Atomics.store(this.stop, 0, 1);
    this.out.warnings.push(...this.planned, ...this.taskWarnings.flat());
    this.settle({ ...this.out, same: this.same, header: this.header, threads: 1 + this.workers, statx: this.statx });
  }

  private take(task: number, chunk: TaskChunk): void {
    this.queued[task]!.push(chunk.parts);
    this.held += heldBy(chunk.parts);
    this.out.entries += chunk.entries;
    this.out.bytes += chunk.bytes;
    if (chunk.end) {
      this.done[task] = true;
      this.taskWarnings[task] = chunk.warnings;
    }
  }

  /** The answer is "differs" (or could not be had): nothing more is compared. */
  private end(why: { failure?: string; ahead?: boolean }): void {
    if (this.same !== undefined) return;
    this.same = false;
    Atomics.store(this.stop, 0, 1);
    this.settle({ ...this.out, ...why, same: false, threads: 1 + this.workers, statx: false });
  }

  private compare(parts: readonly Part[]): boolean {
    for (const p of parts) {
      let chunk: Uint8Array;
      if (p instanceof Uint8Array) chunk = p;
      else {
        const first = this.firstNames.get(p.key);
        if (first === undefined) {
          this.firstNames.set(p.key, p.name);
          chunk = encoder.encode(`${p.file}\n`);
        } else {
          this.out.bytes -= p.size; // a later name holds no content of its own
          chunk = encoder.encode(`${p.later}${JSON.stringify(first)}]\n`);
        }
      }
      if (!this.list.take(chunk)) return false;
    }
    return true;
  }
}

/** The UTF-8 bytes of lines among `parts` (what a worker counts in `sent`). */
export function lineBytes(parts: readonly Part[]): number {
  let n = 0;
  for (const p of parts) if (p instanceof Uint8Array) n += p.byteLength;
  return n;
}

/** About the memory `parts` hold. */
function heldBy(parts: readonly Part[]): number {
  let n = 0;
  for (const p of parts) n += p instanceof Uint8Array ? p.byteLength : 2 * (p.file.length + p.later.length + p.name.length);
  return n;
}
