/**
 * The S3 store the offsite suite runs against (a throwaway Ceph cluster, or the store given in
 * SHOOT_S3_ENDPOINT), and shoot's own request signer against it: what it signs is accepted,
 * what a wrong secret signs is refused, a missing bucket is told apart.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { S3, S3Failure, xmlValue } from "../../src/core/offsite/s3.ts";
import { abortAbandoned, listUploads } from "../../src/core/offsite/upload.ts";
import { startStore, storeTarget, type S3Endpoint } from "../helpers/ceph.ts";

let store: S3Endpoint & { stop(): Promise<void> };

beforeAll(async () => {
  store = await startStore();
}, 120_000);
afterAll(async () => {
  await store?.stop();
});

async function failure(p: Promise<unknown>): Promise<S3Failure> {
  try {
    await p;
  } catch (e) {
    if (e instanceof S3Failure) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}

describe("S3 store", () => {
  test("signed PUT, GET, HEAD and DELETE of a key with spaces and odd characters", async () => {
    const s3 = new S3(storeTarget(store));
    const key = `store-test/${Date.now()}/a b+c=d~(e).txt`;
    const body = new TextEncoder().encode("offsite bytes\n");
    const put = await s3.send({ method: "PUT", key, body, headers: { "content-md5": new Bun.CryptoHasher("md5").update(body).digest("base64") } });
    expect(put.headers.get("etag")).toBe(`"${new Bun.CryptoHasher("md5").update(body).digest("hex")}"`);
    expect(await (await s3.send({ method: "GET", key })).text()).toBe("offsite bytes\n");
    const head = await s3.send({ method: "HEAD", key });
    expect(head.headers.get("content-length")).toBe(String(body.length));
    await s3.send({ method: "DELETE", key });
    expect((await s3.send({ method: "HEAD", key }, { allow404: true })).status).toBe(404);
  });

  test("a body that does not match its Content-MD5 is refused as a checksum failure", async () => {
    const s3 = new S3(storeTarget(store));
    const f = await failure(s3.send({ method: "PUT", key: `store-test/bad-md5`, body: new TextEncoder().encode("x"), headers: { "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==" } }));
    expect(f.kind).toBe("checksum");
  });

  test("a wrong secret is refused as credentials", async () => {
    const s3 = new S3({ ...storeTarget(store), creds: { accessKeyId: store.accessKeyId, secretAccessKey: `${store.secretAccessKey}x` } });
    expect((await failure(s3.checkBucket())).kind).toBe("credentials");
    expect((await failure(s3.send({ method: "PUT", key: "store-test/x", body: new Uint8Array(1) }))).kind).toBe("credentials");
  });

  test("an unknown access key is refused as credentials", async () => {
    const s3 = new S3({ ...storeTarget(store), creds: { accessKeyId: "NOSUCHKEY0000000", secretAccessKey: store.secretAccessKey } });
    expect((await failure(s3.send({ method: "PUT", key: "store-test/x", body: new Uint8Array(1) }))).kind).toBe("credentials");
  });

  test("a missing bucket is told apart", async () => {
    const s3 = new S3(storeTarget(store, `shoot-missing-${Date.now()}`));
    expect((await failure(s3.checkBucket())).kind).toBe("bucket");
    const put = await failure(s3.send({ method: "PUT", key: "x", body: new Uint8Array(1) }));
    expect(put.kind).toBe("bucket");
    expect(put.s3Code).toBe("NoSuchBucket");
  });

  test("multipart uploads begun more than a day ago are aborted, younger ones stay", async () => {
    const s3 = new S3(storeTarget(store));
    const prefix = `abandoned-${Date.now()}/`;
    const begin = async (key: string) => xmlValue(await (await s3.send({ method: "POST", key, query: [["uploads", ""]] })).text(), "UploadId")!;
    await begin(`${prefix}web1/a.tar.gz`);
    await begin(`${prefix}web1/b.tar.gz`);
    expect(await abortAbandoned(s3, prefix, new Date())).toEqual([]);
    expect(await listUploads(s3, prefix)).toHaveLength(2);
    const aborted = await abortAbandoned(s3, prefix, new Date(Date.now() + 2 * 86_400_000));
    expect(aborted.map((u) => u.key).sort()).toEqual([`${prefix}web1/a.tar.gz`, `${prefix}web1/b.tar.gz`]);
    expect(await listUploads(s3, prefix)).toEqual([]);
  });

  test("a port nothing listens on is unreachable", async () => {
    const s3 = new S3({ ...storeTarget(store), endpoint: "http://127.0.0.1:1", timeoutMs: 5000 });
    expect((await failure(s3.checkBucket())).kind).toBe("unreachable");
  });
});
