/**
 * Reading an archive whole, in one pass: every byte hashed, decompressed (gzip or zstd, told
 * from its first bytes, whatever its name says), the tar stream parsed to its end-of-archive
 * blocks, each entry (and with `onData` its content) handed on. restore, list and verify
 * --deep all read through here.
 *
 * An archive that cannot be read whole ends the pass with an ArchiveDamage that says what
 * went wrong and at which byte: of the file for a compressed stream that does not decode or
 * ends early (found again in small pieces once the pass has failed, to 32 bytes), of
 * the tar stream for a header that is not valid or an end that is missing. The file is then
 * still hashed to its end, so that the caller can tell an archive that changed since its
 * checksum was made from one that was damaged before.
 */
import fs from "node:fs";
import { Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ShootError, errorMessage } from "../common/errors.ts";
import { chunksAt } from "../state/fsutil.ts";
import type { Progress } from "../report/progress.ts";
import { detectCompression } from "../archive/writer.ts";
import { compressionOf } from "../state/naming.ts";
import { TarFormatError, TarParser, type TarListing } from "../archive/tar.ts";
import { passDigests, type Digests, type PassDigests, type Finished } from "./pass-digests.ts";
import { decompressor, inflatedByWorker, PiecePool, readFd, ZstdFrames } from "./inflate.ts";
import type { Compression, Stepped } from "./inflate.ts";
import { AsideFailure, FramesAside } from "./frames-aside.ts";

export interface PassResult {
  /** Bytes of the archive file read. */
  size: number;
  /** Absent when the pass was told to take the SHA-256 alone (`sha256Only`). */
  md5?: string;
  sha256: string;
  /** Bytes of the tar stream after decompression. */
  tarBytes: number;
  ms: number;
  /** Pieces of memory read into (when pieces are read into again), however many were read. */
  piecesMade?: number;
  /** zstd frames checked on a thread of their own rather than decompressed for the parser (frames-aside.ts). */
  aside?: number;
}

export interface PassOptions {
  progress?: Progress;
  signal?: AbortSignal;
  /** false: hash the file only, nothing is decompressed or parsed. */
  decompress?: boolean;
  /** Each entry as it is read; without it (nor onEntries) the tar stream is not parsed. */
  onEntry?: (e: TarListing) => void;
  /**
   * The content of the entry last given to onEntry, in pieces, all of it before the next entry.
   * A piece is the caller's only during the call: its memory is read into again after it.
   */
  onData?: (piece: Uint8Array) => void;
  /** The entries of each piece read, the pass waiting for what it returns (printing at the pace of a reader). */
  onEntries?: (entries: TarListing[]) => Promise<void> | void;
  /**
   * The file's digests, already proven (a pull hashed the copy as it arrived): returned as the
   * pass's own instead of hashing every byte a second time.
   */
  hashed?: Digests;
  /** Take the SHA-256 of the file, not its MD5 (the caller has the MD5 vouched for otherwise). */
  sha256Only?: boolean;
  /**
   * Decompress a file (not a stream) on a thread of its own, overlapping what the callbacks do
   * and the hashing, which this thread does alongside (a large file's SHA-256 on a thread of
   * its own: pass-digests.ts) unless `hashed` says it need not.
   */
  worker?: boolean;
  /**
   * Bytes read at a time (1 MiB by default). Each piece is new memory that lives until the
   * collector runs: a backup host proving many copies at once holds less with small pieces.
   */
  pieceBytes?: number;
}

/**
 * Where a pass reads the archive: a file open on a descriptor, or a stream opened afresh for
 * each pass (an object in an offsite store), whose compression its name tells. Only a file
 * can be read again to locate damage or hash the rest after it.
 */
export type ArchiveSource = number | { open: () => Promise<NodeJS.ReadableStream>; compression: Compression };

/** The source of passes over an archive held at `path`, or read through `open`; close it with closeSource. */
export function openSource(a: { file: string; path: string; open?: () => Promise<NodeJS.ReadableStream> }): ArchiveSource {
  if (!a.open) return fs.openSync(a.path, "r");
  return { open: a.open, compression: compressionOf(a.file) ?? "none" };
}

