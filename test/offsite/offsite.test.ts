/**
 * Offsite copies against a real S3 store (a throwaway Ceph cluster, or SHOOT_S3_ENDPOINT):
 * the client sends each verified copy; what the store holds restores to the source tree, also
 * through the age tool and GNU tar when encrypted; a locked copy cannot be deleted; each way a
 * store can fail is its own code beside the pull's, which it never changes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { code } from "../../src/core/common/codes.ts";
import { S3, S3Failure } from "../../src/core/offsite/s3.ts";
import { spawner } from "../../src/io/process.ts";
import { startCeph, startStore, storeTarget, type CephCluster, type S3Endpoint } from "../helpers/ceph.ts";
import { statusRecords } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";
import { gnuExtract, heldArchives, settleTimes, setup, type Setup } from "./helpers.ts";

let store: S3Endpoint & { stop(): Promise<void> };
const setups: Setup[] = [];
const track = (s: Setup) => (setups.push(s), s);
/** Directories made outside a setup (an age key's), removed at the end. */
const madeDirs: string[] = [];

beforeAll(async () => {
  store = await startStore();
}, 120_000);
afterAll(async () => {
  for (const s of setups) s.cleanup();
  for (const d of madeDirs) fs.rmSync(d, { recursive: true, force: true });
  await store?.stop();
});

const offsiteOf = (outcome: any) => outcome.sources[0].offsite as Array<{ store: string; code: number; message: string; key?: string }>;

