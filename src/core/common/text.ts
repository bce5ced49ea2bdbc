/**
 * Text from elsewhere (a server's status records, file names, error messages) made fit to
 * show a person: no control characters or direction overrides, on one line, of bounded length.
 * And one small hash of text, where a stable number must stand for a name.
 */

/**
 * Text from a status file or another process may hold control characters or bidi overrides
 * that would garble or disguise a line in a mail reader: they are shown as `?` (tabs stay).
 */
export function clean(s: string): string {
  return s.replace(/[\u0000-\u0008\u000b-\u001f\u007f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, "?");
}

/** One line: newlines too become spaces (subjects, table cells). */
export function oneLine(s: string): string {
  return clean(s.replace(/\r?\n/g, " ")).trim();
}

/** A message from elsewhere, fit to show: cleaned, on one line, cut at `max` characters. */
export function shown(s: string, max: number): string {
  const one = clean(s.replace(/\r?\n/g, " "));
  return one.length > max ? `${one.slice(0, max)}…` : one;
}

/** FNV-1a over UTF-16 units: a stable 32-bit number for a string (not one that resists collisions made on purpose). */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
