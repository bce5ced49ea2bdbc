/** Small file-system steps that keep data safe: atomic replace, directory fsync. */
import fs from "node:fs";
import path from "node:path";
import { TEMP_PREFIX } from "./naming.ts";

/** Flush a directory so a rename in it survives a power cut. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    // some file systems refuse fsync on directories; the rename itself is still atomic
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Write `content` to dir/name through a temporary file: readers see the old or the new file, never a part. */
export function writeFileAtomic(dir: string, name: string, content: string | Uint8Array | Iterable<string>, mode = 0o600): void {
  const tmp = path.join(dir, `${TEMP_PREFIX}${name}`);
  const fd = fs.openSync(tmp, "w", mode);
  try {
    if (typeof content === "string" || content instanceof Uint8Array) writeAll(fd, typeof content === "string" ? Buffer.from(content) : content);
    else writePieces(fd, content);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, path.join(dir, name));
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; ) at += fs.writeSync(fd, bytes, at, bytes.length - at);
}

/** Pieces gathered into writes of about 1 MiB: the whole text is never held at once. */
function writePieces(fd: number, pieces: Iterable<string>): void {
  let batch: string[] = [];
  let size = 0;
  for (const p of pieces) {
    batch.push(p);
    if ((size += p.length) >= 1 << 20) {
      writeAll(fd, Buffer.from(batch.join("")));
      batch = [];
      size = 0;
    }
  }
  if (batch.length) writeAll(fd, Buffer.from(batch.join("")));
}

/** The names in a directory; none when it does not exist (yet). */
export function readDirOrEmpty(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return [];
    throw e;
  }
}

export function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
