/**
 * The two digests of an archive file (MD5 for its .md5 file, SHA-256 for the server's record),
 * fed with the file's bytes as a pass reads them (read.ts). On one thread the two were most of
 * the check of a large archive that is not compressed (MD5 and SHA-256 of every byte, one after
 * the other); for a file of LARGE bytes or more the SHA-256 is taken on a thread of its own
 * (digest.worker.ts), which reads the file again from the page cache, and this thread takes
 * only the MD5.
 */
import fs from "node:fs";
import { startWorkerFile } from "../common/worker-file.ts";

export interface DigestRequest {
  fd: number;
}

export type DigestReply = { size: number; sha256: string } | { size: number; error: string };

/** Below this a thread costs more to start than it saves. */
export const LARGE = 64 << 20;

export type Finished = { md5: string; sha256: string } | { problem: string };

export interface FileDigests {
  update(chunk: Uint8Array): void;
  /**
   * The digests of the `size` bytes fed, or why they cannot be given (the file changed, or
   * could not be read on the other thread).
   */
  finish(size: number): Promise<Finished>;
  /** Ends the other thread, if any (after finish, or when the pass gives up). */
  stop(): void;
}

/** Digests of the file open on `fd` (undefined: a stream, both digests on this thread). */
export function fileDigests(fd: number | undefined): FileDigests {
  const md5 = new Bun.CryptoHasher("md5");
  if (fd === undefined || fs.fstatSync(fd).size < LARGE) {
    const sha256 = new Bun.CryptoHasher("sha256");
    return {
      update: (chunk) => {
        md5.update(chunk);
        sha256.update(chunk);
      },
      finish: async () => ({ md5: md5.digest("hex"), sha256: sha256.digest("hex") }),
      stop: () => {},
    };
  }
  return sha256Beside(fd, md5);
}

function sha256Beside(fd: number, md5: Bun.CryptoHasher): FileDigests {
  const worker = startWorkerFile("./core/restore/digest.worker.ts", new URL("./digest.worker.ts", import.meta.url));
  const reply = new Promise<DigestReply>((resolve) => {
    worker.onmessage = (ev: MessageEvent<DigestReply>) => resolve(ev.data);
    worker.onerror = (ev: ErrorEvent) => resolve({ size: 0, error: `the SHA-256 thread failed: ${ev.message}` });
  });
  const request: DigestRequest = { fd };
  worker.postMessage(request);
  return {
    update: (chunk) => md5.update(chunk),
    async finish(size) {
      const r = await reply;
      if ("error" in r) return { problem: `the file cannot be read at byte ${r.size}: ${r.error}` };
      if (r.size !== size) {
        const counts = `${r.size} bytes were hashed for its SHA-256, ${size} for its MD5`;
        return { problem: `the file changed while it was being read: ${counts}` };
      }
      return { md5: md5.digest("hex"), sha256: r.sha256 };
    },
    stop: () => worker.terminate(),
  };
}
