/**
 * Text that came from an archive, a status file or a server, made fit for a terminal, a mail
 * or a metrics label: the one function every such text goes through before it is printed.
 *
 * It escapes as GNU tar's default quoting style does in a UTF-8 locale (`tar -tv`): a backslash
 * is doubled; BEL, BS, TAB, LF, VT, FF and CR become `\a \b \t \n \v \f \r`; every other C0 or
 * C1 control character, DEL, the line and paragraph separators, unassigned code points and
 * lone surrogates become the octal escapes of their UTF-8 bytes (ESC is `\033`, U+009B is
 * `\302\233`). One addition: invisible format characters (Unicode category Cf: bidi overrides
 * and isolates, zero-width spaces and joiners, the BOM), which GNU tar prints as they are, are
 * escaped too, since they can reorder or disguise a line on the screen. The result is plain
 * printable text in which every backslash starts an escape, so it reads back unambiguously.
 * JSON output keeps JSON's own escaping and never goes through here.
 */

const NAMED: Readonly<Record<string, string>> = {
  "\\": "\\\\", "\u0007": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r",
};

const UNSAFE = /[\\\u0000-\u001f\u007f-\u009f\u2028\u2029\p{Cf}\p{Cn}\p{Cs}]/gu;

/** The UTF-8 bytes of a code point (a lone surrogate as the three bytes it would take). */
function utf8Bytes(cp: number): number[] {
  if (cp < 0x80) return [cp];
  if (cp < 0x800) return [0xc0 | (cp >> 6), 0x80 | (cp & 0x3f)];
  if (cp < 0x10000) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
}

function escapeChar(ch: string): string {
  return NAMED[ch] ?? utf8Bytes(ch.codePointAt(0)!).map((b) => `\\${b.toString(8).padStart(3, "0")}`).join("");
}

/** `text` with control and invisible characters escaped as GNU tar shows them (see above). */
export function escapeText(text: string): string {
  return text.replace(UNSAFE, escapeChar);
}

/** Text of several lines (shoot's own multi-line messages): each line escaped, the line breaks kept. */
export function escapeLines(text: string): string {
  return text.split("\n").map(escapeText).join("\n");
}
