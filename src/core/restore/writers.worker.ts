/**
 * A writer thread of a restore (writers.ts): makes the files it is sent, in order, through
 * the C library's directory calls (file-maker.ts), and counts each batch done in memory the
 * main thread waits on. A compiled binary holds this file as an entry point of its own
 * (scripts/build.ts).
 */
import { errorMessage } from "../common/errors.ts";
import { openAt } from "./at.ts";
import { FileMaker } from "./file-maker.ts";
import { readBatch } from "./writer-batch.ts";
import type { WriterReply, WriterRequest } from "./writers.ts";

declare const self: Worker;

let maker: FileMaker | undefined;
let pending: Int32Array | undefined;
/** The first thing that went wrong outside a file's own making (a bug, or the C library missing). */
let broken: string | undefined;

function reply(m: WriterReply): void {
  self.postMessage(m);
}

self.onmessage = (ev: MessageEvent<WriterRequest>) => {
  const m = ev.data;
  if ("start" in m) {
    pending = new Int32Array(m.start);
    try {
      maker = new FileMaker(openAt(), process.getuid?.() === 0, new Int32Array(m.stopped));
    } catch (e) {
      broken = errorMessage(e);
    }
    return;
  }
  if ("batch" in m) {
    try {
      if (!broken) readBatch(new Uint8Array(m.batch, 0, m.len), maker!);
    } catch (e) {
      broken ??= errorMessage(e);
    } finally {
      Atomics.sub(pending!, 0, 1);
      Atomics.notify(pending!, 0);
    }
    return;
  }
  try {
    reply(broken ? { error: broken } : { report: maker!.finish() });
  } catch (e) {
    reply({ error: errorMessage(e) });
  }
};
