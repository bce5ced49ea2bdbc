/**
 * A worker of follow-digest.ts: finds the temporary file rsync receives into, then either
 * hashes what rsync has written as it grows (as SCHED_IDLE while the transfer lasts), or starts
 * write-back of every FLUSH_BEHIND bytes rsync has written, until the control word says the
 * transfer ended or was cancelled; then it answers and waits for the next pull. A compiled
 * binary holds this file as an entry point of its own (scripts/build.ts).
 */
import fs from "node:fs";
import { SCHED_IDLE, SCHED_OTHER, SYNC_FILE_RANGE_WRITE, openSyncRange, setThreadPolicy } from "../common/libc.ts";
import {
  CANCEL, FINISH, FLUSH_BEHIND, POLL_MS, READ, RUNNING, TEMP_SUFFIX_LENGTH,
  type DigestAlgorithm, type FollowRequest, type WorkerReply,
} from "./follow-digest.ts";

declare const self: Worker;

function find(dir: string, prefix: string): string | undefined {
  return fs.readdirSync(dir).find((n) => n.length === prefix.length + TEMP_SUFFIX_LENGTH && n.startsWith(prefix));
}

/** The temporary file, once rsync has made it; -1 when the transfer ended (or was cancelled) first. */
function open(dir: string, prefix: string, state: Int32Array): number {
  for (;;) {
    // read before looking: once the transfer has ended, a look that finds nothing is final
    const now = Atomics.load(state, 0);
    if (now === CANCEL) return -1;
    const name = find(dir, prefix);
    if (name !== undefined) {
      try {
        return fs.openSync(`${dir}/${name}`, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      } catch {
        // renamed or removed since the look: look again
      }
    }
    if (now === FINISH) return -1;
    Atomics.wait(state, 0, RUNNING, POLL_MS);
  }
}

function writeBack(fd: number, state: Int32Array): WorkerReply {
  const syncRange = openSyncRange();
  let flushed = 0;
  while (syncRange && Atomics.load(state, 0) === RUNNING) {
    const size = fs.fstatSync(fd).size;
    if (size - flushed >= FLUSH_BEHIND) {
      syncRange(fd, flushed, size - flushed, SYNC_FILE_RANGE_WRITE);
      flushed = size;
    }
    Atomics.wait(state, 0, RUNNING, POLL_MS);
  }
  return { flushed };
}

function hash(fd: number, st: fs.BigIntStats, algorithm: DigestAlgorithm, state: Int32Array): WorkerReply {
  const h = new Bun.CryptoHasher(algorithm);
  const buf = Buffer.allocUnsafe(READ);
  let bytes = 0;
  let policyRestored = false;
  for (;;) {
    const now = Atomics.load(state, 0);
    if (now === CANCEL) return { none: "cancelled" };
    // what is left after the transfer is what the run waits for
    if (now === FINISH && !policyRestored) {
      setThreadPolicy(SCHED_OTHER);
      policyRestored = true;
    }
    const n = fs.readSync(fd, buf, 0, buf.length, bytes);
    if (n > 0) {
      h.update(buf.subarray(0, n));
      bytes += n;
    } else if (now === FINISH) {
      // this read began after the transfer ended: the file is whole
      return { dev: String(st.dev), ino: String(st.ino), bytes, digest: h.digest("hex") };
    } else {
      Atomics.wait(state, 0, RUNNING, POLL_MS);
    }
  }
}

function follow(m: FollowRequest, state: Int32Array): WorkerReply {
  if (m.algorithm) setThreadPolicy(SCHED_IDLE);
  try {
    const fd = open(m.dir, m.prefix, state);
    if (fd < 0) return { none: "the transfer ended before its temporary file was seen" };
    try {
      const st = fs.fstatSync(fd, { bigint: true });
      if (!st.isFile()) return { none: "not a regular file" };
      return m.algorithm ? hash(fd, st, m.algorithm, state) : writeBack(fd, state);
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    // the worker waits for its next pull in the pool: with the normal policy where it may
    if (m.algorithm) setThreadPolicy(SCHED_OTHER);
  }
}

self.onmessage = (e: MessageEvent<FollowRequest>) => {
  let reply: WorkerReply;
  try {
    reply = follow(e.data, new Int32Array(e.data.control));
  } catch (err) {
    reply = { error: String((err as Error)?.message ?? err) };
  }
  self.postMessage(reply);
};
