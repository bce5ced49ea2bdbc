/**
 * The regular files of a restore, made on writer threads (writers.worker.ts, file-maker.ts)
 * while the main thread reads the archive on: creating, writing and closing many small files
 * is mostly time in the kernel, which two threads spend side by side.
 *
 * What each writer does comes in batches (writer-batch.ts), in archive order. Every file of
 * one directory goes to the same writer, and so does the closing of that directory's
 * descriptor: a writer never uses a descriptor after it closed it, and never one the main
 * thread closed (the main thread closes none it gave a writer). Whatever else the main thread
 * makes on the disk (a hard link, which needs its target made) waits until every writer has
 * caught up (`drain`). The main thread waits, too, while a writer has MAX_BATCHES not done.
 * Each writer's batches are filled in turn in a ring of MAX_BATCHES + 1 buffers both threads
 * share: the one filled next was sent so long ago that its writer is done with it. Memory
 * holds those buffers and no more, however much the restore writes.
 */
import os from "node:os";
import { fnv1a } from "../common/text.ts";
import { startWorkerFile } from "../common/worker-file.ts";
import type { WriterReport } from "./file-maker.ts";
import { BatchWriter, type FileToMake } from "./writer-batch.ts";

/** A batch's buffer: a few hundred small files, or a piece of a large one. */
const BATCH_BYTES = 256 << 10;
/** Batches sent to one writer and not yet done before the main thread waits. */
const MAX_BATCHES = 3;

/** Files sent between two full collections of the main thread's memory. */
const COLLECT_EVERY = 32_768;

/** What the main thread sends a writer. */
export type WriterRequest =
  | { start: SharedArrayBuffer; stopped: SharedArrayBuffer }
  | { batch: SharedArrayBuffer; len: number }
  | { finish: true };

/** What a writer sends back: its report, or why it failed. */
export type WriterReply = { report: WriterReport } | { error: string };

interface Lane {
  worker: Worker;
  /** [0]: batches sent and not yet done. */
  pending: Int32Array;
  batch: BatchWriter;
  /** The shared buffers batches are filled in, in turn, and the one being filled. */
  ring: SharedArrayBuffer[];
  slot: number;
}

export class FileWriters {
  private readonly lanes: Lane[];
  /** [0] is set by the writer that finds the file system full: every writer stops there. */
  private readonly stopped = new Int32Array(new SharedArrayBuffer(4));
  /** The writer of the file whose content comes now. */
  private current: Lane | undefined;
  private finished = false;
  private opened = 0;

  constructor(count = Math.min(2, os.availableParallelism())) {
    this.lanes = Array.from({ length: Math.max(1, count) }, () => this.startLane());
  }

  private startLane(): Lane {
    const worker = startWorkerFile("./core/restore/writers.worker.ts", new URL("./writers.worker.ts", import.meta.url));
    const pending = new Int32Array(new SharedArrayBuffer(4));
    const ring = Array.from({ length: MAX_BATCHES + 1 }, () => new SharedArrayBuffer(BATCH_BYTES));
    const lane: Lane = { worker, pending, batch: new BatchWriter(new Uint8Array(ring[0]!)), ring, slot: 0 };
    const start = pending.buffer as SharedArrayBuffer;
    worker.postMessage({ start, stopped: this.stopped.buffer as SharedArrayBuffer } satisfies WriterRequest);
    return lane;
  }

  /** True once a writer found the file system full. */
  get full(): boolean {
    return Atomics.load(this.stopped, 0) !== 0;
  }

  /** True once finish() or stop() was called: nothing more goes to the writers. */
  get done(): boolean {
    return this.finished;
  }

  /** A file to make in the directory `dirKey` ("" for the target), its content to follow through `data`. */
  open(dirKey: string, f: FileToMake): void {
    // the main thread waits on the writers, not in its event loop, and its collector fell
    // behind: what reading many small files leaves is collected every so many files
    if (++this.opened % COLLECT_EVERY === 0) Bun.gc(true);
    const lane = this.laneOf(dirKey);
    this.current = lane;
    this.roomFor(lane, BatchWriter.openBytes(f));
    lane.batch.open(f);
  }

