/**
 * What the archive writer's threads say to each other, and the proof each piece carries.
 *
 *   main → compression worker   CompressRequest        a piece of the tar stream to compress
 *   compression worker → sink   PieceToWrite (a port)  its compressed bytes, and the piece itself
 *   compression worker → main   CompressReply          the compressed length and hash, or an error
 *   main → sink                 PieceToWrite           plain tar, or a cached all-zero piece
 *   main → sink                 { expect }             what was read from the sources, entry by entry
 *   sink → main                 SinkReply              piece memory back, progress, the result
 *
 * Memory is transferred, never copied. The proof that an archive restores is made of three
 * checks, each on a different thread:
 *  1. the compression worker decompresses every piece it made and compares it with its input;
 *  2. the sink parses the pieces' input, in order, as a tar stream to its end, and compares every
 *     entry's name, type, size, link and content checksum with what the main thread read;
 *  3. the main thread reads the written file back and finds every compressed piece, by the
 *     length and hash its worker reported, at the place the order of the pieces gives it.
 * Together: the file is the compressed pieces in order, each decompresses to its input, and the
 * inputs in order are a tar stream holding exactly what was read.
 */
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

export type SinkRequest =
  | { fd: number; ports: MessagePort[]; flushBehind: boolean; prove: boolean }
  | { expect: Expectation[] }
  | { end: number }
  | ReserveRequest
  | PatchRequest
  | PieceToWrite;

export type SinkReply =
  | { back: ArrayBuffer }
  | { done: number; written: number; failed?: ErrnoFields; unproven?: string }
  | { failed: ErrnoFields }
  | { unproven: string }
  | { md5: string; sha256: string; written: number; entries: number; tarBytes: number };

/** The 64-bit hash a compressed piece is found by when the file is read back. */
export function pieceHash(bytes: Uint8Array): bigint {
  return BigInt.asUintN(64, BigInt(Bun.hash.wyhash(bytes, 0n)));
}
