/**
 * The unchanged check, spread over the cores: most runs of a busy cron find nothing changed,
 * and on a large tree that answer costs one lstat per file. The tree is cut into subtrees
 * (tasks), which this thread and worker threads take from a shared counter; each task's
 * file-list lines come as UTF-8 bytes, a few thousand lines at a time, and this thread
 * compares them in walk order with the recorded list as soon as everything before them has
 * been compared, then lets them go: memory does not grow with the tree. Hard links are settled
 * here, in walk order, since the first name of a linked file may lie in another task.
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
  /** UTF-8 bytes of its lines: what it holds while it waits for its turn. */
  size: number;
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
class WalkStopped extends Error {}

/**
 * Counters every thread shares (Int32s of one SharedArrayBuffer): the next task to take;
 * "stop", set once the answer is known; and the UTF-8 bytes of lines sent so far, so that the
 * comparing thread can count what is on its way to it as held.
 */
export interface Shared {
  next: Int32Array;
  stop: Int32Array;
  sent: Int32Array;
}

export function sharedCounters(buffer = new SharedArrayBuffer(12)): Shared & { buffer: SharedArrayBuffer } {
  const at = (i: number) => new Int32Array(buffer, 4 * i, 1);
  return { buffer, next: at(0), stop: at(1), sent: at(2) };
}

/**
 * Take tasks from the shared counter until none are left or the answer is known, sending
 * each task's lines as they come: what a worker does, and this thread's share. `between`
 * runs after each task (this thread takes the workers' replies there).
 */
export async function walkTasks(
  walker: TreeWalker, tasks: readonly WalkTask[], shared: Shared,
  send: (task: number, chunk: TaskChunk) => void, between?: () => Promise<void>,
): Promise<void> {
  for (let task = Atomics.add(shared.next, 0, 1); task < tasks.length; task = Atomics.add(shared.next, 0, 1)) {
    if (Atomics.load(shared.stop, 0) !== 0) return;
    try {
      walkTask(walker, tasks[task]!, shared, (chunk) => send(task, chunk));
    } catch (e) {
      if (e instanceof WalkStopped) return;
      throw e;
    }
    await between?.();
  }
}

/**
 * Walk one subtree (without its own entry), sending its lines in chunks as they come and the
 * last chunk (`end`, with the task's warnings) when it is done. Each chunk is counted in
 * `sent` before it goes; between chunks the walk looks at `stop`.
 */
