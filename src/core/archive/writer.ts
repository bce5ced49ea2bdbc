/**
 * The archive writer: tar → cut into content-defined pieces → compress each piece on its own
 * → hash → write, in one streaming pass with bounded memory.
 *
 * Each piece becomes an independent gzip member or zstd frame; concatenated they are a
 * standard .tar.gz / .tar.zst that gzip, zstd and tar read as one stream. Pieces are
 * compressed on worker threads (several at once, so every core works) and written in order
 * as they complete. Because the cut points depend only on the content around them,
 * an unchanged region of the tree compresses to the same bytes day after day, which is what
 * lets rsync send only the changed parts of a new archive.
 */
import fs from "node:fs";
import os from "node:os";
import zlib from "node:zlib";
import type { Compression } from "../common/config.ts";
import { Chunker, isAllZero, type ChunkerParams } from "./chunker.ts";
import { encodeHeader, paddingAfter, RECORD, BLOCK, TarFormatError, TarParser, type TarListing, type TarOwnership, type TarType } from "./tar.ts";
import { errnoCode, errorMessage } from "../common/errors.ts";
import { ArchiveUnprovenError, compressionThreads, PiecePipeline } from "./pipeline.ts";
import { frameHeader, RESERVED, streamedHeader, type StreamedEntry } from "./streamed.ts";

export type { StreamedEntry } from "./streamed.ts";
import { crc32Zeros } from "./crc32.ts";

export type EntryType = TarType;

export interface ArchiveEntry extends TarOwnership {
  /** Absolute path on disk to read from (files, and hard links whose first name was left out). */
  source: string;
  /** Name inside the archive: absolute path without the leading "/"; directories without a trailing "/". */
  name: string;
  type: EntryType;
  /** File size from the scan (0 for non-files). The archive holds the size found when the file is opened. */
  size: number;
  /** Modification time in ms (integer part from stat). */
  mtimeMs: number;
  /** Full-precision mtime in ns when known: the pax mtime keeps its fraction. */
  mtimeNs?: bigint;
  /** Symlink: its target as read; hard link: the archive name of the first entry with that inode. */
  linkTarget?: string;
  /** Directory of an incremental archive: its GNU dumpdir (incremental.ts), written with its header. */
  dumpdir?: string;
}

export type ArchiveWarningCode = "FILE_VANISHED" | "FILE_UNREADABLE" | "FILE_CHANGED";

export interface ArchiveWarning {
  code: ArchiveWarningCode;
  /** The file on disk. */
  path: string;
  message: string;
}

export interface ArchiveOptions {
  compression: Compression;
  /** gzip 1-9, zstd 1-19 */
  level: number;
  onWarning?: (w: ArchiveWarning) => void;
  /** Called now and then; inputBytes counts the uncompressed tar stream. */
  onProgress?: (p: { inputBytes: number; outputBytes: number }) => void;
  /** Abort: stop promptly and reject with the signal's reason. */
  signal?: AbortSignal;
  /** zstd: the system's libzstd when it loads (the default, see libzstd.ts); false: Bun's own zstd. */
  systemZstd?: boolean;
  /** The caller will fsync fd: have the kernel write the archive to disk as it goes (FLUSH_BEHIND). */
  flushBehind?: boolean;
  /** Compression threads; default one per core the process may use. */
  threads?: number;
  /**
   * Prove the archive restorable before the promise resolves (pieces.ts): on by default, and
   * turned off only to measure what the proof costs. The fd must then be open for reading too.
   */
  prove?: boolean;
  /**
   * Called once the last byte is written and before the archive is proven: tests damage the
   * file here, as a failing disk or another writer would.
   */
  onWritten?: (fd: number) => void;
  /**
   * Entries whose content is a stream of unknown length (database dumps), written after the
   * entries (streamed.ts). The fd must be open for reading too: the checksums past the first of
   * them are taken by reading the file back.
   */
  streams?: readonly StreamedEntry[];
}

