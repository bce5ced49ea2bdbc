/**
 * The SHA-256 of an archive file, taken on a thread of its own while the reading thread takes
 * its MD5 (digest.ts). Reads the file itself through the descriptor it is given: threads share
 * the process's descriptors. A compiled binary holds this file as an entry point of its own
 * (scripts/build.ts).
 */
import { chunksAt } from "../state/fsutil.ts";
import type { DigestReply, DigestRequest } from "./digest.ts";

declare const self: Worker;

self.onmessage = (ev: MessageEvent<DigestRequest>) => {
  const sha256 = new Bun.CryptoHasher("sha256");
  let size = 0;
  let reply: DigestReply;
  try {
    for (const chunk of chunksAt(ev.data.fd, 0)) {
      sha256.update(chunk);
      size += chunk.length;
    }
    reply = { size, sha256: sha256.digest("hex") };
  } catch (e) {
    reply = { size, error: e instanceof Error ? e.message : String(e) };
  }
  self.postMessage(reply);
};
