/**
 * The two digests a pass takes of an archive file (MD5 for its .md5 file, SHA-256 for the
 * server's record), fed with the file's bytes as the pass reads them (read.ts). On one thread
 * the two were most of the check of a large archive that is not compressed; for a file of LARGE
 * bytes or more the SHA-256 is taken on a thread of its own (sha256.worker.ts), which reads the
 * file again from the page cache, and this thread takes only the MD5. When a worker decompresses
 * the archive, this thread only parses: that thread takes the MD5 too, and the file is read
 * twice rather than three times. A restore whose archive's file list vouches for its MD5 takes
 * the SHA-256 alone (restore.ts, `sha256Suffices`). Not the same thing as transfer/digest.ts
 * `fileDigest`, which hashes a whole file by its name on this thread.
 */
import fs from "node:fs";
import { startWorkerFile } from "../common/worker-file.ts";
import { chunksAt } from "../state/fsutil.ts";

export interface Sha256Request {
  fd: number;
  /** Take the MD5 there too. */
  md5?: boolean;
}

/** The digests of an archive file; `md5` only when it was asked for. */
export interface Digests {
  md5?: string;
  sha256: string;
}

export type Sha256Reply = ({ size: number } & Digests) | { size: number; error: string };

/** Below this a thread costs more to start than it saves. */
export const LARGE = 64 << 20;

export type Finished = Digests | { problem: string };

export interface PassDigests {
  update(chunk: Uint8Array): void;
  /** Both digests are taken on the other thread, which reads the file itself: update does nothing. */
  readonly readsItself?: boolean;
  /**
   * The digests of the `size` bytes fed, or why they cannot be given (the file changed, or
   * could not be read on the other thread).
   */
  finish(size: number): Promise<Finished>;
  /** Ends the other thread, if any (after finish, or when the pass gives up). */
  stop(): void;
}

/**
 * Digests of the file open on `fd` (undefined: a stream, both digests on this thread).
 * `elsewhere`: this thread does not read the file (a worker decompresses it), so both digests
 * go to the other thread, which reads it once for both. `withMd5` false: the SHA-256 alone,
 * on the other thread for a large file whoever reads it.
 */
export function passDigests(fd: number | undefined, elsewhere = false, withMd5 = true): PassDigests {
  const md5 = withMd5 ? new Bun.CryptoHasher("md5") : undefined;
  if (fd === undefined || fs.fstatSync(fd).size < LARGE) {
    const sha256 = new Bun.CryptoHasher("sha256");
    return {
      update: (chunk) => {
        md5?.update(chunk);
        sha256.update(chunk);
      },
      finish: async () => ({ ...(md5 ? { md5: md5.digest("hex") } : {}), sha256: sha256.digest("hex") }),
      stop: () => {},
    };
  }
  return sha256Beside(fd, md5, elsewhere || !md5);
}

/** The SHA-256 on a thread of its own; `md5` taken there too when `both`, else on this thread (when wanted at all). */
function sha256Beside(fd: number, md5: Bun.CryptoHasher | undefined, both: boolean): PassDigests {
  const worker = startWorkerFile("./core/restore/sha256.worker.ts", new URL("./sha256.worker.ts", import.meta.url));
  // a thread that could not run says nothing about the file: its SHA-256 is then taken here
  const reply = new Promise<Sha256Reply | undefined>((resolve) => {
    worker.onmessage = (ev: MessageEvent<Sha256Reply>) => resolve(ev.data);
    worker.onerror = () => resolve(undefined);
  });
  const request: Sha256Request = { fd, md5: both && md5 !== undefined };
  worker.postMessage(request);
  return {
    readsItself: both,
    update: (chunk) => {
      if (!both) md5?.update(chunk);
    },
    async finish(size) {
      const r = (await reply) ?? sha256Here(fd, request.md5);
      if ("error" in r) return { problem: `the file cannot be read at byte ${r.size}: ${r.error}` };
      if (r.size !== size) {
        const counts = `${r.size} bytes were hashed for its SHA-256, ${size} read by the pass`;
        return { problem: `the file changed while it was being read: ${counts}` };
      }
      const taken = r.md5 ?? md5?.digest("hex");
      return { ...(taken ? { md5: taken } : {}), sha256: r.sha256 };
    },
    stop: () => worker.terminate(),
  };
}

/** The SHA-256 (and the MD5, when asked) of the file open on `fd`, from its start (the worker runs this too). */
export function sha256Here(fd: number, withMd5 = false): Sha256Reply {
  const sha256 = new Bun.CryptoHasher("sha256");
  const md5 = withMd5 ? new Bun.CryptoHasher("md5") : undefined;
  let size = 0;
  try {
    for (const chunk of chunksAt(fd, 0)) {
      sha256.update(chunk);
      md5?.update(chunk);
      size += chunk.length;
    }
    return { size, sha256: sha256.digest("hex"), ...(md5 ? { md5: md5.digest("hex") } : {}) };
  } catch (e) {
    return { size, error: e instanceof Error ? e.message : String(e) };
  }
}
