/**
 * Send one stream of bytes to one key: in a single PUT when it fits in one part, else as a
 * multipart upload. Memory stays at about part_size × (concurrency + 1) whatever the size:
 * parts are read in order into a fixed pool of buffers and sent `concurrency` at once.
 *
 * Every part carries its Content-MD5, which the store checks; the parts' MD5s also make the
 * list the completion names, so the store refuses to assemble anything but what was read
 * here. Before the upload is completed, `beforeComplete` checks the whole stream against the
 * checksum the server recorded: when it does not match the upload is aborted, so a wrong object
 * never stands under the key (an object appears only on completion). After completion the
 * object's size and multipart ETag are checked once more.
 *
 * Resuming: a multipart upload to the same key left by an earlier run (killed, store gone) is
 * taken up when `resumable`: each part already there whose size and MD5 match the part read
 * now is not sent again. Other uploads to the key are aborted.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import { S3, S3Failure, xmlBlocks, xmlEscape, xmlValue } from "./s3.ts";
import { UNSIGNED_PAYLOAD } from "./sigv4.ts";

export interface UploadSpec {
  key: string;
  /** Headers of the PUT or CreateMultipartUpload: metadata, lock, storage class. */
  headers: Record<string, string>;
  partSize: number;
  concurrency: number;
  /** Bytes per second at most. */
  bwlimit?: number;
  /** The same key always gets the same bytes (a copy as held): parts left by an earlier run may be kept. */
  resumable: boolean;
  /** After the last byte was read, before completing: a problem aborts the upload. */
  beforeComplete?: () => string | undefined;
  signal?: AbortSignal;
  /** Called after each part is stored (bytes so far), for progress and tests. */
  onPart?: (done: { part: number; bytes: number; reused: boolean }) => void;
}

export interface UploadResult {
  key: string;
  bytes: number;
  parts: number;
  /** Parts found stored by an earlier run and kept. */
  reusedParts: number;
  etag: string;
}

interface StoredPart {
  size: number;
  etag: string;
}

const md5Of = (b: Uint8Array) => createHash("md5").update(b);

/** What is read from a ReadableStream (the web type and node's differ in members not used here). */
interface Reader {
  read(): Promise<{ done: boolean; value?: Uint8Array }>;
  releaseLock(): void;
}

/** A multipart object's ETag: the MD5 of its parts' binary MD5s, a dash and their count. */
export function multipartEtag(partMd5s: readonly Buffer[]): string {
  return `${createHash("md5").update(Buffer.concat(partMd5s)).digest("hex")}-${partMd5s.length}`;
}

const unquote = (s: string | null | undefined) => (s ?? "").replace(/^"|"$/g, "");

/** Paces sending to `rate` bytes a second. */
class Pacer {
  private readonly start = performance.now();
  private sent = 0;
  constructor(private readonly rate?: number) {}
  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (!this.rate) return;
    const due = this.start + (this.sent / this.rate) * 1000;
    this.sent += n;
    const wait = due - performance.now();
    if (wait > 0) await Bun.sleep(wait);
    signal?.throwIfAborted();
  }
}

/** Where the bytes of an upload come from, read in order into the part buffers. */
export interface PartSource {
  /** Fill `buf` from the start; returns the bytes put in (less than its length only at the end). */
  fill(buf: Buffer): Promise<number>;
  close(): void;
}

/** A file read straight into the part buffers (no pieces in between to collect), each piece to `onRead`. */
export function fileSource(file: string, onRead?: (piece: Uint8Array) => void): PartSource {
  const fd = fs.openSync(file, "r");
  return {
    async fill(buf) {
      let n = 0;
      while (n < buf.length) {
        const got = await new Promise<number>((resolve, reject) => fs.read(fd, buf, n, buf.length - n, null, (e, r) => (e ? reject(e) : resolve(r))));
        if (got === 0) break;
        onRead?.(buf.subarray(n, n + got));
        n += got;
      }
      return n;
    },
    close: () => fs.closeSync(fd),
  };
}

/** A stream cut into the part buffers. */
export function streamSource(stream: ReadableStream<Uint8Array>): PartSource {
  const reader = stream.getReader() as unknown as Reader;
  let rest: Uint8Array | undefined;
  return {
    async fill(buf) {
      let n = 0;
      while (n < buf.length) {
        let chunk = rest;
        rest = undefined;
        if (!chunk) {
          const r = await reader.read();
          if (r.done || !r.value) break;
          chunk = r.value;
        }
        const take = Math.min(chunk.length, buf.length - n);
        buf.set(chunk.subarray(0, take), n);
        n += take;
        if (take < chunk.length) rest = chunk.subarray(take);
      }
      return n;
    },
    close: () => reader.releaseLock(),
  };
}