/**
 * What tells that the file open on a descriptor was written to since: a write moves its ctime,
 * which no writer can set back (the kernel times a change after a look finely); undefined for
 * a stream, whose passes must hash it to tell.
 */
export function stampOf(src: ArchiveSource): string | undefined {
  if (typeof src !== "number") return undefined;
  const s = fs.fstatSync(src, { bigint: true });
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

export function closeSource(src: ArchiveSource): void {
  if (typeof src === "number") fs.closeSync(src);
}

/** Why an archive cannot be read whole, and where. */
export class ArchiveDamage extends Error {
  /** The file hashed to its end despite the damage (undefined when it could not be read). */
  digests: ({ size: number } & Digests) | undefined;
  constructor(
    message: string,
    /** "unsupported": what GNU tar reads but this reader refuses (an extended header over its limit). */
    readonly kind: "damaged" | "unsupported",
    /** Byte of the archive file where it went wrong, when known. */
    readonly fileOffset: number | undefined,
    /** Byte of the tar stream where it went wrong, or how far it was read whole. */
    readonly tarOffset: number,
  ) {
    super(message);
    this.name = "ArchiveDamage";
  }
}



/** The compression a file's first bytes say. */
function sniff(fd: number): Compression {
  const head = Buffer.alloc(4);
  fs.readSync(fd, head, 0, 4, 0);
  return detectCompression(head);
}

/** Which stage of a pass failed first: the others only fail after it, as the pipeline tears them down. */
type FirstError = (where: "read" | "decode" | "frame" | "sink", e: unknown) => void;

/**
 * The tar stream's sink: headers parsed, entries and content handed on; `objects`: it is the
 * worker's stream, which may step over content.
 */
function tarSink(
  parser: TarParser,
  opts: PassOptions,
  failed: FirstError,
  /** Called with each chunk once parsed (its pieces given to onData are done with). */
  release: ((chunk: Buffer) => void) | undefined,
  objects: boolean,
): Writable {
  return new Writable({
    objectMode: objects,
    highWaterMark: objects ? 1 : undefined,
    write(chunk: Buffer | Stepped, _enc, done) {
      let batch: TarListing[] | undefined;
      try {
        const onEntry = opts.onEntries ? (e: TarListing) => (batch ??= []).push(e) : opts.onEntry!;
        if (Buffer.isBuffer(chunk)) {
          parser.push(chunk, onEntry, opts.onData);
          release?.(chunk);
        } else stepOver(parser, chunk.stepped);
      } catch (e) {
        failed("sink", e);
        return done(e as Error);
      }
      if (!batch || !opts.onEntries) return done();
      Promise.resolve(opts.onEntries(batch)).then(() => done(), (e: unknown) => {
        failed("sink", e);
        done(e as Error);
      });
    },
  });
}

/** Content the worker's parser stepped over, stepped over here: the two parsers read the same bytes, so they agree. */
function stepOver(parser: TarParser, n: number): void {
  try {
    parser.passContent(n);
  } catch (e) {
    throw new AsideFailure(`the frames set aside do not fall within a file's content: ${errorMessage(e)}`);
  }
}

/** Pieces of a file read between two turns of the event loop. */
const YIELD_EVERY = 32;

/** The archive's bytes: the file from its start, or the stream opened afresh. */
async function rawInput(
  src: ArchiveSource,
  failed: FirstError,
  readAt: (p: number) => void,
  pieceBytes: number | undefined,
  pool: PiecePool | undefined,
): Promise<NodeJS.ReadableStream> {
  if (typeof src === "number") {
    // two pieces ahead at most: read ahead of a slower stage, the pieces would pile up in the
    // queue, several passes at once on a backup host that proves many copies
    return Readable.from((async function* reading(): AsyncGenerator<Buffer> {
      let n = 0;
      try {
        for (const piece of readFd(src, 0, readAt, pieceBytes, pool)) {
          yield piece;
          // back to the event loop now and then, where a signal is seen: a pass over a plain tar
          // otherwise runs from one queued step to the next until its end
          if (++n % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve));
        }
      } catch (e) {
        failed("read", e);
        throw e;
      }
    })(), { highWaterMark: 2 });
  }
  let input: NodeJS.ReadableStream;
  try {
    input = await src.open();
  } catch (e) {
    throw new ArchiveDamage(`the archive cannot be read: ${errorMessage(e)}`, "damaged", 0, 0);
  }
  input.on("error", (e) => failed("read", e));
  return input;
}

