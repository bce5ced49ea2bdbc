/**
 * A worker thread of the parallel unchanged check (scan-parallel.ts): takes tasks from the
 * shared counter until none are left or the answer is known, sending each task's lines back
 * a chunk at a time as it walks.
 * A compiled binary holds this file as an entry point of its own (scripts/build.ts).
 */
import {
  sharedCounters, taskWalker, transferList, walkTasks, type TaskChunk, type WorkerReply, type WorkerRequest,
} from "./scan-parallel.ts";

declare const self: Worker;

self.onmessage = async (ev: MessageEvent<WorkerRequest>) => {
  const { setup, tasks, shared } = ev.data;
  const reply = (m: WorkerReply, transfer: ArrayBuffer[] = []) => self.postMessage(m, transfer);
  try {
    const walker = taskWalker(setup);
    const send = (task: number, chunk: TaskChunk) => reply({ task, chunk }, transferList(chunk.parts));
    await walkTasks(walker, tasks, sharedCounters(shared), send);
    reply({ done: true, statx: walker.fast });
  } catch (e) {
    reply({ failed: e instanceof Error ? e.message : String(e) });
  }
};