describe("offsite copies", () => {
  test("the client sends its verified copy; list, verify --deep and restore from the store give back the source tree", async () => {
    const s = track(setup(store, [{ name: "main", bucket: store.bucket, part_size: "5MiB" }]));
    const { client, outcome } = await s.run();
    expect(client.code).toBe(0);
    expect(outcome.sources[0].code).toBe(code("FIRST_ARCHIVE"));
    expect(offsiteOf(outcome)).toEqual([expect.objectContaining({ store: "main", code: code("OFFSITE_SENT") })]);
    const sent = statusRecords(path.join(s.dest, "client.status")).filter((r) => r.code === code("OFFSITE_SENT"));
    expect(sent).toHaveLength(1);
    expect(sent[0]!.data).toMatchObject({ source: "web1", store: "main", code: code("OFFSITE_SENT") });

    // the file list and the .md5 beside it, when the backup host holds them
    const s3 = new S3(storeTarget(store));
    const key = offsiteOf(outcome)[0]!.key!;
    expect(await (await s3.send({ method: "GET", key: `${key}.md5` })).text()).toBe(fs.readFileSync(path.join(s.dest, "web1", `${heldArchives(s)[0]}.md5`), "utf8"));
    // the list is stored compressed: its bytes are sent as they are
    const listObject = Buffer.from(await (await s3.send({ method: "GET", key: `${key}.list` })).arrayBuffer());
    expect(listObject.equals(fs.readFileSync(path.join(s.dest, "web1", `${heldArchives(s)[0]}.list`)))).toBe(true);

    // a second push finds it there and sends nothing
    const again = await s.shoot(["offsite", "push"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("already there");

    const list = await s.shoot(["offsite", "list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(`${heldArchives(s)[0]}  `);
    expect(list.stdout).toContain("verified at upload");
    const verify = await s.shoot(["offsite", "verify", "--deep"]);
    expect({ code: verify.code, out: verify.stdout }).toEqual({ code: 0, out: expect.stringContaining("(read back whole)") });

    const to = path.join(s.root, "restored");
    const r = await s.shoot(["offsite", "restore", heldArchives(s)[0]!, "--to", to]);
    expect({ code: r.code, err: r.stderr }).toEqual({ code: 0, err: "" });
    expect(treeDifferences(s.src, path.join(to, s.src))).toEqual([]);

    // on a host with nothing but the binary and the credentials
    const bare = path.join(s.root, "bare");
    const prefix = /prefix = "([^"]+)"/.exec(fs.readFileSync(s.config, "utf8"))![1]!;
    const b = await s.shoot(["offsite", "restore", heldArchives(s)[0]!, "--to", bare, "--endpoint", store.endpoint, "--bucket", store.bucket, "--region", store.region, "--prefix", prefix]);
    // (--config is passed by the helper but not read with --endpoint: the keys come from the environment)
    expect(b.code).toBe(code("STORE_CREDENTIALS"));
    const env = { AWS_ACCESS_KEY_ID: store.accessKeyId, AWS_SECRET_ACCESS_KEY: store.secretAccessKey, SHOOT_CONFIG: "/nonexistent" };
    const { runShoot } = await import("../helpers/cli.ts");
    const b2 = await runShoot(["offsite", "restore", heldArchives(s)[0]!, "--to", bare, "--endpoint", store.endpoint, "--bucket", store.bucket, "--region", store.region, "--prefix", prefix], { env, timeoutMs: 120_000 });
    expect({ code: b2.code, err: b2.stderr }).toEqual({ code: 0, err: "" });
    expect(treeDifferences(s.src, path.join(bare, s.src))).toEqual([]);
  }, 180_000);

  test("an encrypted copy opens with the age command and GNU tar, and restores with --identity", async () => {
    const keyDir = fs.mkdtempSync("/tmp/shoot-age-");
    madeDirs.push(keyDir);
    const keyFile = path.join(keyDir, "key.txt");
    const kg = await spawner.run([requireTool("age-keygen"), "-o", keyFile], { timeoutMs: 10_000, captureStdout: true });
    expect(kg.exitCode).toBe(0);
    const recipient = /public key: (age1[0-9a-z]+)/.exec(fs.readFileSync(keyFile, "utf8"))![1]!;
    const s = track(setup(store, [{ name: "sealed", bucket: store.bucket, encrypt_to: [recipient], part_size: "5MiB" }]));
    const { outcome } = await s.run();
    const o = offsiteOf(outcome)[0]!;
    expect(o.code).toBe(code("OFFSITE_SENT"));
    expect(o.key).toEndWith(".tar.gz.age");
    const list = await new S3(storeTarget(store)).send({ method: "GET", key: o.key!.replace(/\.age$/, ".list.age") });
    expect(Buffer.from(await list.arrayBuffer()).subarray(0, 21).toString()).toBe("age-encryption.org/v1");

    // fetch the object as it is stored, and open it with the standard tools only
    const s3 = new S3(storeTarget(store));
    const sealed = path.join(s.root, "copy.age");
    fs.writeFileSync(sealed, new Uint8Array(await (await s3.send({ method: "GET", key: o.key! })).arrayBuffer()));
    expect(fs.readFileSync(sealed).subarray(0, 21).toString()).toBe("age-encryption.org/v1");
    const plain = path.join(s.root, "copy.tar.gz");
    const d = await spawner.run([requireTool("age"), "-d", "-i", keyFile, "-o", plain, sealed], { timeoutMs: 60_000 });
    expect(d.exitCode).toBe(0);
    expect(fs.readFileSync(plain)).toEqual(fs.readFileSync(path.join(s.dest, "web1", heldArchives(s)[0]!)));
    await gnuExtract(plain, path.join(s.root, "by-tar"));
    expect(treeDifferences(s.src, path.join(s.root, "by-tar", s.src))).toEqual([]);

    const to = path.join(s.root, "restored");
    const none = await s.shoot(["offsite", "restore", heldArchives(s)[0]!, "--to", to]);
    expect(none.code).toBe(code("STORE_FAILED"));
    expect(none.stderr).toContain("--identity");
    const r = await s.shoot(["offsite", "restore", heldArchives(s)[0]!, "--to", to, "--identity", keyFile]);
    expect({ code: r.code, err: r.stderr }).toEqual({ code: 0, err: "" });
    expect(treeDifferences(s.src, path.join(to, s.src))).toEqual([]);
    const deep = await s.shoot(["offsite", "verify", "--deep", "--identity", keyFile]);
    expect(deep.code).toBe(0);
  }, 180_000);

  test("prune keeps `keep` copies in the store, never the newest; --dry-run removes nothing", async () => {
    const s = track(setup(store, [{ name: "main", bucket: store.bucket, keep: 1 }]));
    await s.run();
    fs.writeFileSync(path.join(s.src, "etc/app.conf"), "answer = 44\n");
    settleTimes(s.src, new Date("2026-01-04T00:00:00Z"));
    await Bun.sleep(1100);
    await s.run();
    const [old, cur] = heldArchives(s);
    // the client keeps 7 here; the store keeps 1
    expect(cur).toBeDefined();
    const dry = await s.shoot(["offsite", "prune", "--dry-run"]);
    expect({ code: dry.code, out: dry.stdout }).toEqual({ code: 0, out: expect.stringContaining(`${old}: would be removed`) });
    expect((await s.shoot(["offsite", "list"])).stdout).toContain("2 copies");
    const prune = await s.shoot(["offsite", "prune"]);
    expect({ code: prune.code, out: prune.stdout }).toEqual({ code: 0, out: expect.stringContaining(`${old}: removed`) });
    const list = await s.shoot(["offsite", "list"]);
    expect(list.stdout).toContain("1 copy");
    expect(list.stdout).toContain(cur!);
    expect(list.stdout).not.toContain(old!);
    const s3 = new S3(storeTarget(store));
    const prefix = /prefix = "([^"]+)"/.exec(fs.readFileSync(s.config, "utf8"))![1]!;
    const left = await (await s3.send({ method: "GET", query: [["list-type", "2"], ["prefix", `${prefix}web1/${old}`]] })).text();
    expect(left).not.toContain("<Key>");
    // once one is left, prune leaves it
    const again = await s.shoot(["offsite", "prune"]);
    expect(again.stdout).toContain("0 to remove, 1 kept");
  }, 180_000);

  test("the store orders copies by when the backup host verified them, not by the names a server chose", async () => {
    const s = track(setup(store, [{ name: "main", bucket: store.bucket, keep: 1 }]));
    const dir = path.join(s.dest, "web1");
    fs.mkdirSync(dir, { recursive: true });
    // verified first, but named as if made in the year 9999
    const { writeArchive } = await import("../helpers/serverdir.ts");
    const { recordVerified } = await import("../../src/core/state/copies.ts");
    await writeArchive(dir, "web1-99990101-000000.tar", new TextEncoder().encode("old copy, far-future name\n"));
    recordVerified(dir, "web1-99990101-000000.tar", new Date("2026-01-01T00:00:00Z"));
    await writeArchive(dir, "web1-20260102-000000.tar", new TextEncoder().encode("the newest copy\n"));
    recordVerified(dir, "web1-20260102-000000.tar", new Date("2026-01-02T00:00:00Z"));
    const push = await s.shoot(["offsite", "push"]);
    expect(push.code).toBe(0);
    const prune = await s.shoot(["offsite", "prune"]);
    expect({ code: prune.code, out: prune.stdout }).toEqual({ code: 0, out: expect.stringContaining("web1-99990101-000000.tar: removed") });
    const list = await s.shoot(["offsite", "list"]);
    expect(list.stdout).toContain("web1-20260102-000000.tar");
    expect(list.stdout).not.toContain("web1-99990101-000000.tar");
  }, 120_000);

  test("a copy pushed with a lock cannot be deleted with the same credentials before its date; prune says until when", async () => {
    const s = track(setup(store, [{ name: "vault", bucket: store.lockBucket, lock: "compliance 1d", keep: 1 }]));
    const { outcome } = await s.run();
    const o = offsiteOf(outcome)[0]!;
    expect(o.code).toBe(code("OFFSITE_SENT"));
    const s3 = new S3(storeTarget(store, store.lockBucket));
    const head = await s3.send({ method: "HEAD", key: o.key! });
    expect(head.headers.get("x-amz-object-lock-mode")).toBe("COMPLIANCE");
    const until = Date.parse(head.headers.get("x-amz-object-lock-retain-until-date")!);
    expect(until).toBeGreaterThan(Date.now() + 23 * 3600_000);
    const version = head.headers.get("x-amz-version-id")!;
    expect(version).toBeTruthy();
    let refused: S3Failure | undefined;
    try {
      await s3.send({ method: "DELETE", key: o.key!, query: [["versionId", version]] });
    } catch (e) {
      refused = e as S3Failure;
    }
    expect(refused?.kind).toBe("locked");
    expect((await s3.send({ method: "HEAD", key: o.key!, query: [["versionId", version]] })).status).toBe(200);

    // a second copy: prune may remove the first by keep = 1, but the lock keeps it
    await Bun.sleep(1100);
    fs.writeFileSync(path.join(s.src, "etc/app.conf"), "answer = 43\n");
    settleTimes(s.src, new Date("2026-01-03T00:00:00Z"));
    const second = await s.run();
    expect(offsiteOf(second.outcome)[0]!.code).toBe(code("OFFSITE_SENT"));
    const prune = await s.shoot(["offsite", "prune"]);
    expect(prune.code).toBe(0);
    expect(prune.stdout).toContain(`${heldArchives(s)[0]}: kept, still locked until`);
    const list = await s.shoot(["offsite", "list"]);
    expect(list.stdout).toContain("2 copies");
    expect(list.stdout).toContain("locked (compliance) until");
  }, 180_000);

  test("a delete the store refuses because of a hold on the object is STORE_LOCKED", async () => {
    // no retention from shoot here: a legal hold set by someone else keeps the older copy
    const s = track(setup(store, [{ name: "held", bucket: store.lockBucket, keep: 1 }]));
    const first = await s.run();
    const key = offsiteOf(first.outcome)[0]!.key!;
    const s3 = new S3(storeTarget(store, store.lockBucket));
    const body = new TextEncoder().encode('<LegalHold xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>ON</Status></LegalHold>');
    await s3.send({ method: "PUT", key, query: [["legal-hold", ""]], body, headers: { "content-md5": new Bun.CryptoHasher("md5").update(body).digest("base64") } });
    fs.writeFileSync(path.join(s.src, "etc/app.conf"), "answer = 45\n");
    settleTimes(s.src, new Date("2026-01-05T00:00:00Z"));
    await Bun.sleep(1100);
    await s.run();
    const prune = await s.shoot(["offsite", "prune"]);
    expect(prune.code).toBe(code("STORE_LOCKED"));
    expect(prune.stdout).toContain("a legal hold is on it");
    expect((await s3.send({ method: "HEAD", key })).status).toBe(200);
    const off = new TextEncoder().encode('<LegalHold xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>OFF</Status></LegalHold>');
    await s3.send({ method: "PUT", key, query: [["legal-hold", ""]], body: off, headers: { "content-md5": new Bun.CryptoHasher("md5").update(off).digest("base64") } });
  }, 180_000);

  test("credentials refused, a missing bucket, an unreachable store: each its own code beside the pull's, which is unchanged (terminal, status --json, metrics, ping)", async () => {
    const pings: { path: string; body: string }[] = [];
    const hc = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: async (req) => (pings.push({ path: new URL(req.url).pathname, body: await req.text() }), new Response("OK")) });
    const metricsDir = fs.mkdtempSync("/tmp/shoot-metrics-");
    const monitor = `[monitor]\nmetrics_file = ${JSON.stringify(path.join(metricsDir, "shoot.prom"))}\nhealthcheck_url = "http://127.0.0.1:${hc.port}/ping/{role}"\n`;
    const s = track(setup(store, [
      { name: "bad-secret", bucket: store.bucket, secret: `${store.secretAccessKey}x` },
      { name: "no-bucket", bucket: `shoot-missing-${Date.now()}` },
      { name: "nobody-home", bucket: store.bucket, endpoint: "http://127.0.0.1:9", timeout: "5s" },
      { name: "good", bucket: store.bucket },
    ], undefined, "", monitor));
    const { client, outcome } = await s.run();
    // the pull's code and exit code are the pull's
    expect(client.code).toBe(0);
    expect(outcome.code).toBe(code("FIRST_ARCHIVE"));
    expect(outcome.sources[0].code).toBe(code("FIRST_ARCHIVE"));
    expect(offsiteOf(outcome).map((o) => [o.store, o.code])).toEqual([
      ["bad-secret", code("STORE_CREDENTIALS")],
      ["no-bucket", code("STORE_BUCKET_MISSING")],
      ["nobody-home", code("STORE_UNREACHABLE")],
      ["good", code("OFFSITE_SENT")],
    ]);
    expect(heldArchives(s)).toHaveLength(1);
    const failed = statusRecords(path.join(s.dest, "client.status")).filter((r) => r.code === code("OFFSITE_FAILED"));
    expect(failed.map((r) => r.data.code)).toEqual([code("STORE_CREDENTIALS"), code("STORE_BUCKET_MISSING"), code("STORE_UNREACHABLE")]);
    // the report names each store's code beside the pull's
    const text = await s.shoot(["client"]);
    expect(text.stdout).toMatch(/offsite bad-secret\s+FAILED 111 STORE_CREDENTIALS/);
    expect(text.stdout).toMatch(/offsite good\s+OK\s+77 OFFSITE_SENT/);
    expect(text.stdout).toContain("web1  OK     9 UNCHANGED");
    // status --json: the pull's state and each store's code side by side
    const status = await s.shoot(["status", "--json"]);
    const src = JSON.parse(status.stdout).roles.find((r: any) => r.role === "client").sources[0];
    expect(src.state).toBe("ok");
    expect(src.offsite.map((o: any) => [o.store, o.code])).toEqual([["bad-secret", 111], ["no-bucket", 112], ["nobody-home", 110], ["good", 77]]);
    // metrics and the ping
    const prom = fs.readFileSync(path.join(metricsDir, "shoot.prom"), "utf8");
    expect(prom).toContain('shoot_offsite_code{source="web1",store="bad-secret"} 111');
    expect(prom).toContain('shoot_offsite_success{source="web1",store="good"} 1');
    expect(prom).toContain('shoot_source_last_code{source="web1"} 9');
    const end = pings.filter((p) => !p.path.endsWith("/start")).at(-1)!;
    expect(end.path).toBe("/ping/client/111");
    expect(end.body).toContain("9 UNCHANGED");
    expect(end.body).toContain("offsite no-bucket (web1): 112 STORE_BUCKET_MISSING");
    hc.stop(true);
    fs.rmSync(metricsDir, { recursive: true, force: true });
    for (const [name, c] of [["bad-secret", "STORE_CREDENTIALS"], ["no-bucket", "STORE_BUCKET_MISSING"]] as const) {
      const p = await s.shoot(["offsite", "push", "--store", name]);
      expect(p.code).toBe(code(c));
    }
    const unknown = await s.shoot(["offsite", "list", "--store", "nope"]);
    expect(unknown.code).toBe(code("STORE_UNKNOWN"));
  }, 180_000);
});

