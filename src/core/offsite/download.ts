/**
 * Reading from a store with Bun's own S3 client: listing a folder and streaming an object
 * back (restore, verify --deep), decrypted on the way when it is an age file. Its errors are
 * told apart as the signed calls' are (s3.ts).
 */
import { Decrypter } from "age-encryption";
import { S3Failure, classify } from "./s3.ts";
import type { Store } from "./store.ts";

export interface ListedObject {
  key: string;
  size: number;
  lastModified?: string;
}

function clientOf(store: Store): Bun.S3Client {
  const t = store.s3.target;
  return new Bun.S3Client({
    accessKeyId: t.creds.accessKeyId, secretAccessKey: t.creds.secretAccessKey, sessionToken: t.creds.sessionToken,
    endpoint: t.endpoint, bucket: t.bucket, region: t.region, virtualHostedStyle: false,
  });
}

/** An error from Bun's S3 client as an S3Failure of the right kind. */
export function fromBun(e: unknown, what: string): S3Failure {
  if (e instanceof S3Failure) return e;
  const err = e as { code?: string; name?: string; message?: string };
  const c = err?.code;
  if (err?.name === "S3Error" && c) {
    const status = c === "NoSuchKey" ? 404 : 403;
    return new S3Failure(classify(status, c, "GET"), `${what}: ${c}: ${err.message ?? ""}`, undefined, c);
  }
  if (c && /^(ECONNREFUSED|ConnectionRefused|ConnectionClosed|ENOTFOUND|ETIMEDOUT|ECONNRESET|FailedToOpenSocket|UnableToConnect)$/.test(c)) {
    return new S3Failure("unreachable", `${what}: cannot be reached: ${c}`);
  }
  return new S3Failure("other", `${what}: ${err?.message ?? String(e)}`);
}

/** Every object under `prefix`, in key order. */
export async function listObjects(store: Store, prefix: string): Promise<ListedObject[]> {
  const client = clientOf(store);
  const out: ListedObject[] = [];
  let token: string | undefined;
  try {
    do {
      const r = await client.list({ prefix, continuationToken: token });
      for (const c of r.contents ?? []) out.push({ key: c.key, size: c.size ?? 0, lastModified: c.lastModified });
      token = r.isTruncated ? r.nextContinuationToken : undefined;
    } while (token);
  } catch (e) {
    throw fromBun(e, `listing ${store.s3.where(prefix)}`);
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The object's bytes as a stream; decrypted with `identities` when given. */
export async function objectStream(store: Store, key: string, identities?: readonly string[]): Promise<ReadableStream<Uint8Array>> {
  const where = store.s3.where(key);
  let raw: ReadableStream<Uint8Array>;
  try {
    const file = clientOf(store).file(key);
    // stat first: a missing object or refused credentials are told before any bytes are expected
    await file.stat();
    raw = file.stream() as unknown as ReadableStream<Uint8Array>;
  } catch (e) {
    throw fromBun(e, `reading ${where}`);
  }
  if (!identities?.length) return raw;
  const d = new Decrypter();
  for (const id of identities) d.addIdentity(id);
  return (await d.decrypt(raw)) as unknown as ReadableStream<Uint8Array>;
}

/** The whole of a small object as text. */
export async function objectText(store: Store, key: string, max = 64 * 1024): Promise<string> {
  const res = await store.s3.send({ method: "GET", key, headers: { range: `bytes=0-${max - 1}` } });
  return res.text();
}