/**
 * Read the archive open on `fd` from its start. Rejects with ArchiveDamage when it cannot be
 * read whole, with what a callback threw as it was thrown, and with the signal's reason when
 * aborted.
 */
export async function archivePass(src: ArchiveSource, opts: PassOptions = {}): Promise<PassResult> {
  const fd = typeof src === "number" ? src : undefined;
  const compression = opts.decompress === false ? "none" : fd === undefined ? (src as Exclude<ArchiveSource, number>).compression : sniff(fd);
  const parse = opts.decompress !== false && (opts.onEntry !== undefined || opts.onEntries !== undefined);
  // decompressed on a worker while this thread parses, this thread need not read the file at all
  const onWorker = opts.worker === true && fd !== undefined && compression !== "none" && parse;
  // content handed to nobody need not be decompressed for the parser: its frames are checked
  // aside, where decompressing is the pass's longest work (with both digests to take, their
  // thread is, and a thread more only slows it on two cores)
  const lightDigests = opts.hashed !== undefined || opts.sha256Only === true;
  const aside = onWorker && compression === "zstd" && opts.onData === undefined && lightDigests;
  const once = async (each: PassOptions, aside: boolean): Promise<PassResult> => {
    const digests = opts.hashed === undefined ? passDigests(fd, onWorker, opts.sha256Only !== true) : undefined;
    try {
      return await readWhole(src, each, { compression, parse, onWorker, aside }, digests);
    } finally {
      digests?.stop();
    }
  };
  if (!aside) return once(opts, false);
  const first = { seen: 0 };
  try {
    return await once(counted(opts, first, 0), true);
  } catch (e) {
    // the ordinary way names any damage where it lies, as it always has
    if (!(e instanceof AsideFailure)) throw e;
    return once(counted(opts, { seen: 0 }, first.seen), false);
  }
}

/**
 * The pass's callbacks, the entries counted in `seen` as they are handed on, the first `skip`
 * held back: a pass read again (the same bytes, the same entries) hands on only those the
 * first did not. Damage that lay in a frame set aside may have let the first pass hand on
 * entries after it; the caller then hears of the damage all the same.
 */
function counted(opts: PassOptions, seen: { seen: number }, skip: number): PassOptions {
  let left = skip;
  const fresh = (): boolean => {
    if (left > 0) {
      left--;
      return false;
    }
    seen.seen++;
    return true;
  };
  const { onEntry, onEntries } = opts;
  if (onEntries) {
    return { ...opts, onEntries: (es) => {
      const rest = es.filter(fresh);
      return rest.length > 0 ? onEntries(rest) : undefined;
    } };
  }
  return onEntry ? { ...opts, onEntry: (e) => fresh() && onEntry(e) } : opts;
}

