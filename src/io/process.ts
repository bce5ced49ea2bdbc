/**
 * The one way shoot starts a child process: an argv array (never a shell string), standard
 * input closed so nothing can wait on a prompt under cron, a time-out, the last lines of
 * standard error kept for the error message, and a missing program reported by name.
 * Secrets go through `env`, never through argv.
 */

export interface RunOptions {
  /** Milliseconds before the child is sent `killSignal` (then SIGKILL after `killGraceMs`). */
  timeoutMs?: number;
  killSignal?: NodeJS.Signals;
  killGraceMs?: number;
  /** Replaces the environment entirely when given. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /**
   * Hand standard output to the caller as a stream (Child.stdout), read only as fast as the
   * caller reads it: a child that writes faster waits on the pipe, and memory stays bounded.
   */
  stdoutStream?: boolean;
  /** Keep standard output (up to maxStdout bytes) instead of discarding it. */
  captureStdout?: boolean;
  maxStdout?: number;
  /** Called with each line of standard error / output as it arrives. */
  onStderrLine?: (line: string) => void;
  onStdoutLine?: (line: string) => void;
  /** How many trailing stderr lines to keep. */
  stderrLines?: number;
  /**
   * Standard error to /dev/null, not read: for a program that leaves a process of its own in
   * the background (ssh -f), which would hold a pipe open after the program itself exited.
   */
  discardStderr?: boolean;
  /** Hint for the "not installed" message, e.g. "apt-get install rsync". */
  installHint?: string;
  /**
   * Hand our standard input and output to the child (a forced ssh command passing the
   * connection on to rsync). Standard error is still read line by line.
   */
  passStdio?: boolean;
}

export interface RunResult {
  argv: string[];
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderrTail: string[];
  timedOut: boolean;
  durationMs: number;
}

export interface Child {
  pid: number;
  /** Standard output, when started with stdoutStream. */
  stdout?: ReadableStream<Uint8Array>;
  kill(signal?: NodeJS.Signals | number): void;
  done: Promise<RunResult>;
}

export interface Spawner {
  start(argv: string[], opts?: RunOptions): Child;
  run(argv: string[], opts?: RunOptions): Promise<RunResult>;
}

export class ToolMissingError extends Error {
  constructor(readonly tool: string, hint?: string) {
    super(`${tool} is not installed (or not on PATH)${hint ? `; install it with: ${hint}` : ""}`);
    this.name = "ToolMissingError";
  }
}

const INSTALL_HINTS: Record<string, string> = {
  rsync: "apt-get install rsync",
  ssh: "apt-get install openssh-client",
  sshd: "apt-get install openssh-server",
};

/**
 * How long the pipes may stay open after the child has exited. A grandchild that inherited
 * them (an ssh multiplexing client, a daemon the child started) can hold them for as long as it
 * lives; what it writes then is not waited for.
 */
const PIPE_GRACE_MS = 2_000;

async function pumpLines(
  stream: ReadableStream<Uint8Array> | null | undefined,
  onLine: (line: string) => void,
  stoppers: (() => void)[],
  keep?: { buf: string[]; max: number },
  capture?: { chunks: Uint8Array[]; size: number; max: number },
): Promise<void> {
  if (!stream) return;
  const reader = stream.getReader();
  stoppers.push(() => void reader.cancel().catch(() => undefined));
  const dec = new TextDecoder();
  let pending = "";
  const emit = (line: string) => {
    if (keep) {
      keep.buf.push(line);
      if (keep.buf.length > keep.max) keep.buf.shift();
    }
    onLine(line);
  };
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    const chunk = r.value;
    if (capture && capture.size < capture.max) {
      const take = chunk.subarray(0, capture.max - capture.size);
      capture.chunks.push(take);
      capture.size += take.length;
    }
    pending += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = pending.indexOf("\n")) >= 0) {
      emit(pending.slice(0, i).replace(/\r$/, ""));
      pending = pending.slice(i + 1);
    }
    // a progress meter without newlines must not grow without bound
    if (pending.length > 64 * 1024) pending = pending.slice(-4096);
  }
  pending += dec.decode();
  if (pending) emit(pending);
}