export async function listUploads(s3: S3, prefix: string): Promise<{ key: string; uploadId: string; initiated: string }[]> {
  const out: { key: string; uploadId: string; initiated: string }[] = [];
  let keyMarker = "";
  let idMarker = "";
  for (;;) {
    const q: [string, string][] = [["uploads", ""], ["prefix", prefix]];
    if (keyMarker) q.push(["key-marker", keyMarker], ["upload-id-marker", idMarker]);
    const xml = await (await s3.send({ method: "GET", query: q })).text();
    for (const u of xmlBlocks(xml, "Upload")) {
      out.push({ key: xmlValue(u, "Key") ?? "", uploadId: xmlValue(u, "UploadId") ?? "", initiated: xmlValue(u, "Initiated") ?? "" });
    }
    if (xmlValue(xml, "IsTruncated") !== "true") return out;
    keyMarker = xmlValue(xml, "NextKeyMarker") ?? "";
    idMarker = xmlValue(xml, "NextUploadIdMarker") ?? "";
    if (!keyMarker) return out;
  }
}

async function listParts(s3: S3, key: string, uploadId: string): Promise<Map<number, StoredPart>> {
  const parts = new Map<number, StoredPart>();
  let marker = "0";
  for (;;) {
    const xml = await (await s3.send({ method: "GET", key, query: [["uploadId", uploadId], ["part-number-marker", marker]] })).text();
    for (const p of xmlBlocks(xml, "Part")) {
      parts.set(Number(xmlValue(p, "PartNumber")), { size: Number(xmlValue(p, "Size")), etag: unquote(xmlValue(p, "ETag")) });
    }
    const next = xmlValue(xml, "NextPartNumberMarker");
    if (xmlValue(xml, "IsTruncated") !== "true" || !next || next === marker) return parts;
    marker = next;
  }
}

/** A multipart upload no run has touched for this long was abandoned (its copy was rotated away, or the store it went to changed). */
export const ABANDONED_MS = 86_400_000;

/** Abort the multipart uploads under `prefix` begun longer than ABANDONED_MS ago; returns what was aborted. */
export async function abortAbandoned(s3: S3, prefix: string, now: Date): Promise<{ key: string; initiated: string }[]> {
  const out: { key: string; initiated: string }[] = [];
  for (const u of await listUploads(s3, prefix)) {
    if (now.getTime() - Date.parse(u.initiated) < ABANDONED_MS) continue;
    await abortUpload(s3, u.key, u.uploadId);
    out.push(u);
  }
  return out;
}

export async function abortUpload(s3: S3, key: string, uploadId: string): Promise<void> {
  try {
    await s3.send({ method: "DELETE", key, query: [["uploadId", uploadId]] });
  } catch (e) {
    if (!(e instanceof S3Failure && e.kind === "missing")) throw e;
  }
}

/** The upload to continue (newest first; the others aborted), or undefined to start afresh. */
async function takeUp(s3: S3, spec: UploadSpec): Promise<{ uploadId: string; parts: Map<number, StoredPart> } | undefined> {
  const mine = (await listUploads(s3, spec.key)).filter((u) => u.key === spec.key).sort((a, b) => (a.initiated < b.initiated ? 1 : -1));
  let chosen: { uploadId: string; parts: Map<number, StoredPart> } | undefined;
  for (const u of mine) {
    if (!chosen && spec.resumable) {
      const parts = await listParts(s3, spec.key, u.uploadId);
      // parts of another size cannot line up with the parts read now
      const first = parts.get(1);
      if (!first || first.size === spec.partSize || parts.size === 1) {
        chosen = { uploadId: u.uploadId, parts };
        continue;
      }
    }
    await abortUpload(s3, spec.key, u.uploadId);
  }
  return chosen;
}

async function putWhole(s3: S3, spec: UploadSpec, body: Uint8Array): Promise<UploadResult> {
  const md5 = md5Of(body).digest();
  await new Pacer(spec.bwlimit).take(body.length, spec.signal);
  const problem = spec.beforeComplete?.();
  if (problem) throw new S3Failure("checksum", `${s3.where(spec.key)} was not stored: ${problem}`);
  const res = await s3.send({ method: "PUT", key: spec.key, body, headers: { ...spec.headers, "content-md5": md5.toString("base64") } }, { signal: spec.signal });
  await res.arrayBuffer();
  const etag = unquote(res.headers.get("etag"));
  if (etag && etag !== md5.toString("hex")) throw new S3Failure("checksum", `${s3.where(spec.key)}: the store gives the ETag ${etag}, the bytes sent have the MD5 ${md5.toString("hex")}`);
  spec.onPart?.({ part: 1, bytes: body.length, reused: false });
  return { key: spec.key, bytes: body.length, parts: 1, reusedParts: 0, etag: md5.toString("hex") };
}

