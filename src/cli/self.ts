/** How this program starts itself again: the compiled binary directly, from source through bun. */
export function selfArgv(): string[] {
  const main = Bun.main;
  // a compiled binary's entry lives in Bun's embedded file system
  if (main.startsWith("/$bunfs/") || main.startsWith("B:/~BUN/")) return [process.execPath];
  return [process.execPath, main];
}
