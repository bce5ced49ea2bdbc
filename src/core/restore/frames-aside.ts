/**
 * zstd frames that hold nothing but the content of one file, checked on a thread of their own
 * (frames-aside.worker.ts) while a pass reads on. A pass that hands no content on (the check
 * before a restore, a deep verify) decompresses such a frame only to know that it decodes to
 * what its header says: the decompression thread then decompresses the frames that hold
 * headers, follows the tar stream through them, and steps over the others (whole-pieces.ts),
 * which are decompressed here, side by side with it. The work is the same; two threads share it.
 *
 * Should anything go wrong with a frame set aside, the pass is read again the ordinary way
 * (read.ts), which names the damage where it lies, as it always has.
 */
import type { Libzstd } from "../archive/libzstd.ts";
import { errorMessage } from "../common/errors.ts";
import { startWorkerFile } from "../common/worker-file.ts";
import { readAt } from "../state/fsutil.ts";
import { decodeFrame } from "./whole-pieces.ts";

/** Frames as flat triples: where each starts and ends in the file, and the bytes its header says it holds. */
export type FrameTriples = number[];

export type AsideRequest = { fd: number } | { frames: FrameTriples };
export type AsideReply = { checked: number } | { failed: string };

/** A frame set aside that did not check, or a thread that could not check it: the pass is read again without. */
export class AsideFailure extends Error {
  constructor(why: string) {
    super(why);
    this.name = "AsideFailure";
  }
}

/** Room used again from frame to frame. */
export interface AsideRoom {
  input: Buffer;
  output: Buffer;
}

/**
 * Each frame read from the file open on `fd` and decompressed whole; why the first that does
 * not decode to the bytes its header says, or undefined when every one does.
 */
export function checkFrames(fd: number, frames: FrameTriples, z: Libzstd, room: AsideRoom): string | undefined {
  for (let i = 0; i + 2 < frames.length; i += 3) {
    const [start, end, size] = [frames[i]!, frames[i + 1]!, frames[i + 2]!];
    const length = end - start;
    if (room.input.length < length) room.input = Buffer.allocUnsafeSlow(length);
    if (room.output.length < size + 1) room.output = Buffer.allocUnsafeSlow(size + 1);
    const input = room.input.subarray(0, length);
    try {
      if (readAt(fd, input, start) < length) return `the file ends within the zstd frame at byte ${start}`;
    } catch (e) {
      return `the file cannot be read at byte ${start}: ${errorMessage(e)}`;
    }
    try {
      decodeFrame(z, input, room.output.subarray(0, size + 1), start, size);
    } catch (e) {
      return errorMessage(e);
    }
  }
  return undefined;
}

function startChecker(): Worker {
  return startWorkerFile("./core/restore/frames-aside.worker.ts", new URL("./frames-aside.worker.ts", import.meta.url));
}

/**
 * The thread that checks frames set aside, for one pass over the file open on `fd`; started
 * with the first frame (an archive of small files may set none aside).
 */
export class FramesAside {
  /** Frames handed over, and frames checked. */
  sent = 0;
  private checked = 0;
  private failure: string | undefined;
  private wake: (() => void) | undefined;
  private worker: Worker | undefined;

  constructor(private readonly fd: number) {}

  private start(): Worker {
    const w = startChecker();
    w.onmessage = (ev: MessageEvent<AsideReply>) => {
      const m = ev.data;
      if ("failed" in m) this.failure ??= m.failed;
      else this.checked += m.checked;
      this.wake?.();
    };
    w.onerror = (ev) => {
      this.failure ??= `the thread that checks frames failed: ${ev.message}`;
      this.wake?.();
    };
    w.postMessage({ fd: this.fd } satisfies AsideRequest);
    return w;
  }

  check(frames: FrameTriples): void {
    this.worker ??= this.start();
    this.sent += frames.length / 3;
    this.worker.postMessage({ frames } satisfies AsideRequest);
  }

  /** Once every frame handed over is checked; rejects with AsideFailure when one did not check. */
  async done(): Promise<void> {
    while (this.failure === undefined && this.checked < this.sent) {
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    this.wake = undefined;
    if (this.failure !== undefined) throw new AsideFailure(this.failure);
  }

  stop(): void {
    void this.worker?.terminate();
  }
}
