/**
 * The checksum of a pulled archive taken while rsync is still receiving it, so that checking a
 * copy costs little once the transfer has ended. That matters most over a slow link, where the
 * transfer leaves the CPU idle for minutes; on a 707 MB pull the check after the transfer took
 * 1.15-1.6 s, and 0.1-0.35 s when hashed while receiving.
 *
 * rsync receives a file into a temporary file `.NAME.XXXXXX` beside its final name, writes it
 * front to back (a basis only changes where the bytes come from) and renames it when rsync
 * has checked it whole. A worker finds that file, hashes what has been written, and waits for
 * more until it is told the transfer ended. The checksum then stands only for the file that
 * was read: the caller takes it only when the archive now in place is that file (same device
 * and inode) with as many bytes as were read. Anything else (rsync redid the
 * file after a failed check, the transfer ended before the file was seen, a worker failed)
 * leaves the caller to hash the finished file, as before.
 *
 * The hashing worker runs as SCHED_IDLE while the transfer lasts: it uses the CPU time rsync,
 * ssh and the rest of the host leave. At normal priority, on two cores over loopback, they
 * slowed rsync by as much as they saved. When the transfer has ended it returns to the normal
 * policy where it may (root may; others stay an idle thread, which on a busy host only makes
 * the check slower).
 *
 * A second worker, at normal priority, starts write-back of every 8 MiB rsync has written
 * (sync_file_range), so the disk writes while rsync receives, even when the hashing lags, and
 * the fsync before the copy is kept has little left to do.
 */
import fs from "node:fs";
import { startWorkerFile } from "../common/worker-file.ts";

/** The suffix rsync's mkstemp() puts on a temporary name. */
export const TEMP_SUFFIX_LENGTH = 6;
export const READ = 1 << 20;
/** How long a worker sleeps when it has caught up with rsync (or between looks at the file's size), unless told the transfer ended. */
export const POLL_MS = 20;
export const FLUSH_BEHIND = 8 << 20;

/** States of the shared control word. */
export const RUNNING = 0;
export const FINISH = 1;
export const CANCEL = 2;

/** What a worker read: the file (device and inode, as decimal text), its length, the checksum. */
export interface FollowedFile {
  dev: string;
  ino: string;
  bytes: number;
  digest: string;
}

/** What a worker (follow.worker.ts) is asked: hash (with `algorithm`) or write back (without) the file rsync receives. */
export interface FollowRequest {
  dir: string;
  /** rsync's temporary name for the file, less its random suffix. */
  prefix: string;
  algorithm?: DigestAlgorithm;
  /** One Int32: RUNNING, FINISH or CANCEL. */
  control: SharedArrayBuffer;
}

export type WorkerReply = FollowedFile | { none: string } | { error: string } | { flushed: number };

export type DigestAlgorithm = "md5" | "sha256";

export interface FollowResult {
  read?: FollowedFile;
  /** Why the checksum cannot stand for the finished file, when it cannot. */
  why?: string;
}

export interface Follower {
  /** The transfer has ended (the caller has seen rsync exit): what the hashing worker read. */
  finish(): Promise<FollowResult>;
  /** The transfer failed: the workers close the file and end, without an answer. */
  cancel(): void;
}

/** A follow worker, and where its next reply goes (nowhere while it waits in the pool). */
interface Slot {
  worker: Worker;
  answer?: (reply: WorkerReply, reusable: boolean) => void;
}

/**
 * Workers that have answered and wait for the next pull, by job: a backup host pulling a hundred
 * sources starts `concurrency` of each instead of a hundred, and keeps no heap of an ended one.
 */
const idle: Record<"hash" | "flush", Slot[]> = { hash: [], flush: [] };

function newSlot(job: "hash" | "flush"): Slot {
  const worker = startWorkerFile("./core/transfer/follow.worker.ts", new URL("./follow.worker.ts", import.meta.url));
  const slot: Slot = { worker };
  slot.worker.onmessage = (e: MessageEvent<WorkerReply>) => slot.answer?.(e.data, !("error" in e.data));
  slot.worker.onerror = (e) => slot.answer?.({ error: e.message || "the hashing worker failed" }, false);
  // a worker that ends without a word (it exited, or was killed) must not leave finish() waiting
  slot.worker.addEventListener("close", () => {
    idle[job] = idle[job].filter((s) => s !== slot);
    slot.answer?.({ error: "the hashing worker ended without an answer" }, false);
  });
  return slot;
}

/** Ask a worker (an idle one of the job, else a new one) to follow the file; its one reply. */
function ask(request: FollowRequest): Promise<WorkerReply> {
  const job = request.algorithm ? "hash" : "flush";
  const slot = idle[job].pop() ?? newSlot(job);
  slot.worker.ref();
  return new Promise<WorkerReply>((resolve) => {
    slot.answer = (reply, reusable) => {
      slot.answer = undefined;
      if (reusable) {
        // it answers only once it has closed the file: waiting, it holds nothing open
        slot.worker.unref();
        idle[job].push(slot);
      } else void slot.worker.terminate();
      resolve(reply);
    };
    slot.worker.postMessage(request);
  });
}

/** Start following rsync's temporary file for `file` in `dir`, hashing it with `algorithm`. */
export function followDigest(dir: string, file: string, algorithm: DigestAlgorithm): Follower {
  const control = new SharedArrayBuffer(4);
  const state = new Int32Array(control);
  const replies = [algorithm, undefined].map((algorithm) => ask({ dir, prefix: `.${file}.`, algorithm, control }));
  const stop = (to: number) => {
    Atomics.store(state, 0, to);
    Atomics.notify(state, 0);
  };
  return {
    async finish() {
      stop(FINISH);
      // the second reply is the write-back worker's, which has nothing to say about the checksum
      const [r] = await Promise.all(replies);
      if ("none" in r!) return { why: r.none };
      if ("error" in r!) return { why: r.error };
      if ("digest" in r!) return { read: r };
      return { why: "the hashing worker gave no checksum" };
    },
    cancel() {
      stop(CANCEL);
    },
  };
}

/**
 * The checksum `followed` took when it is that of `file` as it is now: the worker read this
 * very file, and all of it. Otherwise undefined: the file has to be hashed again.
 */
export function followedDigest(file: string, followed: FollowResult): string | undefined {
  const read = followed.read;
  if (!read) return undefined;
  let st: fs.BigIntStats;
  try {
    st = fs.lstatSync(file, { bigint: true });
  } catch {
    return undefined;
  }
  if (!st.isFile()) return undefined;
  const same = read.dev === String(st.dev) && read.ino === String(st.ino) && BigInt(read.bytes) === st.size;
  return same ? read.digest : undefined;
}