export interface ArchiveResult {
  /** Bytes written to the file descriptor. */
  size: number;
  /** Hex digests of exactly the bytes written. */
  md5: string;
  sha256: string;
  /** Entries written to the archive. */
  entries: number;
  /** Bytes of the uncompressed tar stream. */
  inputBytes: number;
  /** Archive names of entries left out, or whose content could not be read completely. */
  skipped: string[];
  /** What compressed the pieces, e.g. "libzstd 1.5.4" or "libdeflate". */
  engine: string;
  /** The archive was proven restorable: every piece, the whole tar stream, the file read back. */
  proven: boolean;
  /** The streamed entries written, with their sizes. */
  streamed: Array<{ name: string; size: number }>;
}

/**
 * Piece sizes. gzip forgets everything beyond 32 KiB anyway, so small pieces cost little
 * ratio; zstd looks further back and gets larger pieces (~190 KiB), with a minimum so that
 * only a third of the bytes are hashed. Pieces of up to 1 MiB made zstd 1.5 % smaller but
 * took a whole server run over 120 MiB at times. Measured on a 1 GiB tree: +4 % (gzip) and
 * +3 % (zstd) size against one stream, and 0.2 % of the archive sent by rsync after 1 % of
 * the files changed. Plain tar needs no content-defined cuts: unchanged bytes stay unchanged.
 */
const PIECES: Record<Compression, ChunkerParams> = {
  gzip: { minSize: 32 << 10, avgGap: 32 << 10, maxSize: 256 << 10, readSize: 256 << 10 },
  zstd: { minSize: 128 << 10, avgGap: 64 << 10, maxSize: 512 << 10, readSize: 256 << 10 },
  none: { minSize: 1 << 20, avgGap: 0, maxSize: 1 << 20, readSize: 1 << 20 },
};

const PROGRESS_EVERY_MS = 250;

function nsOf(e: { mtimeMs: number; mtimeNs?: bigint }): bigint {
  if (e.mtimeNs !== undefined) return e.mtimeNs;
  const ms = Math.floor(e.mtimeMs);
  return BigInt(ms) * 1_000_000n + BigInt(Math.round((e.mtimeMs - ms) * 1e6));
}

/**
 * Whether a file's mtime is no longer the scanned one: to the microsecond when the entry
 * knows its mtime that closely (a list records whole microseconds), else to the millisecond.
 */
function mtimeMoved(nowMs: number, e: { mtimeMs: number; mtimeNs?: bigint }): boolean {
  return e.mtimeNs !== undefined ? Math.abs(nowMs - Number(e.mtimeNs) / 1e6) >= 0.001 : Math.floor(nowMs) !== Math.floor(e.mtimeMs);
}

