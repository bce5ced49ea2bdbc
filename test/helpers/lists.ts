/**
 * File lists (<archive>.list) as tests read and forge them: the server writes them gzip-compressed
 * (src/core/state/list-file.ts), lists of earlier versions are plain text. Reading goes through
 * node:zlib, not shoot's reader, so a test sees what any gzip reader sees.
 */
import fs from "node:fs";
import zlib from "node:zlib";
import { compressList } from "../../src/core/state/list-file.ts";

/** The text of a list, compressed or plain. */
export function readListText(file: string): string {
  const bytes = fs.readFileSync(file);
  return (bytes[0] === 0x1f && bytes[1] === 0x8b ? zlib.gunzipSync(bytes) : bytes).toString("utf8");
}

/** The bytes of a list holding `text`, compressed as the server writes it. */
export function compressedList(text: string): Buffer {
  return Buffer.concat([...compressList([text])]);
}

/** Write a list holding `text` as the server writes one (compressed), or plain as earlier versions did. */
export function writeListText(file: string, text: string, plain = false): void {
  fs.writeFileSync(file, plain ? text : compressedList(text));
}
