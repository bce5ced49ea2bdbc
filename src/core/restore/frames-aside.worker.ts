/**
 * The thread that checks zstd frames set aside by a pass (frames-aside.ts): reads each from
 * the file open on the descriptor it is given (threads share them) and decompresses it whole.
 * A compiled binary holds this file as an entry point of its own (scripts/build.ts).
 */
import { openLibzstd } from "../archive/libzstd.ts";
import { checkFrames, type AsideReply, type AsideRequest, type AsideRoom } from "./frames-aside.ts";

declare const self: Worker;

const z = openLibzstd();
const room: AsideRoom = { input: Buffer.allocUnsafeSlow(1 << 20), output: Buffer.allocUnsafeSlow(1 << 20) };
let fd = -1;
let failed = false;

function reply(m: AsideReply): void {
  self.postMessage(m);
}

self.onmessage = (ev: MessageEvent<AsideRequest>) => {
  const m = ev.data;
  if ("fd" in m) {
    fd = m.fd;
    return;
  }
  if (failed) return;
  const why = z ? checkFrames(fd, m.frames, z, room) : "libzstd cannot be loaded on the thread that checks frames";
  if (why === undefined) return reply({ checked: m.frames.length / 3 });
  failed = true;
  reply({ failed: why });
};