/** archivePass, `digests` fed with every byte of the file unless the pass was told them. */
async function readWhole(
  src: ArchiveSource,
  opts: PassOptions,
  how: { compression: Compression; parse: boolean; onWorker: boolean; aside: boolean },
  digests: PassDigests | undefined,
): Promise<PassResult> {
  const started = performance.now();
  const fd = typeof src === "number" ? src : undefined;
  const { compression, parse } = how;
  let size = 0;
  let tarBytes = 0;
  let readAt = 0;
  let first: { where: "read" | "decode" | "frame" | "sink"; error: unknown } | undefined;
  const failed: FirstError = (where, error) => (first ??= { where, error });
  const frames = compression === "zstd" ? new ZstdFrames() : undefined;
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, done) {
      digests?.update(chunk);
      size += chunk.length;
      opts.progress?.update(size);
      const bad = frames?.push(chunk);
      if (bad) {
        const e = new Error(bad);
        failed("frame", e);
        return done(e);
      }
      done(null, chunk);
    },
  });
  const objects = how.onWorker;
  const counter = new Transform({
    objectMode: objects,
    highWaterMark: objects ? 1 : undefined,
    transform(chunk: Buffer | Stepped, _enc, done) {
      tarBytes += Buffer.isBuffer(chunk) ? chunk.length : chunk.stepped;
      done(null, chunk);
    },
  });
  const parser = parse ? new TarParser() : undefined;
  let cutSeenByWorker: string | undefined;
  let input: unknown[];
  let release: ((chunk: Buffer) => void) | undefined;
  let stopWorker: (() => Promise<void>) | undefined;
  let pool: PiecePool | undefined;
  let alongside: Promise<number | undefined> | undefined;
  let hashFailure: ArchiveDamage | undefined;
  let aside: FramesAside | undefined;
  // how.onWorker implies the rest, written out again for the types
  if (how.onWorker && fd !== undefined && compression !== "none" && parser) {
    const checker = how.aside ? new FramesAside(fd) : undefined;
    aside = checker;
    const { tar, free, stop } = inflatedByWorker(fd, compression, {
      aside: checker && ((frames) => checker.check(frames)),
      size: (n) => {
        size = readAt = n;
        opts.progress?.update(n);
      },
      failed,
      cut: (why) => (cutSeenByWorker = why),
    });
    release = free;
    stopWorker = stop;
    input = [tar];
    // hashing is the other half of the work of a check: this thread does it while the worker decompresses
    const unreadable = (at: number, e: unknown) => {
      const why = `the file cannot be read at byte ${at}: ${errorMessage(e)}`;
      hashFailure = new ArchiveDamage(why, "damaged", at, parser.offset);
      tar.destroy(hashFailure);
    };
    alongside = digests && !digests.readsItself ? hashAlongside(fd, digests, opts.signal, unreadable) : undefined;
  } else {
    const inflate = decompressor(compression);
    inflate?.on("error", (e) => failed("decode", e));
    // the sink sees the very pieces read when nothing decompresses: they are read into again
    const recycled = fd !== undefined && !inflate ? new PiecePool(opts.pieceBytes ?? 1 << 20) : undefined;
    pool = recycled;
    release = recycled && ((c) => recycled.give(c));
    input = [await rawInput(src, failed, (p) => (readAt = p), opts.pieceBytes, pool), hasher, ...(inflate ? [inflate] : [])];
  }
  const sink = parser
    ? tarSink(parser, opts, failed, release, objects)
    : new Writable({
      write: (c: Buffer, _e, done) => {
        release?.(c);
        done();
      },
    });
  const stages = [...input, counter, sink];
  try {
    // a variable number of stages: the typed overloads only know fixed ones
    await (pipeline as (...streams: unknown[]) => Promise<void>)(...stages, { signal: opts.signal });
    await aside?.done();
  } catch (e) {
    if (opts.signal?.aborted || e instanceof AsideFailure) throw e;
    // damage in a pass that set frames aside may lie in one of them, before where it was seen
    if (aside && aside.sent > 0 && (first?.where !== "sink" || first.error instanceof TarFormatError)) {
      throw new AsideFailure(`the pass stopped: ${errorMessage(first?.error ?? e)}`);
    }
    const damage = await describeFailure(first?.error ?? e, first?.where, { fd, compression, parser, readAt: fd === undefined ? size : readAt, size, tarBytes });
    if (!(damage instanceof ArchiveDamage)) throw damage;
    // hashed alongside, the file is hashed to its end (or failed to read): only the rest of one hashed here
    // hashed on the other thread, the whole file is: nothing is left to feed from here
    const whole = digests?.readsItself && fd !== undefined ? fs.fstatSync(fd).size : size;
    const from = alongside ? await alongside : whole;
    damage.digests = fd === undefined || !digests || from === undefined ? undefined : await hashRest(fd, digests, from);
    throw damage;
  } finally {
    aside?.stop();
    await stopWorker?.();
  }
  const hashed = alongside ? await alongside : size;
  opts.signal?.throwIfAborted();
  if (hashFailure) throw hashFailure;
  if (hashed !== size) {
    const why = `the file changed while it was being read: ${hashed} bytes were hashed, ${size} decompressed`;
    throw new ArchiveDamage(why, "damaged", hashed, tarBytes);
  }
  // the zstd decompressor ends without a word when its input stops within a frame
  const cut = frames?.end() ?? cutSeenByWorker;
  if (cut || (parser && !parser.ended)) {
    const message = cut ? `the archive is truncated: ${cut}; the tar stream was whole up to byte ${parser?.offset ?? tarBytes}` : `the archive is truncated: its tar stream ends at byte ${tarBytes} without its end-of-archive blocks${compression === "none" ? "" : ` (where the ${compression} stream ends)`}`;
    const damage = new ArchiveDamage(message, "damaged", compression === "none" ? tarBytes : size, parser?.offset ?? tarBytes);
    damage.digests = digests ? bothDigests(size, await digests.finish(size)) : undefined;
    throw damage;
  }
  const sums = opts.hashed ?? (await digests!.finish(size));
  if ("problem" in sums) throw new ArchiveDamage(sums.problem, "damaged", size, tarBytes);
  return { size, ...sums, tarBytes, ms: performance.now() - started, piecesMade: pool?.made, aside: aside?.sent };
}