describe("radosgw stopped in the middle of an upload", () => {
  let ceph: CephCluster;
  beforeAll(async () => {
    ceph = store.kind === "ceph" ? (store as CephCluster) : await startCeph();
  }, 120_000);
  afterAll(async () => {
    if (ceph !== store) await ceph?.stop();
  });

  test("the pull is unchanged, the store's code is STORE_UNREACHABLE, and the next push completes the copy", async () => {
    const big = new Uint8Array(48 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
    const s = track(setup(ceph, [{ name: "rgw", bucket: ceph.bucket, part_size: "5MiB", timeout: "5s" }], { "data/big.bin": big, "etc/x": "x\n" }));
    const server = await s.shoot(["server"]);
    expect(server.code).toBe(0);
    // stop radosgw as soon as the upload has begun: when the first part is in the store
    const s3 = new S3(storeTarget(ceph));
    const watcher = (async () => {
      for (let i = 0; i < 600; i++) {
        const xml = await (await s3.send({ method: "GET", query: [["uploads", ""]] })).text().catch(() => "");
        if (/<Upload>/.test(xml)) {
          await ceph.killRgw();
          return true;
        }
        await Bun.sleep(20);
      }
      return false;
    })();
    const client = await s.shoot(["client", "--json"]);
    expect(await watcher).toBe(true);
    const outcome = JSON.parse(client.stdout);
    expect(client.code).toBe(0);
    expect(outcome.sources[0].code).toBe(code("FIRST_ARCHIVE"));
    expect(outcome.sources[0].offsite[0].code).toBe(code("STORE_UNREACHABLE"));
    expect(heldArchives(s)).toHaveLength(1);
    await ceph.startRgw();
    const push = await s.shoot(["offsite", "push"]);
    expect({ code: push.code, out: push.stdout }).toEqual({ code: 0, out: expect.stringContaining("sent") });
    const verify = await s.shoot(["offsite", "verify", "--deep"]);
    expect(verify.code).toBe(0);
  }, 240_000);
});
