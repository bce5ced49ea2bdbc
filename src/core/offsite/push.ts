/**
 * Send one verified copy (archive, then .list where held, then .md5 last) to one store. The
 * archive's bytes are hashed as they stream from disk, before any encryption, and the upload is
 * completed only when they match what the server recorded (SHA-256, else the MD5): a copy that
 * rotted on the backup host's disk never becomes an offsite copy. An object already there with
 * the recorded checksum is not sent again.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import { Readable } from "node:stream";
import { Encrypter } from "age-encryption";
import { md5Line } from "../state/naming.ts";
import { formatBytes, formatDuration } from "../common/units.ts";
import { S3Failure } from "./s3.ts";
import { META, StoreError, encrypted, keysOf, type Store } from "./store.ts";
import { fileSource, upload, type UploadResult } from "./upload.ts";

export interface HeldCopy {
  source: string;
  /** The archive's name. */
  file: string;
  /** Where it is held. */
  path: string;
  size: number;
  md5: string;
  sha256?: string;
  /** The server's file list, when held beside it. */
  listPath?: string;
  /** When the backup host verified it (ISO): the order of copies in the store. */
  verified?: string;
}

export interface PushResult {
  key: string;
  state: "sent" | "present";
  /** Bytes of the archive object. */
  bytes: number;
  reusedParts: number;
  ms: number;
  /** What the object was checked against, for the record. */
  checked: string;
}

export interface PushOptions {
  now: Date;
  signal?: AbortSignal;
  onPart?: (p: { part: number; bytes: number; reused: boolean }) => void;
}

/** Headers of every object sent: lock, storage class. */
export function objectHeaders(store: Store, now: Date): Record<string, string> {
  const h: Record<string, string> = { "content-type": "application/octet-stream" };
  const { lock, storage_class } = store.cfg;
  if (lock) {
    h["x-amz-object-lock-mode"] = lock.mode.toUpperCase();
    h["x-amz-object-lock-retain-until-date"] = new Date(now.getTime() + lock.ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  }
  if (storage_class) h["x-amz-storage-class"] = storage_class;
  return h;
}

function metaHeaders(copy: HeldCopy, isEncrypted: boolean): Record<string, string> {
  return {
    [`x-amz-meta-${META.md5}`]: copy.md5,
    [`x-amz-meta-${META.size}`]: String(copy.size),
    ...(copy.sha256 ? { [`x-amz-meta-${META.sha256}`]: copy.sha256 } : {}),
    ...(isEncrypted ? { [`x-amz-meta-${META.encrypted}`]: "age" } : {}),
    ...(copy.verified ? { [`x-amz-meta-${META.verified}`]: copy.verified } : {}),
  };
}

/** A problem with the object under the key, judged from a HEAD's metadata; undefined when it is this copy. */
export function judgeStored(headers: Headers, copy: HeldCopy): string | undefined {
  const md5 = headers.get(`x-amz-meta-${META.md5}`);
  const sha = headers.get(`x-amz-meta-${META.sha256}`);
  const size = headers.get(`x-amz-meta-${META.size}`);
  if (!md5 && !sha) return "it carries no checksum of shoot's";
  if (md5 && md5 !== copy.md5) return `it has the MD5 ${md5}, the copy ${copy.md5}`;
  if (sha && copy.sha256 && sha !== copy.sha256) return `it has the SHA-256 ${sha}, the copy ${copy.sha256}`;
  if (size && Number(size) !== copy.size) return `it is ${size} bytes, the copy ${copy.size}`;
  return undefined;
}

/** Hashes of what was read (MD5 only when there is no SHA-256 to hold the bytes to). */
function readHashes(withMd5: boolean): { onRead: (piece: Uint8Array) => void; digests: () => { bytes: number; md5?: string; sha256: string } } {
  const md5 = withMd5 ? createHash("md5") : undefined;
  const sha = createHash("sha256");
  let bytes = 0;
  let result: { bytes: number; md5?: string; sha256: string } | undefined;
  return {
    onRead(piece) {
      md5?.update(piece);
      sha.update(piece);
      bytes += piece.length;
    },
    digests: () => (result ??= { bytes, md5: md5?.digest("hex"), sha256: sha.digest("hex") }),
  };
}

/** A file as a stream, each piece to `onRead` as it passes (for encryption, which takes a stream). */
function tappedStream(file: string, onRead: (piece: Uint8Array) => void): ReadableStream<Uint8Array> {
  const tap = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, ctl) {
      onRead(chunk);
      ctl.enqueue(chunk);
    },
  });
  return fileStream(file).pipeThrough(tap);
}

/**
 * A file as a stream of 64 KiB pieces, the size of age's chunks: with the larger pieces of
 * Bun.file().stream(), encrypting took twice as long.
 */
function fileStream(file: string): ReadableStream<Uint8Array> {
  return Readable.toWeb(fs.createReadStream(file, { highWaterMark: 64 * 1024 })) as unknown as ReadableStream<Uint8Array>;
}

async function encryptFor(recipients: readonly string[], stream: ReadableStream<Uint8Array>): Promise<ReadableStream<Uint8Array>> {
  const e = new Encrypter();
  for (const r of recipients) e.addRecipient(r);
  return (await e.encrypt(stream)) as unknown as ReadableStream<Uint8Array>;
}

