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
export function writeFileAtomic(dir: string, name: string, content: string | Uint8Array, mode = 0o600): void {
  const tmp = path.join(dir, `${TEMP_PREFIX}${name}`);
  const fd = fs.openSync(tmp, "w", mode);
  try {
    fs.writeSync(fd, typeof content === "string" ? Buffer.from(content) : content);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, path.join(dir, name));
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
