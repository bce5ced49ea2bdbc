/**
 * SIGTERM/SIGINT/SIGHUP abort the run in hand, so it can clean up and record how it ended.
 * With orphanCheckMs, losing the parent (a wrapper killed outright) aborts too: a server left
 * running without its wrapper would hold no lock and race the next run.
 */
export function abortOnSignals(opts: { orphanCheckMs?: number } = {}): { signal: AbortSignal; received: () => string | undefined; dispose: () => void } {
  const ac = new AbortController();
  let got: string | undefined;
  const handler = (sig: string) => {
    got ??= sig;
    ac.abort(sig);
  };
  const sigs: NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGHUP"];
  for (const s of sigs) process.on(s, handler);
  const parent = process.ppid;
  const timer = opts.orphanCheckMs
    ? setInterval(() => {
        if (process.ppid !== parent) handler("the loss of its parent process");
      }, opts.orphanCheckMs)
    : undefined;
  timer?.unref?.();
  return {
    signal: ac.signal,
    received: () => got,
    dispose: () => {
      for (const s of sigs) process.off(s, handler);
      if (timer) clearInterval(timer);
    },
  };
}