interface FailureContext {
  /** Undefined for a stream: it cannot be read again. */
  fd: number | undefined;
  compression: Compression;
  parser: TarParser | undefined;
  readAt: number;
  size: number;
  tarBytes: number;
}

/** What a failed pass ran into: damage (with its byte), or the callback's own error, returned as it was. */
async function describeFailure(e: unknown, where: "read" | "decode" | "frame" | "sink" | undefined, f: FailureContext): Promise<unknown> {
  if (where === "frame") return new ArchiveDamage(`the zstd stream is damaged: ${errorMessage(e)}; the tar stream was whole up to byte ${f.parser?.offset ?? f.tarBytes}`, "damaged", f.size, f.parser?.offset ?? f.tarBytes);
  if (where === "sink" && e instanceof TarFormatError) {
    const at = e.offset ?? f.parser?.offset ?? f.tarBytes;
    const stream = f.compression === "none" ? "the tar stream (the file itself)" : `the tar stream (decompressed from ${f.compression})`;
    return new ArchiveDamage(`${stream} is ${e.kind === "unsupported" ? "not readable here" : "damaged"} at byte ${at}: ${e.reason}`, e.kind, f.compression === "none" ? at : undefined, at);
  }
  if (where === "decode") {
    const msg = errorMessage(e);
    const whole = `the tar stream was whole up to byte ${f.parser?.offset ?? f.tarBytes}`;
    if (/unexpected end|end of file|truncat|incomplete/i.test(msg)) {
      return new ArchiveDamage(`the archive is truncated: the ${f.compression} stream ends early, at byte ${f.size} of the file (its end); ${whole}`, "damaged", f.size, f.parser?.offset ?? f.tarBytes);
    }
    const at = f.fd === undefined ? undefined : await decodeFailureAt(f.fd, f.compression);
    const spot = at === undefined ? `near byte ${f.size} of the file` : `at byte ${at} of the file (in the 32 bytes from there)`;
    return new ArchiveDamage(`the ${f.compression} stream does not decode ${spot}: ${msg}; ${whole}`, "damaged", at ?? f.size, f.parser?.offset ?? f.tarBytes);
  }
  if (where === "read") {
    return new ArchiveDamage(`the file cannot be read at byte ${f.readAt}: ${errorMessage(e)}`, "damaged", f.readAt, f.parser?.offset ?? f.tarBytes);
  }
  return e;
}