function walkTask(walker: TreeWalker, task: WalkTask, shared: Shared, send: (chunk: TaskChunk) => void): void {
  const before = walker.warnings.length;
  let entries = 0;
  let bytes = 0;
  const emit = (w: PartWriter, end: boolean) => {
    const parts = w.take();
    const size = lineBytes(parts);
    const warnings = end ? walker.warnings.splice(before) : [];
    const chunk = { parts, size, entries: w.entries - entries, bytes: w.bytes - bytes, end, warnings };
    entries = w.entries;
    bytes = w.bytes;
    Atomics.add(shared.sent, 0, size);
    send(chunk);
  };
  const out = new PartWriter((w) => {
    if (Atomics.load(shared.stop, 0) !== 0) throw new WalkStopped();
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

/** The walk cut up: its segments in order, the subtrees to walk, and the planning walk's counts. */
interface Plan {
  segments: Segment[];
  tasks: WalkTask[];
  head: PartWriter;
}

/** Enough tasks that threads finishing at different times still share the work fairly. */
const TASKS_PER_THREAD = 4;
const MAX_EXPANSIONS = 6;

/**
 * Cut the sources into the walk's order: each source's entry, then its subtrees as tasks.
 * While there are too few tasks, the subtrees are opened one level further (a source with a
 * single huge directory still spreads).
 */
function planWalk(walker: TreeWalker, sources: readonly string[], threads: number, crowded: number): Plan {
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
      if (!("walk" in s) || isCrowded(s.walk.abs, crowded)) next.push(s);
      else walker.children(s.walk.abs, s.walk.nameJson, (e) => lead(e, next, s.walk.dev));
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
export async function quickCompare(
  sources: readonly string[], setup: WalkSetup, listFile: string, threads = workerThreads(), holdBytes = HOLD_BYTES,
): Promise<QuickCheck> {
  // opened first: without a list there is nothing to compare with, and no walk is wasted
  const list = new ListCursor(listFile);
  const workers: Worker[] = [];
  const shared = sharedCounters();
  try {
    const header = list.header();
    if (!header) return { same: false, entries: 0, bytes: 0, warnings: [], threads: 0, statx: false };
    const walker = taskWalker(setup);
    // a directory's size is some 20-70 bytes an entry; its lines in planning take more
    const plan = planWalk(walker, sources, threads, holdBytes / 32);
    const compare = new InOrder(list, header, plan, {
      holdBytes, shared, workers: Math.max(0, Math.min(threads, plan.tasks.length) - 1), statx: walker.fast,
      // what planning met (a mount point not walked into, an unreadable directory) comes first
      planned: walker.warnings.splice(0),
    });
    for (let i = 0; i < compare.workers; i++) {
      const w = startWorkerFile("./core/scan/scan.worker.ts", new URL("./scan.worker.ts", import.meta.url));
      workers.push(w);
      w.onmessage = (ev: MessageEvent<WorkerReply>) => compare.reply(ev.data);
      w.onerror = (ev) => compare.reply({ failed: ev.message || "a scan worker failed" });
      w.postMessage({ setup, tasks: plan.tasks, shared: shared.buffer } satisfies WorkerRequest);
    }
    compare.start();
    // this thread's share; the workers' replies are taken between its tasks
    const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
    await walkTasks(walker, plan.tasks, shared, (task, chunk) => compare.reply({ task, chunk }), nextTurn);
    compare.drain();
    return await compare.settled;
  } finally {
    Atomics.store(shared.stop, 0, 1);
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

/** A task's lines as they arrive, until their turn comes. */
interface TaskState {
  queued: TaskChunk[];
  done: boolean;
  warnings: ScanWarning[];
}

interface CompareSetup {
  holdBytes: number;
  shared: Shared;
  /** Worker threads walking besides this one. */
  workers: number;
  statx: boolean;
  planned: ScanWarning[];
}

/**
 * The comparison, fed with every thread's chunks: each task's chunks are compared as soon as
 * every segment before them has been, then let go. Settles once the answer is known: at the
 * first difference, or when every worker has finished and every line has been compared; and
 * gives up when more than `holdBytes` of lines wait for their turn (queued here, or sent and
 * not yet arrived).
 */
class InOrder {
  readonly workers: number;
  readonly settled: Promise<QuickCheck>;
  private settle!: (r: QuickCheck) => void;
  private fail!: (e: unknown) => void;
  private readonly out: QuickCheck;
  private readonly tasks: TaskState[];
  private readonly segments: Segment[];
  private readonly firstNames = new Map<string, string>();
  private segment = 0;
  private held = 0;
  /** Bytes of the chunks that arrived, against the threads' `sent` (both wrap at 2^32 alike). */
  private received = 0;
  private finished = 0;
  private same: boolean | undefined;

  constructor(
    private readonly list: ListCursor, private readonly header: ListHeader,
    plan: Plan, private readonly setup: CompareSetup,
  ) {
    this.workers = setup.workers;
    this.segments = plan.segments;
    const { entries, bytes } = plan.head;
    this.out = { same: false, entries, bytes, warnings: [], threads: 1 + setup.workers, statx: setup.statx };
    this.tasks = plan.tasks.map(() => ({ queued: [], done: false, warnings: [] }));
    // the planning walk's lines wait too, until their turn comes
    for (const seg of this.segments) if ("parts" in seg) this.held += lineBytes(seg.parts);
    this.settled = new Promise<QuickCheck>((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
    });
    // it may fail while this thread still walks: the caller awaits it after its own share
    this.settled.catch(() => {});
  }

  reply(m: WorkerReply): void {
    if (this.same !== undefined) return;
    try {
      if ("chunk" in m) this.take(m.task, m.chunk);
      else if ("failed" in m) return this.decide({ failure: m.failed });
      else {
        this.out.statx &&= m.statx;
        this.finished++;
      }
      this.drain();
    } catch (e) {
      // a damaged list: an error for the caller, not an answer
      this.same = false;
      Atomics.store(this.setup.shared.stop, 0, 1);
      this.fail(e);
    }
  }

  /** Planning's lines wait from the start: too many, and the check gives up before any walk. */
  start(): void {
    if (this.held > this.setup.holdBytes) this.decide({ ahead: true });
    else this.drain();
  }

  /** Compare what can be compared; settle when the answer is known, or when too much waits. */
  drain(): void {
    while (this.same === undefined && this.segment < this.segments.length) {
      const seg = this.segments[this.segment]!;
      if ("parts" in seg) {
        this.held -= lineBytes(seg.parts);
        if (!this.compare(seg.parts)) return this.decide({});
      } else {
        const t = this.tasks[seg.task]!;
        for (let c = t.queued.shift(); c; c = t.queued.shift()) {
          this.held -= c.size;
          if (!this.compare(c.parts)) return this.decide({});
        }
        if (!t.done) break;
      }
      this.segment++;
    }
    if (this.same !== undefined) return;
    const onItsWay = (Atomics.load(this.setup.shared.sent, 0) - this.received) | 0;
    if (this.held + onItsWay > this.setup.holdBytes) return this.decide({ ahead: true });
    if (this.segment < this.segments.length || this.finished < this.workers) return;
    const same = this.list.atEnd() && this.header.entries === this.out.entries;
    const warnings = [...this.setup.planned, ...this.tasks.flatMap((t) => t.warnings)];
    this.decide({ same, header: this.header, warnings });
  }

  private take(task: number, chunk: TaskChunk): void {
    const t = this.tasks[task]!;
    t.queued.push(chunk);
    this.held += chunk.size;
    this.received = (this.received + chunk.size) | 0;
    this.out.entries += chunk.entries;
    this.out.bytes += chunk.bytes;
    if (chunk.end) {
      t.done = true;
      t.warnings = chunk.warnings;
    }
  }

  /** The answer (without `same`: "differs", or could not be had); every thread stops. */
  private decide(r: Partial<QuickCheck>): void {
    if (this.same !== undefined) return;
    this.same = r.same ?? false;
    Atomics.store(this.setup.shared.stop, 0, 1);
    this.settle({ ...this.out, ...(this.same ? {} : { statx: false }), ...r, same: this.same });
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

/** The UTF-8 bytes of the lines among `parts`. */
function lineBytes(parts: readonly Part[]): number {
  let n = 0;
  for (const p of parts) if (p instanceof Uint8Array) n += p.byteLength;
  return n;
}
