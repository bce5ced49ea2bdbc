/**
 * A worker thread of the parallel unchanged check (scan-parallel.ts): takes tasks from the
 * shared counter until none are left, sending each task's lines back as it finishes.
 * A compiled binary holds this file as an entry point of its own (scripts/build.ts).
 */
import { taskWalker, transferList, walkTask, type WorkerReply, type WorkerRequest } from "./scan-parallel.ts";

declare const self: Worker;

self.onmessage = (ev: MessageEvent<WorkerRequest>) => {
  const { setup, tasks, next } = ev.data;
  const counter = new Int32Array(next);
  const reply = (m: WorkerReply, transfer: ArrayBuffer[] = []) => self.postMessage(m, transfer);
  try {
    const walker = taskWalker(setup);
    for (let i = Atomics.add(counter, 0, 1); i < tasks.length; i = Atomics.add(counter, 0, 1)) {
      const result = walkTask(walker, tasks[i]!);
      reply({ task: i, result }, transferList(result));
    }
    reply({ done: true, statx: walker.fast });
  } catch (e) {
    reply({ failed: e instanceof Error ? e.message : String(e) });
  }
};
