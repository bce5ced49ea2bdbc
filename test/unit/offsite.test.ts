/** The pure parts of offsite copies: configuration, names, failure kinds, ETags, credentials, retention. */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { ConfigError, parseConfig } from "../../src/core/common/config.ts";
import { classify, xmlBlocks, xmlUnescape, xmlValue } from "../../src/core/offsite/s3.ts";
import { archiveOfKey, failureCode, keysOf, parseCredentials, readCredentials, storeTakes } from "../../src/core/offsite/store.ts";
import { S3Failure } from "../../src/core/offsite/s3.ts";
import { multipartEtag } from "../../src/core/offsite/upload.ts";
import { keepCount } from "../../src/core/offsite/retention.ts";
import { objectHeaders, judgeStored } from "../../src/core/offsite/push.ts";

const CLIENT = `[client]\ndest_dir = "/srv/shoot"\n[[client.source]]\nname = "web1"\nremote = "/var/backups/shoot"\n`;
const store = (extra = "") => `${CLIENT}[[offsite]]\nname = "aws"\nendpoint = "https://s3.example.com"\nbucket = "backups"\n${extra}`;

describe("[[offsite]] configuration", () => {
  test("defaults", () => {
    const o = parseConfig(store(), "x.toml").offsite![0]!;
    expect(o).toMatchObject({ name: "aws", region: "us-east-1", prefix: "", part_size: 8 * 1024 * 1024, concurrency: 4, timeout: 120_000 });
    expect(o.lock).toBeUndefined();
    expect(o.encrypt_to).toBeUndefined();
  });
  test("lock, encryption, sources, keep", () => {
    const o = parseConfig(store('lock = "compliance 30d"\nencrypt_to = ["age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"]\nsources = ["web1"]\nkeep = 3\nprefix = "shoot/"\nbwlimit = "10MiB"'), "x.toml").offsite![0]!;
    expect(o.lock).toEqual({ mode: "compliance", ms: 30 * 86_400_000 });
    expect(o.encrypt_to).toHaveLength(1);
    expect(o).toMatchObject({ sources: ["web1"], keep: 3, prefix: "shoot/", bwlimit: 10 * 1024 * 1024 });
  });
  test.each([
    ['lock = "forever"', "lock"],
    ['lock = "compliance 1h"', "lock"],
    ['lock = "legal 30d"', "lock"],
    ['encrypt_to = ["ssh-ed25519 AAAA"]', "encrypt_to"],
    ['part_size = "1MiB"', "part_size"],
    ['prefix = "/abs/"', "prefix"],
    ['prefix = "a/../b/"', "prefix"],
    ['sources = ["nope"]', "sources"],
    ['endpoint = "ftp://x"', "endpoint"],
    ['endpoint = "https://s3.example.com/path"', "endpoint"],
    ['bucket = "Bad_Bucket"', "bucket"],
    ["concurrency = 0", "concurrency"],
    ['colour = "red"', "colour"],
  ])("%s is refused naming %s", (line, key) => {
    const text = line.startsWith("bucket") || line.startsWith("endpoint")
      ? `${CLIENT}[[offsite]]\nname = "aws"\n${line}\n${line.startsWith("bucket") ? 'endpoint = "https://s3.example.com"' : 'bucket = "backups"'}\n`
      : store(line);
    let err: unknown;
    try {
      parseConfig(text, "x.toml");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toContain(key);
  });
  test("two stores may not share a name", () => {
    expect(() => parseConfig(`${store()}\n[[offsite]]\nname = "aws"\nendpoint = "https://b.example.com"\nbucket = "other"\n`, "x.toml")).toThrow(/duplicate store name/);
  });
});

describe("names in the store", () => {
  const cfg = parseConfig(store('prefix = "p/"'), "x.toml").offsite![0]!;
  test("keys of a copy, plain and encrypted", () => {
    expect(keysOf(cfg, "web1", "web1-20260102-030405.tar.gz", false)).toEqual({ archive: "p/web1/web1-20260102-030405.tar.gz", md5: "p/web1/web1-20260102-030405.tar.gz.md5", list: "p/web1/web1-20260102-030405.tar.gz.list" });
    expect(keysOf(cfg, "web1", "web1-20260102-030405.tar.gz", true)).toEqual({ archive: "p/web1/web1-20260102-030405.tar.gz.age", md5: "p/web1/web1-20260102-030405.tar.gz.md5", list: "p/web1/web1-20260102-030405.tar.gz.list.age" });
  });
  test.each([
    ["web1-20260102-030405.tar.gz", { file: "web1-20260102-030405.tar.gz", encrypted: false }],
    ["web1-20260102-030405.tar.zst.age", { file: "web1-20260102-030405.tar.zst", encrypted: true }],
    ["web1-20260102-030405.tar.gz.md5", undefined],
    ["web1-20260102-030405.tar.gz.list.age", undefined],
    ["../etc/passwd", undefined],
  ])("%s", (name, want) => {
    expect(archiveOfKey(name)).toEqual(want);
  });
  test("sources a store takes", () => {
    expect(storeTakes(cfg, "web1")).toBe(true);
    expect(storeTakes({ ...cfg, sources: ["db1"] }, "web1")).toBe(false);
  });
});

describe("S3 answers", () => {
  test.each([
    [404, "NoSuchBucket", "PUT", "bucket"],
    [403, "SignatureDoesNotMatch", "PUT", "credentials"],
    [403, "InvalidAccessKeyId", "GET", "credentials"],
    [403, undefined, "HEAD", "credentials"],
    [403, "AccessDenied", "DELETE", "locked"],
    [400, "BadDigest", "PUT", "checksum"],
    [400, "InvalidPart", "POST", "checksum"],
    [404, "NoSuchKey", "GET", "missing"],
    [404, undefined, "HEAD", "missing"],
    [500, "InternalError", "PUT", "other"],
  ] as const)("%i %s on %s is %s", (status, c, method, kind) => {
    expect(classify(status, c, method)).toBe(kind);
  });
  test("failure kinds map to the named codes", () => {
    expect(failureCode(new S3Failure("unreachable", "x"))).toBe("STORE_UNREACHABLE");
    expect(failureCode(new S3Failure("credentials", "x"))).toBe("STORE_CREDENTIALS");
    expect(failureCode(new S3Failure("bucket", "x"))).toBe("STORE_BUCKET_MISSING");
    expect(failureCode(new S3Failure("checksum", "x"))).toBe("STORE_CHECKSUM_MISMATCH");
    expect(failureCode(new S3Failure("locked", "x"))).toBe("STORE_LOCKED");
    expect(failureCode(new Error("x"))).toBe("STORE_FAILED");
  });
  test("XML values and blocks, entities decoded", () => {
    const xml = "<R><Upload><Key>a&amp;b</Key></Upload><Upload><Key>c&#38;d</Key></Upload><Code>X</Code></R>";
    expect(xmlBlocks(xml, "Upload").map((b) => xmlValue(b, "Key"))).toEqual(["a&b", "c&d"]);
    expect(xmlValue(xml, "Code")).toBe("X");
    expect(xmlUnescape("&lt;&gt;&quot;&apos;&#x41;")).toBe("<>\"'A");
  });
  test("a multipart ETag is the MD5 of the parts' MD5s and their count", () => {
    const parts = [Buffer.from("a"), Buffer.from("b")].map((b) => createHash("md5").update(b).digest());
    expect(multipartEtag(parts)).toBe(`${createHash("md5").update(Buffer.concat(parts)).digest("hex")}-2`);
  });
});

describe("credentials", () => {
  test("the AWS credentials file's lines", () => {
    expect(parseCredentials("[default]\naws_access_key_id = AK\naws_secret_access_key=SK \n# c\naws_session_token = T\n")).toEqual({ accessKeyId: "AK", secretAccessKey: "SK", sessionToken: "T" });
  });
  test("the environment when there is no file; none at all is STORE_CREDENTIALS", () => {
    const cfg = parseConfig(store(), "x.toml").offsite![0]!;
    expect(readCredentials(cfg, { AWS_ACCESS_KEY_ID: "A", AWS_SECRET_ACCESS_KEY: "S" }).creds).toEqual({ accessKeyId: "A", secretAccessKey: "S", sessionToken: undefined });
    expect(() => readCredentials(cfg, {})).toThrow(/no credentials/);
    expect(() => readCredentials({ ...cfg, credentials_file: "/nonexistent/creds" }, {})).toThrow(/cannot be read/);
  });
});

describe("objects sent", () => {
  const cfg = parseConfig(store('lock = "governance 2d"\nstorage_class = "STANDARD_IA"'), "x.toml").offsite![0]!;
  test("lock and storage class headers", () => {
    const h = objectHeaders({ cfg, s3: undefined as never }, new Date("2026-01-01T00:00:00.500Z"));
    expect(h).toMatchObject({ "x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": "2026-01-03T00:00:00Z", "x-amz-storage-class": "STANDARD_IA" });
  });
  test("an object already there is this copy only when its recorded checksums are the copy's", () => {
    const copy = { source: "web1", file: "f", path: "/x", size: 10, md5: "a".repeat(32), sha256: "b".repeat(64) };
    const h = (o: Record<string, string>) => new Headers(Object.fromEntries(Object.entries(o).map(([k, v]) => [`x-amz-meta-shoot-${k}`, v])));
    expect(judgeStored(h({ md5: "a".repeat(32), sha256: "b".repeat(64), size: "10" }), copy)).toBeUndefined();
    expect(judgeStored(h({ md5: "c".repeat(32) }), copy)).toContain("MD5");
    expect(judgeStored(h({ md5: "a".repeat(32), sha256: "d".repeat(64) }), copy)).toContain("SHA-256");
    expect(judgeStored(h({ md5: "a".repeat(32), size: "11" }), copy)).toContain("bytes");
    expect(judgeStored(new Headers(), copy)).toContain("no checksum");
  });
});

test("retention in the store: keep a count, never the newest", () => {
  const names = ["a", "b", "c", "d"];
  expect(keepCount(2).removable(names, new Date())).toEqual(["a", "b"]);
  expect(keepCount(0).removable(names, new Date())).toEqual(["a", "b", "c"]);
  expect(keepCount(9).removable(names, new Date())).toEqual([]);
});
