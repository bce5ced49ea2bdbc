/** Small file-system steps that keep data safe: atomic replace, directory fsync. */
import fs from "node:fs";
import path from "node:path";
import { TEMP_PREFIX } from "./naming.ts";

/** Flush a directory so a rename in it survives a power cut. */
/**
 * fsync a file on a pool thread, resolving (never rejecting) with the error it met, if any,
 * so that a caller who stops waiting leaves no rejection unhandled. The caller must act on
 * that error: Linux reports a failed write-back once, to the first fsync that asks, and a
 * later fsync through another descriptor may not see it.
 */
export async function flushToDisk(file: string): Promise<unknown> {
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(file, "r");
    await handle.sync();
    return undefined;
  } catch (e) {
    return e;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

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

export type FileContent = string | Uint8Array | Iterable<string | Uint8Array>;

/**
 * A new file, open for writing (and reading, when asked) with O_CREAT|O_EXCL|O_NOFOLLOW: never
 * an existing file, never through a symbolic link someone put under its name.
 */
export function createExclusive(file: string, mode = 0o600, readable = false): number {
  const c = fs.constants;
  return fs.openSync(file, (readable ? c.O_RDWR : c.O_WRONLY) | c.O_CREAT | c.O_EXCL | c.O_NOFOLLOW, mode);
}

/**
 * Write `content` to dir/name through a temporary file (`tmpName` in `dir`, by default the
 * name with the temporary prefix that leftovers cleaning knows), flushed before it takes the
 * name: readers see the old or the new file, never a part. Pieces of text are gathered into
 * writes of about 1 MiB; a piece of bytes is written before the next piece is asked for, so a
 * reader may hand the same buffer each time. The temporary is created afresh (a leftover of a
 * killed run is removed first, never written through) and removed on every way out.
 */
export function writeFileAtomic(dir: string, name: string, content: FileContent, mode = 0o600, tmpName = `${TEMP_PREFIX}${name}`): void {
  const tmp = path.join(dir, tmpName);
  let fd: number;
  try {
    fd = createExclusive(tmp, mode);
  } catch (e) {
    if ((e as { code?: string }).code !== "EEXIST") throw e;
    fs.rmSync(tmp, { force: true, recursive: true });
    fd = createExclusive(tmp, mode);
  }
  try {
    try {
      if (typeof content === "string" || content instanceof Uint8Array) writeAll(fd, typeof content === "string" ? Buffer.from(content) : content);
      else writePieces(fd, content);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path.join(dir, name));
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** A file's size, or undefined when there is no file to ask (gone, unreadable directory). */
export function sizeOf(p: string): number | undefined {
  try {
    return fs.statSync(p).size;
  } catch {
    return undefined;
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; ) at += fs.writeSync(fd, bytes, at, bytes.length - at);
}

/** Text gathered into writes of about 1 MiB: a large list is never one string in memory. */
class TextBatch {
  private parts: string[] = [];
  private size = 0;

  constructor(private readonly fd: number) {}

  add(text: string): void {
    this.parts.push(text);
    if ((this.size += text.length) >= 1 << 20) this.flush();
  }

  flush(): void {
    if (this.parts.length) writeAll(this.fd, Buffer.from(this.parts.join("")));
    this.parts = [];
    this.size = 0;
  }
}

function writePieces(fd: number, pieces: Iterable<string | Uint8Array>): void {
  const text = new TextBatch(fd);
  for (const p of pieces) {
    if (typeof p === "string") text.add(p);
    else {
      text.flush();
      writeAll(fd, p);
    }
  }
  text.flush();
}

/** The bytes of a file in pieces of up to 1 MiB, each in the same buffer: use one before asking for the next. */
export function* readChunks(file: string): Generator<Uint8Array> {
  const fd = fs.openSync(file, "r");
  try {
    yield* chunksAt(fd, 0);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads the whole of `buf` from byte `at` of an open file, or fewer bytes at its end; the count read. */
export function readAt(fd: number, buf: Uint8Array, at: number): number {
  let got = 0;
  while (got < buf.length) {
    const n = fs.readSync(fd, buf, got, buf.length - got, at + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** The bytes of an open file from byte `at` to its end, as readChunks gives them (one buffer, reused). */
export function chunksAt(fd: number, at: number): Generator<Uint8Array> {
  const buf = Buffer.allocUnsafe(1 << 20);
  return piecesAt(fd, at, () => buf);
}

/**
 * The bytes of an open file from byte `at` to its end, each read into the buffer `take` gives
 * (the same one again, or another); `onRead` is told where each read starts.
 */
export function* piecesAt(
  fd: number, at: number, take: () => Buffer, onRead?: (position: number) => void,
): Generator<Buffer> {
  for (;;) {
    const buf = take();
    onRead?.(at);
    const n = fs.readSync(fd, buf, 0, buf.length, at);
    if (n === 0) return;
    at += n;
    yield buf.subarray(0, n);
  }
}

/**
 * The lines of a text file, read in pieces of 1 MiB: a list of a million files is never in
 * memory whole. A last line without its newline is given too.
 */
export function readLines(file: string): Generator<string> {
  return linesOf(readChunks(file));
}

/** The lines of text given in pieces of bytes (a piece may be reused for the next one). */
export function* linesOf(pieces: Iterable<Uint8Array>): Generator<string> {
  // bytes since the last newline, kept as bytes: a piece may end inside a character, and
  // only a newline (never part of a longer UTF-8 character) is a safe place to decode
  let carry: Buffer[] = [];
  for (const piece of pieces) {
    const buf = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    const cut = buf.lastIndexOf(10);
    if (cut < 0) {
      carry.push(Buffer.from(buf));
      continue;
    }
    const head = carry.length ? Buffer.concat([...carry, buf.subarray(0, cut)]) : buf.subarray(0, cut);
    carry = cut + 1 < buf.length ? [Buffer.from(buf.subarray(cut + 1))] : [];
    yield* head.toString("utf8").split("\n");
  }
  if (carry.length) yield Buffer.concat(carry).toString("utf8");
}

/**
 * Lines appended to a new file (created for the owner only), written in pieces of about 1 MiB.
 * Its errors name the file and keep their errno code (ENOSPC stays ENOSPC).
 */
export class LineWriter {
  private readonly fd: number;
  private readonly text: TextBatch;
  private closed = false;

  constructor(readonly file: string) {
    try {
      this.fd = createExclusive(file, 0o600);
    } catch (e) {
      throw this.named(e);
    }
    this.text = new TextBatch(this.fd);
  }

  line(line: string): void {
    try {
      this.text.add(`${line}\n`);
    } catch (e) {
      throw this.named(e);
    }
  }

  /** Write what is left and close; the file stays. A second call does nothing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.text.flush();
    } catch (e) {
      throw this.named(e);
    } finally {
      fs.closeSync(this.fd);
    }
  }

  private named(e: unknown): Error {
    return Object.assign(new Error(`writing ${this.file}: ${(e as Error).message}`), { code: (e as { code?: string }).code });
  }
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