/** A stable 32-bit hash of a name (FNV-1a over UTF-16 units), for header cut decisions. */
function nameToken(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const PADDING = new Uint8Array(BLOCK);
const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;
/** Linux only; 0 elsewhere. */
const O_NOATIME = fs.constants.O_NOATIME ?? 0;
const PROCESS_UID = process.getuid?.() ?? -1;

/**
 * Open a file to archive it without changing its access time (O_NOATIME, what GNU tar's
 * `--atime-preserve=system` does). Reading a file updates its atime about once a day
 * (relatime), and some programs read meaning into it: a mail client takes an mbox read after
 * its last delivery as "no new mail", a clean-up job takes an old atime as "unused". A backup
 * should not change either. The kernel allows the flag to the file's owner and to a process
 * with CAP_FOWNER (root, normally); where it is refused all the same (EPERM, e.g. root in a
 * user namespace), the file is opened the ordinary way.
 */
function openSource(source: string, ownerUid: number): number {
  if (O_NOATIME !== 0 && (PROCESS_UID === 0 || PROCESS_UID === ownerUid)) {
    try {
      return fs.openSync(source, OPEN_FLAGS | O_NOATIME);
    } catch (err) {
      if (errnoCode(err) !== "EPERM") throw err;
    }
  }
  return fs.openSync(source, OPEN_FLAGS);
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The archive was aborted", "AbortError");
}

/**
 * Write the whole archive to the already-open file descriptor `fd` (the caller opened the
 * temporary file, and will fsync, close and rename it). MD5 and SHA-256 of exactly the bytes
 * written are computed in the same pass. Errors writing to fd reject with the original errno
 * error; a file that cannot be read is a warning, never a failure.
 */
export async function writeArchive(
  entries: Iterable<ArchiveEntry> | AsyncIterable<ArchiveEntry>,
  fd: number,
  opts: ArchiveOptions,
): Promise<ArchiveResult> {
  const c = opts.compression;
  const prove = opts.prove !== false;
  const threads = opts.threads ?? compressionThreads();
  const pipelineOptions = { compression: c, level: opts.level, threads, maxPiece: PIECES[c].maxSize, systemZstd: opts.systemZstd, flushBehind: opts.flushBehind, prove, onWritten: opts.onWritten };
  const out: PiecePipeline = new PiecePipeline(fd, pipelineOptions, (slab) => chunker.recycle(slab));
  const chunker: Chunker = new Chunker(PIECES[c], (piece) => out.submit(piece));
  const skipped: string[] = [];
  /** Hard-link targets that were left out → the name that took their place (or none yet). */
  const replaced = new Map<string, string | null>();
  const warn = (code: ArchiveWarningCode, path: string, message: string) => opts.onWarning?.({ code, path, message });
  const signal = opts.signal;
  let inputBytes = 0;
  let count = 0;
  let lastProgress = performance.now();

  const progress = () => {
    if (!opts.onProgress) return;
    const now = performance.now();
    if (now - lastProgress < PROGRESS_EVERY_MS) return;
    lastProgress = now;
    opts.onProgress({ inputBytes, outputBytes: out.written });
  };

  const emit = (bytes: Uint8Array) => {
    chunker.append(bytes);
    inputBytes += bytes.length;
  };

  /** Stream one open file's content; returns false when it had to be zero-filled after a read error. */
  /** Stream one open file's content, with the CRC-32 of what went into the archive for the proof. */
  const copyFile = async (e: ArchiveEntry, fdIn: number, size: number): Promise<{ complete: boolean; endChecked: boolean; crc: number }> => {
    let crc = 0;
    let remaining = size;
    let readError: unknown;
    let reads = 0;
    let endChecked = false;
    while (remaining > 0) {
      if (signal?.aborted) throw abortError(signal);
      // ask for one byte more than is left: a short read then proves the file ended where its
      // header says, and a full one that it grew, without another system call
      const dst = chunker.space(remaining + 1);
      let n: number;
      try {
        n = fs.readSync(fdIn, dst, 0, dst.length, null);
      } catch (err) {
        readError = err;
        break;
      }
      reads++;
      if (n === 0) break;
      if (n > remaining) {
        warn("FILE_CHANGED", e.source, `${e.source}: grew while being read; archived its first ${size} bytes`);
        n = remaining;
        endChecked = true;
      } else if (n === remaining && dst.length > remaining) {
        endChecked = reads === 1; // a file read in several calls may have changed between them
      }
      if (prove) crc = isAllZero(dst, 0, n) ? crc32Zeros(crc, n) : Bun.hash.crc32(dst.subarray(0, n), crc);
      chunker.commit(n);
      remaining -= n;
      inputBytes += n;
      if (remaining > 0) await out.room();
      progress();
    }
    if (readError !== undefined) {
      warn("FILE_UNREADABLE", e.source, `${e.source}: read failed after ${size - remaining} of ${size} bytes (${errorMessage(readError)}); the rest is zero-filled in the archive`);
    } else if (remaining > 0) {
      warn("FILE_CHANGED", e.source, `${e.source}: shrank by ${remaining} bytes while being read; zero-filled to ${size} bytes in the archive`);
    }
    if (remaining > 0) {
      if (prove) crc = crc32Zeros(crc, remaining);
      chunker.appendZeros(remaining);
      inputBytes += remaining;
      endChecked = true;
    }
    return { complete: readError === undefined, endChecked, crc };
  };

  try {
    for await (const e of entries) {
      if (signal?.aborted) throw abortError(signal);
      let type = e.type;
      let linkTarget = e.linkTarget;
      if (type === "hardlink" && linkTarget !== undefined && replaced.has(linkTarget)) {
        // the first name of this inode was left out: this one carries the content instead
        const instead = replaced.get(linkTarget);
        if (instead) linkTarget = instead;
        else type = "file";
      }

      let fdIn: number | undefined;
      let size = 0;
      let mtimeNs = nsOf(e);
      let openedMtimeMs = 0;
      if (type === "file") {
        try {
          fdIn = openSource(e.source, e.uid);
        } catch (err) {
          const c = errnoCode(err);
          if (c === "ENOENT" || c === "ENOTDIR") warn("FILE_VANISHED", e.source, `${e.source}: vanished before it could be read; left out`);
          else if (c === "ELOOP") warn("FILE_CHANGED", e.source, `${e.source}: is no longer a regular file; left out`);
          else warn("FILE_UNREADABLE", e.source, `${e.source}: cannot be opened (${errorMessage(err)}); left out`);
          skipped.push(e.name);
          if (e.type === "file") replaced.set(e.name, null);
          continue;
        }
        const st = fs.fstatSync(fdIn);
        if (!st.isFile()) {
          fs.closeSync(fdIn);
          warn("FILE_CHANGED", e.source, `${e.source}: is no longer a regular file; left out`);
          skipped.push(e.name);
          if (e.type === "file") replaced.set(e.name, null);
          continue;
        }
        size = st.size;
        openedMtimeMs = st.mtimeMs;
        // (a hard link standing in for its left-out first name has no scanned size to compare)
        if ((e.type === "file" && size !== e.size) || mtimeMoved(st.mtimeMs, e)) {
          // archive the file as it is now, with the metadata that goes with this content
          const what = e.type === "file" && size !== e.size ? `size ${e.size} → ${size} bytes` : "modification time";
          warn("FILE_CHANGED", e.source, `${e.source}: changed since the scan (${what}); archived as found`);
          mtimeNs = nsOf({ mtimeMs: st.mtimeMs });
        }
        if (e.type === "hardlink" && e.linkTarget !== undefined) replaced.set(e.linkTarget, e.name);
      }

      try {
        const header = encodeHeader({
          name: e.name,
          type,
          mode: e.mode,
          uid: e.uid,
          gid: e.gid,
          uname: e.uname,
          gname: e.gname,
          size,
          mtimeNs,
          linkTarget,
          dumpdir: e.dumpdir,
        });
        chunker.boundary(nameToken(e.name));
        emit(header);
        count++;
        let crc = 0;
        if (fdIn !== undefined) {
          const copied = await copyFile(e, fdIn, size);
          const { complete, endChecked } = copied;
          crc = copied.crc;
          if (!complete) skipped.push(e.name);
          const pad = paddingAfter(size);
          if (pad) emit(PADDING.subarray(0, pad));
          if (!endChecked) {
            const after = fs.fstatSync(fdIn);
            if (after.size > size) warn("FILE_CHANGED", e.source, `${e.source}: grew while being read; archived its first ${size} bytes`);
            else if (after.mtimeMs !== openedMtimeMs) warn("FILE_CHANGED", e.source, `${e.source}: changed while being read`);
          }
        }
        out.expect({ name: e.name, type, size, crc, linkTarget: type === "symlink" || type === "hardlink" ? linkTarget : undefined });
      } finally {
        if (fdIn !== undefined) fs.closeSync(fdIn);
      }
      await out.room();
      progress();
    }

    const streamed: ArchiveResult["streamed"] = [];
    for (const s of opts.streams ?? []) {
      const w: StreamContext = { chunker, out, compression: c, prove, signal, progress, emit, counted: (n) => (inputBytes += n) };
      streamed.push({ name: s.name, size: await writeStreamed(s, w) });
      count++;
    }

    // end of archive: two zero blocks, then zeros to a whole record like GNU tar
    const end = 2 * BLOCK;
    const total = inputBytes + end;
    emit(new Uint8Array(end + ((RECORD - (total % RECORD)) % RECORD)));
    chunker.finish();
    const done = await out.finish();
    const { md5, sha256, size } = done;
    if (prove && (done.entries !== count || done.tarBytes !== inputBytes)) {
      throw new ArchiveUnprovenError(`the tar stream read back holds ${done.entries} entries in ${done.tarBytes} bytes; ${count} entries in ${inputBytes} bytes were written`);
    }
    opts.onProgress?.({ inputBytes, outputBytes: size });
    return { size, md5, sha256, entries: count, inputBytes, skipped, engine: out.engine, proven: prove, streamed };
  } finally {
    out.close();
  }
}

interface StreamContext {
  chunker: Chunker;
  out: PiecePipeline;
  compression: Compression;
  prove: boolean;
  signal?: AbortSignal;
  progress: () => void;
  /** Bytes through the chunker, counted as tar stream. */
  emit: (bytes: Uint8Array) => void;
  /** Count bytes of tar stream put in another way. */
  counted: (n: number) => void;
}

/**
 * One streamed entry (streamed.ts): a cut, a reserved place for the header, the content as it
 * comes (read no faster than the archive is written), the padding, another cut, then the
 * header into its place. Returns the content's size. A stream that ended unwhole (`ended`
 * throws) fails the archive.
 */
async function writeStreamed(s: StreamedEntry, w: StreamContext): Promise<number> {
  w.chunker.finish();
  const reservedSeq = w.out.reserve(RESERVED[w.compression]);
  w.counted(BLOCK);
  let size = 0;
  let crc = 0;
  for await (const chunk of s.content) {
    if (w.signal?.aborted) throw abortError(w.signal);
    if (w.prove) crc = Bun.hash.crc32(chunk, crc);
    w.chunker.append(chunk);
    w.counted(chunk.length);
    size += chunk.length;
    await w.out.room();
    w.progress();
  }
  await s.ended();
  const pad = paddingAfter(size);
  if (pad) {
    w.emit(PADDING.subarray(0, pad));
    if (w.prove) crc = crc32Zeros(crc, pad);
  }
  w.chunker.finish();
  const header = streamedHeader(s, size);
  // the proof counts content and padding on the side: its CRC-32 covers both
  w.out.expect({ name: s.name, type: "file", size, crc });
  w.out.patch(reservedSeq, frameHeader(w.compression, header), header);
  await w.out.room();
  return size;
}


/** The compression of an archive, from its first bytes (its name may lie). */
export function detectCompression(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  return "none";
}

export interface ListedEntry {
  name: string;
  type: string;
  size: number;
  mode: number;
  /** Modification time in ms since the epoch (with the fraction the archive holds). */
  mtime: number;
  mtimeNs: bigint;
  linkTarget?: string;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
}

/**
 * The entries of an archive (gzip, zstd or plain tar, detected from its content), a batch per
 * piece read, so that a caller can list millions without holding them. Rejects at the end when
 * the tar stream stops before its end-of-archive marker.
 */
export async function* archiveEntries(file: string): AsyncGenerator<ListedEntry[]> {
  const head = new Uint8Array(4);
  const fdh = fs.openSync(file, "r");
  try {
    fs.readSync(fdh, head, 0, 4, 0);
  } finally {
    fs.closeSync(fdh);
  }
  const compression = detectCompression(head);
  const input = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  const stream: NodeJS.ReadableStream =
    compression === "gzip" ? input.pipe(zlib.createGunzip())
    : compression === "zstd" ? input.pipe(zlib.createZstdDecompress())
    : input;
  const parser = new TarParser();
  let count = 0;
  try {
    for await (const chunk of stream) {
      const batch: ListedEntry[] = [];
      parser.push(chunk as Uint8Array, (t: TarListing) =>
        batch.push({
          name: t.name,
          type: t.type,
          size: t.size,
          mode: t.mode,
          mtime: Number(t.mtimeNs / 1_000_000n) + Number(t.mtimeNs % 1_000_000n) / 1e6,
          mtimeNs: t.mtimeNs,
          linkTarget: t.linkTarget,
          uid: t.uid,
          gid: t.gid,
          uname: t.uname,
          gname: t.gname,
        }));
      count += batch.length;
      if (batch.length > 0) yield batch;
      if (parser.ended) break;
    }
  } finally {
    input.destroy();
  }
  if (!parser.ended) throw new TarFormatError(`the archive ends before its end-of-archive marker (truncated after ${count} entries?)`);
}