/**
 * The file hashed on this thread while a worker decompresses it: a piece at a time, letting
 * the worker's pieces in between. Resolves to the bytes hashed (the whole file unless
 * aborted), or undefined when a read failed (`unreadable` is told where, to end the pass).
 */
async function hashAlongside(
  fd: number,
  digests: PassDigests,
  signal: AbortSignal | undefined,
  unreadable: (at: number, e: unknown) => void,
): Promise<number | undefined> {
  let at = 0;
  try {
    for (const chunk of chunksAt(fd, 0)) {
      digests.update(chunk);
      at += chunk.length;
      if (signal?.aborted) return at;
      await new Promise((resolve) => setImmediate(resolve));
    }
    return at;
  } catch (e) {
    unreadable(at, e);
    return undefined;
  }
}

/** The rest of the file into the hashes, after a pass stopped: the whole file's digests, or undefined when it cannot be read. */
async function hashRest(fd: number, digests: PassDigests, from: number): Promise<ArchiveDamage["digests"]> {
  let size = from;
  try {
    for (const chunk of readFd(fd, from)) {
      digests.update(chunk);
      size += chunk.length;
    }
  } catch {
    return undefined;
  }
  return bothDigests(size, await digests.finish(size));
}

/** A damaged archive's digests, when both could be taken over the same bytes. */
function bothDigests(size: number, f: Finished): ArchiveDamage["digests"] {
  return "problem" in f ? undefined : { size, ...f };
}

/**
 * The byte of the file where its compressed stream stops decoding: the stream decompressed
 * again in pieces of 64 KiB until one fails, then once more in pieces of 32 bytes within that
 * one. Only ever run on an archive that failed, so it may cost a second read.
 */
async function decodeFailureAt(fd: number, c: Compression): Promise<number | undefined> {
  const coarse = await failingPiece(fd, c, 1 << 16, Infinity);
  if (coarse === undefined) return undefined;
  return (await failingPiece(fd, c, 32, coarse)) ?? coarse;
}

/** The offset of the first piece after which the decompressor fails, feeding 64 KiB pieces before `fineFrom` and `piece`-sized ones from there. */
async function failingPiece(fd: number, c: Compression, piece: number, fineFrom: number): Promise<number | undefined> {
  const d = decompressor(c);
  if (!d) return undefined;
  let failed = false;
  d.on("data", () => {});
  d.on("error", () => (failed = true));
  const step = (chunk: Buffer | undefined) =>
    new Promise<void>((resolve) => {
      const settle = () => {
        d.off("error", settle);
        resolve();
      };
      d.once("error", settle);
      if (chunk) d.write(chunk, settle);
      else d.end(settle);
    });
  let position = 0;
  try {
    for (;;) {
      const size = position < fineFrom ? Math.min(1 << 16, fineFrom - position) : piece;
      const buf = Buffer.allocUnsafe(size);
      const n = fs.readSync(fd, buf, 0, size, position);
      await step(n === 0 ? undefined : buf.subarray(0, n));
      if (failed) return position;
      if (n === 0) return undefined;
      position += n;
    }
  } finally {
    d.destroy();
  }
}

/**
 * Read the archive at `file` whole, the entries of each piece read to `onEntries` (the read
 * waits for what it returns). Damage ends it as ARCHIVE_DAMAGED or ARCHIVE_UNSUPPORTED, with
 * the byte where it went wrong.
 */
export async function readEntries(file: string, onEntries: (entries: TarListing[]) => Promise<void> | void): Promise<PassResult> {
  const fd = fs.openSync(file, "r");
  try {
    return await archivePass(fd, { onEntries });
  } catch (e) {
    if (!(e instanceof ArchiveDamage)) throw e;
    throw new ShootError(e.kind === "unsupported" ? "ARCHIVE_UNSUPPORTED" : "ARCHIVE_DAMAGED", `${file} cannot be read whole: ${e.message}`);
  } finally {
    fs.closeSync(fd);
  }
}

