/**
 * The SHA-256 of an archive file, taken on a thread of its own while the reading thread takes
 * its MD5, or both digests while the other threads decompress and parse (pass-digests.ts).
 * Reads the file itself through the descriptor it is given: threads share the process's
 * descriptors. A compiled binary holds this file as an entry point of its own (scripts/build.ts).
 */
import { sha256Here, type Sha256Request } from "./pass-digests.ts";

declare const self: Worker;

self.onmessage = (ev: MessageEvent<Sha256Request>) => {
  self.postMessage(sha256Here(ev.data.fd, ev.data.md5 === true));
};
