/**
 * What the archive writer's threads say to each other, and the proof each piece carries.
 *
 *   main → compression worker   CompressRequest        a piece of the tar stream to compress
 *   compression worker → sink   PieceToWrite (a port)  its compressed bytes, and the piece itself
 *   compression worker → main   CompressReply          the compressed length and hash, or an error
 *   main → sink                 PieceToWrite           plain tar, or a cached all-zero piece
 *   main → sink                 { expect }             what was read from the sources, entry by entry
 *   main → sink                 CheckRequest           its half of the read-back, at the end
 *   sink → main                 SinkReply              piece memory back, progress, the result
 *
 * Memory is transferred, never copied. The proof that an archive restores is made of three
 * checks, each on a different thread:
 *  1. the compression worker decompresses every piece it made and compares it with its input;
 *  2. the sink parses the pieces' input, in order, as a tar stream to its end, and compares every
 *     entry's name, type, size, link and content checksum with what the main thread read;
 *  3. once the last byte is written, the file is read back (the first half of the pieces by the
 *     main thread, the rest by the sink, at the same time) and every compressed piece is found,
 *     by the length and hash its worker reported, at the place the order of the pieces gives it.
 * Together: the file is the compressed pieces in order, each decompresses to its input, and the
 * inputs in order are a tar stream holding exactly what was read.
 */
import { readAt } from "../state/fsutil.ts";
import type { TarType } from "./tar.ts";

export interface CompressSetup {
  port: MessagePort;
  kind: "gzip" | "zstd";
  level: number;
  /** Largest piece, for the size of reusable buffers. */
  maxPiece: number;
  /** zstd: the system's libzstd when it loads. */
  systemZstd: boolean;
}

export interface CompressRequest {
  seq: number;
  buf: ArrayBuffer;
  len: number;
  /** Send a copy of the compressed bytes back (all-zero pieces are compressed once, then reused). */
  keep: boolean;
}

export type CompressReply =
  | { engine: string }
  | { seq: number; inLen: number; outLen: number; outHash: bigint; copy?: ArrayBuffer }
  | { seq: number; input: ArrayBuffer; error: string };

export interface PieceToWrite {
  seq: number;
  /** The bytes to write. */
  out: ArrayBuffer;
  outLen: number;
  /** The tar bytes `out` holds compressed; absent for plain tar, whose `out` is the tar bytes. */
  input?: ArrayBuffer;
  inLen: number;
  /** `out` holds `inLen` zero bytes compressed, and no input comes with it (sparse files). */
  zeros?: boolean;
  /** `out` belongs to its compression worker's pool: hand it back when written. */
  pooled?: boolean;
}

/** One entry as the main thread put it into the stream. */
export interface Expectation {
  name: string;
  type: TarType;
  size: number;
  /** CRC-32 of the content as read (zero-filled where a file shrank). */
  crc: number;
  linkTarget?: string;
}

export interface ErrnoFields {
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
}

/**
 * Streamed entries (streamed.ts), in sequence with the pieces: reserve a place in the file for
 * a header not yet known; later, write the framed header there and hand its tar block to the
 * proof, which has counted the entry's content on the side meanwhile.
 */
export interface ReserveRequest {
  seq: number;
  reserve: number;
}
export interface PatchRequest {
  seq: number;
  /** The sequence number of the reserve this fills. */
  patch: number;
  /** The framed header: exactly the reserved length. */
  bytes: ArrayBuffer;
  /** The 512-byte tar header block inside it. */
  header: ArrayBuffer;
}

/**
 * The output worker's share of the third check, once everything is written: the pieces
 * `first` to `first + lens.length - 1`, the first of them at byte `at` of the file.
 */
export interface CheckRequest {
  check: { first: number; at: number; total: number; lens: Uint32Array; hashes: BigUint64Array };
}

export type SinkRequest =
  | { fd: number; ports: MessagePort[]; flushBehind: boolean; prove: boolean; sha256: boolean }
  | { expect: Expectation[] }
  | { end: number }
  | CheckRequest
  | ReserveRequest
  | PatchRequest
  | PieceToWrite;

export type SinkReply =
  | { back: ArrayBuffer }
  | { done: number; written: number; failed?: ErrnoFields; unproven?: string }
  | { failed: ErrnoFields }
  | { unproven: string }
  | { md5: string; sha256: string; written: number; entries: number; tarBytes: number }
  | { checked: string | undefined };

/** The 64-bit hash a compressed piece is found by when the file is read back. */
export function pieceHash(bytes: Uint8Array): bigint {
  return BigInt.asUintN(64, BigInt(Bun.hash.wyhash(bytes, 0n)));
}

/**
 * The third check of the proof for a run of pieces: read them back from the file and find each,
 * by its length and hash, where the order of the pieces puts it. Answers what did not match,
 * or undefined. `first` numbers the pieces in the message, `total` is how many there are.
 */
export function checkPieces(
  fd: number, lens: Uint32Array, hashes: BigUint64Array, first: number, at: number, total: number,
): string | undefined {
  let largest = 0;
  for (const len of lens) largest = Math.max(largest, len);
  const buf = Buffer.allocUnsafe(largest);
  for (let i = 0; i < lens.length; i++) {
    const len = lens[i]!;
    const view = buf.subarray(0, len);
    const got = readAt(fd, view, at);
    if (got < len) return `the file ends at byte ${at + got}, inside piece ${first + i} of ${total}`;
    if (pieceHash(view) !== hashes[i]) {
      const bytes = `bytes ${at}-${at + len - 1} of the file`;
      return `piece ${first + i} of ${total} (${bytes}) is not what its compression worker made`;
    }
    at += len;
  }
  return undefined;
}