/** Send the bytes of `source` (a stream, or a PartSource) to `spec.key`; resolves once the object is in place and checked. */
export async function upload(s3: S3, input: ReadableStream<Uint8Array> | PartSource, spec: UploadSpec): Promise<UploadResult> {
  const source = "fill" in input ? input : streamSource(input);
  try {
    const pool = Array.from({ length: spec.concurrency + 1 }, () => Buffer.allocUnsafe(spec.partSize));
    const firstLen = await source.fill(pool[0]!);
    const more = firstLen === spec.partSize ? await source.fill(pool[1]!) : 0;
    if (more === 0) return await putWhole(s3, spec, pool[0]!.subarray(0, firstLen));
    return await multipart(s3, source, pool, [firstLen, more], spec);
  } finally {
    source.close();
  }
}

async function multipart(s3: S3, source: PartSource, pool: Buffer[], firstLens: number[], spec: UploadSpec): Promise<UploadResult> {
  const resumed = await takeUp(s3, spec);
  let uploadId = resumed?.uploadId;
  if (!uploadId) {
    const xml = await (await s3.send({ method: "POST", key: spec.key, query: [["uploads", ""]], headers: spec.headers }, { signal: spec.signal })).text();
    uploadId = xmlValue(xml, "UploadId");
    if (!uploadId) throw new S3Failure("other", `${s3.where(spec.key)}: the store started a multipart upload without an UploadId`);
  }
  const stored = resumed?.parts ?? new Map<number, StoredPart>();
  const pacer = new Pacer(spec.bwlimit);
  const md5s: Buffer[] = [];
  const free = pool.slice(2);
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let bytes = 0;
  let reused = 0;
  let waiters: (() => void)[] = [];
  const release = (buf: Buffer) => {
    free.push(buf);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const send = (part: number, buf: Buffer, len: number) => {
    const body = buf.subarray(0, len);
    const digest = md5Of(body).digest();
    md5s[part - 1] = digest;
    bytes += len;
    const have = stored.get(part);
    if (have && have.size === len && have.etag === digest.toString("hex")) {
      reused++;
      spec.onPart?.({ part, bytes, reused: true });
      release(buf);
      return;
    }
    const p = (async () => {
      try {
        await pacer.take(len, spec.signal);
        const res = await s3.send({
          method: "PUT", key: spec.key, query: [["partNumber", String(part)], ["uploadId", uploadId!]], body,
          bodySha256: UNSIGNED_PAYLOAD, headers: { "content-md5": digest.toString("base64") },
        }, { signal: spec.signal });
        // an answer not read keeps its request, and so the part's bytes, alive
        await res.arrayBuffer();
        const etag = unquote(res.headers.get("etag"));
        if (etag && etag !== digest.toString("hex")) throw new S3Failure("checksum", `${s3.where(spec.key)} part ${part}: the store gives the ETag ${etag}, the part has the MD5 ${digest.toString("hex")}`);
        spec.onPart?.({ part, bytes, reused: false });
      } catch (e) {
        failure ??= e;
      } finally {
        release(buf);
      }
    })();
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };

  send(1, pool[0]!, firstLens[0]!);
  let part = 2;
  let len = firstLens[1]!;
  let buf = pool[1]!;
  while (len > 0 && failure === undefined) {
    send(part, buf, len);
    if (len < spec.partSize) break;
    while (free.length === 0 && failure === undefined) await new Promise<void>((r) => waiters.push(r));
    if (failure !== undefined) break;
    buf = free.pop()!;
    len = await source.fill(buf);
    part++;
    if (len === 0) release(buf);
  }
  await Promise.all([...inFlight]);
  if (failure !== undefined) throw failure; // the upload stays for the next run to take up
  const problem = spec.beforeComplete?.();
  if (problem) {
    await abortUpload(s3, spec.key, uploadId).catch(() => undefined);
    throw new S3Failure("checksum", `${s3.where(spec.key)} was not completed and its upload was aborted: ${problem}`);
  }
  const body = new TextEncoder().encode(`<CompleteMultipartUpload>${md5s.map((d, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>"${xmlEscape(d.toString("hex"))}"</ETag></Part>`).join("")}</CompleteMultipartUpload>`);
  const res = await s3.send({ method: "POST", key: spec.key, query: [["uploadId", uploadId]], body }, { signal: spec.signal });
  // a completion can fail inside a 200 answer
  const text = await res.text();
  if (/<Error>/.test(text)) {
    const c = xmlValue(text, "Code");
    throw new S3Failure(c === "InvalidPart" || c === "BadDigest" ? "checksum" : "other", `${s3.where(spec.key)}: completing the upload failed: ${c ?? "error"}: ${xmlValue(text, "Message") ?? ""}`);
  }
  const want = multipartEtag(md5s);
  const head = await s3.send({ method: "HEAD", key: spec.key }, { signal: spec.signal });
  const size = Number(head.headers.get("content-length"));
  const etag = unquote(head.headers.get("etag"));
  if (size !== bytes || etag !== want) {
    throw new S3Failure("checksum", `${s3.where(spec.key)} after upload: ${size} bytes with the ETag ${etag}, expected ${bytes} bytes with ${want}`);
  }
  return { key: spec.key, bytes, parts: md5s.length, reusedParts: reused, etag };
}
