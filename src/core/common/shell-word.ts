/** A word for a POSIX shell, in commands printed for a person to type: bare when safe, else single-quoted. */
export function shWord(s: string): string {
  return /^[A-Za-z0-9_\/.,:@%+=-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}

/** The same for a path that may start with `~/` (the home directory, which the shell expands). */
export function shPath(p: string): string {
  return p.startsWith("~/") ? `~/${shWord(p.slice(2))}` : shWord(p);
}