/**
 * Encryption is the slow end of an encrypted push (two parts in flight keep up with it), and
 * each of age's 64 KiB chunks leaves garbage the collector was slow to take back: without a
 * collection after each part, memory rose to about 180 MiB.
 */
function encryptedPart(then?: PushOptions["onPart"]): NonNullable<PushOptions["onPart"]> {
  return (p) => {
    Bun.gc(false);
    then?.(p);
  };
}

async function headOf(store: Store, key: string, signal?: AbortSignal): Promise<Headers | undefined> {
  const res = await store.s3.send({ method: "HEAD", key }, { allow404: true, signal });
  return res.status === 404 ? undefined : res.headers;
}

/** Send a small or large file (plain or encrypted) without a checksum of its own to hold it to. */
async function sendFile(store: Store, key: string, path: string, headers: Record<string, string>, opts: PushOptions): Promise<UploadResult> {
  const { cfg, s3 } = store;
  const enc = encrypted(cfg);
  return upload(s3, enc ? await encryptFor(cfg.encrypt_to!, fileStream(path)) : fileSource(path), {
    key, headers, partSize: cfg.part_size, concurrency: cfg.concurrency, bwlimit: cfg.bwlimit, resumable: !enc, signal: opts.signal,
  });
}

export function describePush(r: PushResult): string {
  if (r.state === "present") return `already there, ${r.checked}`;
  const rate = r.ms > 0 ? `, ${formatBytes(Math.round((r.bytes / r.ms) * 1000))}/s` : "";
  return `sent ${formatBytes(r.bytes)} in ${formatDuration(r.ms)}${rate}${r.reusedParts ? ` (${r.reusedParts} part(s) kept from an interrupted upload)` : ""}; checked against the ${r.checked}`;
}

export async function pushCopy(store: Store, copy: HeldCopy, opts: PushOptions): Promise<PushResult> {
  const started = performance.now();
  const { cfg, s3 } = store;
  const enc = encrypted(cfg);
  const keys = keysOf(cfg, copy.source, copy.file, enc);
  const common = objectHeaders(store, opts.now);
  const against = copy.sha256 ? `SHA-256 ${copy.sha256}` : `MD5 ${copy.md5}`;
  const existing = await headOf(store, keys.archive, opts.signal);
  let result: PushResult;
  if (existing) {
    const problem = judgeStored(existing, copy);
    if (problem) throw new StoreError("STORE_CHECKSUM_MISMATCH", `${s3.where(keys.archive)} holds another object than the copy ${copy.file}: ${problem}; it was left as it is`);
    result = { key: keys.archive, state: "present", bytes: Number(existing.get("content-length")), reusedParts: 0, ms: 0, checked: `${against} (recorded on the object)` };
  } else {
    const hashed = readHashes(!copy.sha256);
    const body = enc ? await encryptFor(cfg.encrypt_to!, tappedStream(copy.path, hashed.onRead)) : fileSource(copy.path, hashed.onRead);
    const up = await upload(s3, body, {
      key: keys.archive, headers: { ...common, ...metaHeaders(copy, enc) }, partSize: cfg.part_size, concurrency: enc ? Math.min(2, cfg.concurrency) : cfg.concurrency,
      bwlimit: cfg.bwlimit, resumable: !enc, signal: opts.signal, onPart: enc ? encryptedPart(opts.onPart) : opts.onPart,
      beforeComplete: () => {
        const d = hashed.digests();
        if (d.bytes !== copy.size) return `${copy.path} gave ${d.bytes} bytes, the copy has ${copy.size}`;
        if (copy.sha256 && d.sha256 !== copy.sha256) return `the bytes read from ${copy.path} have the SHA-256 ${d.sha256}, the server recorded ${copy.sha256}`;
        if (!copy.sha256 && d.md5 !== copy.md5) return `the bytes read from ${copy.path} have the MD5 ${d.md5}, the server recorded ${copy.md5}`;
        return undefined;
      },
    });
    result = { key: keys.archive, state: "sent", bytes: up.bytes, reusedParts: up.reusedParts, ms: 0, checked: `${against}${enc ? " (before encryption)" : ""}, and the store's ETag of every part` };
  }
  // the file list, then the .md5 last: an archive with its .md5 in the store is a whole copy
  if (copy.listPath && fs.existsSync(copy.listPath) && !(await headOf(store, keys.list, opts.signal))) {
    await sendFile(store, keys.list, copy.listPath, common, opts);
  }
  const line = md5Line(copy.md5, copy.file);
  const md5Head = await headOf(store, keys.md5, opts.signal);
  if (!md5Head || Number(md5Head.get("content-length")) !== line.length) {
    if (md5Head) throw new StoreError("STORE_CHECKSUM_MISMATCH", `${s3.where(keys.md5)} is not the md5sum line of ${copy.file}; it was left as it is`);
    await upload(s3, new Blob([line]).stream() as unknown as ReadableStream<Uint8Array>, {
      key: keys.md5, headers: { ...common, "content-type": "text/plain" }, partSize: cfg.part_size, concurrency: 1, resumable: false, signal: opts.signal,
    });
  }
  return { ...result, ms: performance.now() - started };
}

export { S3Failure };
