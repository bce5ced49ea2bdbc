/**
 * The decompression of a pass on a thread of its own (inflater.ts does the work; threads share
 * descriptors, so the file is read here). A compiled binary holds this file as an entry point
 * of its own (scripts/build.ts).
 */
import { inflater, type InflateRequest } from "./inflater.ts";

declare const self: Worker;

const work = inflater((m, transfer = []) => self.postMessage(m, transfer));
self.onmessage = (ev: MessageEvent<InflateRequest>) => work.request(ev.data);
