/** SIGTERM/SIGINT/SIGHUP abort the run in hand, so it can clean up and record how it ended. */
export function abortOnSignals(): { signal: AbortSignal; received: () => NodeJS.Signals | undefined; dispose: () => void } {
  const ac = new AbortController();
  let got: NodeJS.Signals | undefined;
  const handler = (sig: NodeJS.Signals) => {
    got ??= sig;
    ac.abort(sig);
  };
  const sigs: NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGHUP"];
  for (const s of sigs) process.on(s, handler);
  return {
    signal: ac.signal,
    received: () => got,
    dispose: () => {
      for (const s of sigs) process.off(s, handler);
    },
  };
}