  /** The next bytes of the current file (copied: the piece is the caller's only during the call). */
  data(piece: Uint8Array): void {
    const lane = this.current!;
    for (let at = 0; at < piece.length;) {
      this.roomFor(lane, 6);
      at += lane.batch.data(piece.subarray(at));
    }
  }

  /** The current file's content ended early: it is removed. */
  abandon(): void {
    const lane = this.current;
    this.current = undefined;
    if (!lane) return;
    this.roomFor(lane, 1);
    lane.batch.abandon();
  }

  /** The descriptor of the directory `dirKey`, closed by its writer after every file made in it. */
  closeDir(dirKey: string, fd: number): void {
    const lane = this.laneOf(dirKey);
    this.roomFor(lane, 5);
    lane.batch.closeDir(fd);
  }

  /** Wait until every writer has done all it was sent. */
  drain(): void {
    for (const lane of this.lanes) {
      if (lane.batch.used > 0) this.send(lane);
      waitBelow(lane, 1);
    }
  }

  /** Everything sent done; the writers' reports, in the order of the writers. Ends the threads. */
  async finish(): Promise<WriterReport[]> {
    const reports = this.lanes.map((lane) => {
      if (lane.batch.used > 0) this.send(lane);
      return reportOf(lane.worker);
    });
    this.finished = true;
    try {
      return await Promise.all(reports);
    } finally {
      await this.stop();
    }
  }

  /** End the threads (what they were sent and did not do is not done; a descriptor they were to close stays open). */
  async stop(): Promise<void> {
    this.finished = true;
    await Promise.all(this.lanes.map((l) => l.worker.terminate()));
  }

  private laneOf(dirKey: string): Lane {
    return this.lanes.length === 1 ? this.lanes[0]! : this.lanes[fnv1a(dirKey) % this.lanes.length]!;
  }

  /** The lane's batch sent first when it has not `n` bytes of room (a new one always has). */
  private roomFor(lane: Lane, n: number): void {
    if (lane.batch.room < n) this.send(lane, n);
  }

  /**
   * Send the lane's batch, and start the next in the ring's next buffer, made larger when it
   * has not room for `n` bytes. At most MAX_BATCHES are not done once this is sent: the next
   * buffer, sent MAX_BATCHES + 1 batches ago, is done with.
   */
  private send(lane: Lane, n = 0): void {
    waitBelow(lane, MAX_BATCHES);
    Atomics.add(lane.pending, 0, 1);
    lane.worker.postMessage({ batch: lane.ring[lane.slot]!, len: lane.batch.used } satisfies WriterRequest);
    lane.slot = (lane.slot + 1) % lane.ring.length;
    if (lane.ring[lane.slot]!.byteLength < n) lane.ring[lane.slot] = new SharedArrayBuffer(n);
    lane.batch.reset(new Uint8Array(lane.ring[lane.slot]!));
  }
}

/** Block until the lane has fewer than `n` batches not done (a writer counts every batch done, whatever it met). */
function waitBelow(lane: Lane, n: number): void {
  for (let p = Atomics.load(lane.pending, 0); p >= n; p = Atomics.load(lane.pending, 0)) {
    Atomics.wait(lane.pending, 0, p);
  }
}

function reportOf(worker: Worker): Promise<WriterReport> {
  return new Promise((resolve, reject) => {
    worker.addEventListener("message", (ev: MessageEvent<WriterReply>) => {
      if ("report" in ev.data) resolve(ev.data.report);
      else if ("error" in ev.data) reject(new Error(`a writer thread failed: ${ev.data.error}`));
    });
    worker.addEventListener("error", (ev) => reject(new Error(`a writer thread failed: ${ev.message}`)));
    worker.postMessage({ finish: true } satisfies WriterRequest);
  });
}
