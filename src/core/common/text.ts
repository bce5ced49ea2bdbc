/**
 * Small helpers for text: a message from elsewhere (a server's status record, an error) put on
 * one line and bounded, and a stable hash of a string. Escaping what is printed is
 * common/escape.ts's job, done where the text is rendered.
 */

/** A message on one line, cut at `max` characters (renderings escape what it holds; JSON keeps it as it is). */
export function shown(s: string, max: number): string {
  const one = s.replace(/\r?\n/g, " ");
  return one.length > max ? `${one.slice(0, max)}…` : one;
}

/** FNV-1a over UTF-16 units: a stable 32-bit number for a string (not one that resists collisions made on purpose). */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
