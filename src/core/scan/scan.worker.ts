/**
 * A worker thread of the parallel unchanged check (scan-parallel.ts): takes tasks from the
 * shared counter until none are left or the answer is known, sending each task's lines back
 * a chunk at a time as it walks.
 * A compiled binary holds this file as an entry point of its own (scripts/build.ts).
 */
import {
  lineBytes, taskWalker, transferList, walkTask, WalkStopped, type WorkerReply, type WorkerRequest,
} from "./scan-parallel.ts";

declare const self: Worker;

self.onmessage = (ev: MessageEvent<WorkerRequest>) => {
  const { setup, tasks, shared } = ev.data;
  const next = new Int32Array(shared, 0, 1);
  const stop = new Int32Array(shared, 4, 1);
  const sent = new Int32Array(shared, 8, 1);
  const reply = (m: WorkerReply, transfer: ArrayBuffer[] = []) => self.postMessage(m, transfer);
  const walker = taskWalker(setup);
  try {
    for (let task = Atomics.add(next, 0, 1); task < tasks.length; task = Atomics.add(next, 0, 1)) {
      if (Atomics.load(stop, 0) !== 0) break;
      walkTask(walker, tasks[task]!, stop, (chunk) => {
        // counted before it is sent: what the comparing thread has not taken yet is held
        Atomics.add(sent, 0, lineBytes(chunk.parts));
        reply({ task, chunk }, transferList(chunk.parts));
      });
    }
    reply({ done: true, statx: walker.fast });
  } catch (e) {
    if (e instanceof WalkStopped) reply({ done: true, statx: walker.fast });
    else reply({ failed: e instanceof Error ? e.message : String(e) });
  }
};