export function start(argv: string[], opts: RunOptions = {}): Child {
  if (argv.length === 0) throw new Error("start: empty argv");
  const began = performance.now();
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn(argv, {
      stdin: opts.passStdio ? "inherit" : "ignore",
      stdout: opts.passStdio ? "inherit" : opts.captureStdout || opts.onStdoutLine || opts.stdoutStream ? "pipe" : "ignore",
      stderr: opts.discardStderr ? "ignore" : "pipe",
      env: (opts.env ?? process.env) as Record<string, string>,
      cwd: opts.cwd,
    });
  } catch (e) {
    const c = (e as { code?: string }).code;
    if (c === "ENOENT" || /ENOENT|no such file/i.test(String((e as Error).message))) {
      const tool = argv[0]!.split("/").pop()!;
      throw new ToolMissingError(tool, opts.installHint ?? INSTALL_HINTS[tool]);
    }
    throw e;
  }
  let timedOut = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  if (opts.timeoutMs !== undefined && opts.timeoutMs > 0) {
    killTimer = setTimeout(() => {
      timedOut = true;
      proc.kill(opts.killSignal ?? "SIGTERM");
      graceTimer = setTimeout(() => proc.kill("SIGKILL"), opts.killGraceMs ?? 5000);
    }, opts.timeoutMs);
  }
  const keep = { buf: [] as string[], max: opts.stderrLines ?? 20 };
  const capture = opts.captureStdout ? { chunks: [] as Uint8Array[], size: 0, max: opts.maxStdout ?? 16 * 1024 * 1024 } : undefined;
  const stoppers: (() => void)[] = [];
  const errDone = opts.discardStderr ? Promise.resolve() : pumpLines(proc.stderr as ReadableStream<Uint8Array>, opts.onStderrLine ?? (() => {}), stoppers, keep);
  const streamed = opts.stdoutStream && proc.stdout && typeof proc.stdout !== "number" ? (proc.stdout as ReadableStream<Uint8Array>) : undefined;
  const outDone = proc.stdout && typeof proc.stdout !== "number" && !streamed
    ? pumpLines(proc.stdout as ReadableStream<Uint8Array>, opts.onStdoutLine ?? (() => {}), stoppers, undefined, capture)
    : Promise.resolve();
  const done = (async (): Promise<RunResult> => {
    await proc.exited;
    let grace: ReturnType<typeof setTimeout> | undefined;
    const drained = await Promise.race([
      Promise.all([errDone, outDone]).then(() => true),
      new Promise<false>((resolve) => (grace = setTimeout(() => resolve(false), PIPE_GRACE_MS))),
    ]);
    clearTimeout(grace);
    if (!drained) {
      for (const stop of stoppers) stop();
      await Promise.all([errDone, outDone]);
    }
    if (killTimer) clearTimeout(killTimer);
    if (graceTimer) clearTimeout(graceTimer);
    return {
      argv,
      exitCode: proc.signalCode ? null : proc.exitCode,
      signal: proc.signalCode ? String(proc.signalCode) : null,
      stdout: capture ? Buffer.concat(capture.chunks).toString("utf8") : "",
      stderrTail: keep.buf,
      timedOut,
      durationMs: performance.now() - began,
    };
  })();
  return { pid: proc.pid, stdout: streamed, kill: (sig) => proc.kill(sig as never), done };
}

export const spawner: Spawner = {
  start,
  run: (argv, opts) => start(argv, opts).done,
};

/** A one-line account of how a child ended, with the tail of its stderr. */
export function describeResult(r: RunResult, tailLines = 3): string {
  const how = r.timedOut ? "timed out" : r.signal ? `killed by ${r.signal}` : `exited with ${r.exitCode}`;
  const tail = r.stderrTail.filter((l) => l.trim()).slice(-tailLines).join(" | ");
  return `${r.argv[0]} ${how}${tail ? `: ${tail}` : ""}`;
}
