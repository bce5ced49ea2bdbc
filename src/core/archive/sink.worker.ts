/**
 * The archive writer's output worker (writer.ts): writes the pieces strictly in sequence
 * order, hashes exactly what it writes (MD5 and SHA-256), and parses the pieces' tar stream as
 * it goes to prove it holds what was read (stream-proof.ts). A write may block while the kernel
 * throttles dirty pages; on this thread that never holds up reading and compressing. A compiled
 * binary holds this file as an entry point of its own (scripts/build.ts).
 */
import fs from "node:fs";
import { openSyncRange, SYNC_FILE_RANGE_WRITE, type SyncFileRange } from "../common/libc.ts";
import {
  checkPieces, type CheckRequest, type ErrnoFields, type PatchRequest, type PieceToWrite,
  type ReserveRequest, type SinkReply, type SinkRequest,
} from "./pieces.ts";
import { StreamProof } from "./stream-proof.ts";

declare const self: Worker;

/** Compressed bytes gathered before one write(2). */
const OUT_BUFFER = 512 << 10;
/**
 * With flushBehind, the kernel is asked to start writing each 8 MiB to disk as soon as it is
 * written (sync_file_range, Linux), so the fsync after the archive finds little left to do and
 * the host never holds the whole archive as dirty pages.
 */
const FLUSH_BEHIND = 8 << 20;
/**
 * Written pieces that are not pooled are garbage here, but the engine collects them late: the
 * heap sees small objects, not the memory they hold outside it. A collection every 16 MiB
 * keeps that memory from piling up.
 */
const GC_EVERY = 16 << 20;

const md5 = new Bun.CryptoHasher("md5");
/** Absent when the main thread takes the SHA-256 (plain tar, see PipelineOptions.sha256Here). */
let sha256: Bun.CryptoHasher | undefined = new Bun.CryptoHasher("sha256");
const OUT = new Uint8Array(OUT_BUFFER);
type InSequence = PieceToWrite | ReserveRequest | PatchRequest;
const held = new Map<number, { piece: InSequence; port?: MessagePort }>();
let fd = -1;
let fill = 0;
let next = 0;
let end = -1;
let written = 0;
let collected = 0;
let failed: ErrnoFields | undefined;
let proof: StreamProof | undefined;
let syncRange: SyncFileRange | undefined;
let onDisk = 0;
let flushed = 0;
/** Where the first reserved place starts: from there on the digests are taken by reading the file back. */
let hashFrom = -1;
/** File offsets of the reserved places, by their sequence number. */
const reserved = new Map<number, number>();

function reply(m: SinkReply, transfer: ArrayBuffer[] = []): void {
  self.postMessage(m, transfer);
}

function emit(v: Uint8Array): void {
  let at = 0;
  while (at < v.length) at += fs.writeSync(fd, v, at, v.length - at);
  onDisk += v.length;
  if (syncRange && onDisk - flushed >= FLUSH_BEHIND) {
    // start writing back, do not wait; errors wait for the fsync
    syncRange(fd, flushed, onDisk - flushed, SYNC_FILE_RANGE_WRITE);
    flushed = onDisk;
  }
  if (hashFrom < 0) {
    md5.update(v);
    sha256?.update(v);
  }
}

/**
 * Bytes reach the file in the order they were put: what waits in OUT goes out before anything
 * else is written, including a piece large enough to be written as it is.
 */
function put(v: Uint8Array): void {
  const direct = v.length >= OUT.length / 2;
  if (fill > 0 && (direct || fill + v.length > OUT.length)) {
    emit(OUT.subarray(0, fill));
    fill = 0;
  }
  if (direct) emit(v);
  else {
    OUT.set(v, fill);
    fill += v.length;
  }
  written += v.length;
}

function fail(err: unknown): void {
  const e = err as NodeJS.ErrnoException;
  failed = { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall };
}

/** Write one piece, prove its tar bytes, and give its memory back to whoever reuses it. */
function writeOne(piece: PieceToWrite, port?: MessagePort): void {
  if (!failed) {
    try {
      put(new Uint8Array(piece.out, 0, piece.outLen));
    } catch (err) {
      fail(err);
    }
    if (piece.zeros) proveZeros(piece.inLen);
    else proof?.push(new Uint8Array(piece.input ?? piece.out, 0, piece.inLen));
  }
  if (piece.zeros) return collect(piece.outLen);
  if (piece.input === undefined) return reply({ back: piece.out }, [piece.out]);
  reply({ back: piece.input }, [piece.input]);
  if (piece.pooled && port) port.postMessage({ free: piece.out }, [piece.out]);
  else collect(piece.outLen);
}

function collect(bytes: number): void {
  if ((collected += bytes) < GC_EVERY) return;
  collected = 0;
  Bun.gc(true);
}

const ZEROS = new Uint8Array(1 << 20);

function proveZeros(n: number): void {
  for (let left = n; left > 0; left -= ZEROS.length) proof?.push(ZEROS.subarray(0, Math.min(left, ZEROS.length)), true);
}

/** A place for a header written later (streamed.ts): zeros on disk now, digests from here on by reading back. */
function reserveOne(m: ReserveRequest): void {
  if (failed) return;
  try {
    // the reserved place is on disk before its patch is written into it
    if (fill > 0) emit(OUT.subarray(0, fill));
    fill = 0;
    if (hashFrom < 0) hashFrom = onDisk;
    reserved.set(m.seq, onDisk);
    emit(new Uint8Array(m.reserve));
    written += m.reserve;
    proof?.streamStart();
  } catch (err) {
    fail(err);
  }
}

/** The framed header into its reserved place; every piece of the entry's content is written by now. */
function patchOne(m: PatchRequest): void {
  if (failed) return;
  try {
    const at = reserved.get(m.patch);
    if (at === undefined) throw new Error(`no reserved place ${m.patch} to fill`);
    reserved.delete(m.patch);
    const bytes = new Uint8Array(m.bytes);
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done, at + done);
    proof?.streamEnd(new Uint8Array(m.header));
  } catch (err) {
    fail(err);
  }
}

/** MD5 and SHA-256 of what lies past the first reserved place, read back from the file. */
function hashFromFile(): void {
  if (hashFrom < 0) return;
  const buf = new Uint8Array(1 << 20);
  for (let at = hashFrom; at < onDisk; ) {
    const n = fs.readSync(fd, buf, 0, Math.min(buf.length, onDisk - at), at);
    if (n === 0) throw new Error(`the archive ends at byte ${at} while reading it back for its checksums (${onDisk} were written)`);
    md5.update(buf.subarray(0, n));
    sha256?.update(buf.subarray(0, n));
    at += n;
  }
}

function finish(): void {
  if (!failed && fill > 0) {
    try {
      emit(OUT.subarray(0, fill));
    } catch (err) {
      fail(err);
    }
  }
  if (!failed) {
    try {
      hashFromFile();
    } catch (err) {
      fail(err);
    }
  }
  const unproven = failed ? undefined : proof?.finish();
  if (failed) reply({ failed });
  else if (unproven) reply({ unproven });
  else {
    const sha = sha256?.digest("hex") ?? "";
    const entries = proof?.entries ?? 0;
    reply({ md5: md5.digest("hex"), sha256: sha, written, entries, tarBytes: proof?.tarBytes ?? 0 });
  }
  end = -2;
}

function advance(): void {
  let moved = false;
  for (let h = held.get(next); h !== undefined; h = held.get(next)) {
    held.delete(next);
    if ("reserve" in h.piece) reserveOne(h.piece);
    else if ("patch" in h.piece) patchOne(h.piece);
    else writeOne(h.piece, h.port);
    next++;
    moved = true;
  }
  if (end >= 0 && next === end) finish();
  else if (moved) reply({ done: next, written, failed, unproven: proof?.failure });
}

/** This worker's share of reading the written file back (pieces.ts, third check). */
function checkShare({ check: c }: CheckRequest): void {
  let checked: string | undefined;
  try {
    checked = checkPieces(fd, c.lens, c.hashes, c.first, c.at, c.total);
  } catch (err) {
    checked = `reading the file back failed: ${err instanceof Error ? err.message : String(err)}`;
  }
  reply({ checked });
}

function onPiece(piece: InSequence, port?: MessagePort): void {
  held.set(piece.seq, { piece, port });
  advance();
}

self.onmessage = (ev: MessageEvent<SinkRequest>) => {
  const m = ev.data;
  if ("fd" in m) {
    fd = m.fd;
    if (m.flushBehind) syncRange = openSyncRange();
    if (m.prove) proof = new StreamProof();
    if (!m.sha256) sha256 = undefined;
    for (const p of m.ports) p.onmessage = (e) => onPiece(e.data as PieceToWrite, p);
  } else if ("expect" in m) {
    proof?.expect(m.expect);
  } else if ("end" in m) {
    end = m.end;
    advance();
  } else if ("check" in m) {
    checkShare(m);
  } else onPiece(m);
};
