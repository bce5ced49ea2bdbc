/**
 * A 1 GiB copy pushed while `shoot offsite push` is killed with SIGKILL again and again, at
 * random moments of its upload: while it reads and hashes, between parts, in the middle of a
 * part. After every kill the final key holds nothing (or, once done, the right object); the
 * next run takes up the parts already stored and completes the copy, which is then read back
 * and extracted with GNU tar. Sized for CI: the copy is a real tar of incompressible files,
 * parts of 5 MiB (the least S3 allows: with the most parts the upload outlasts every kill, where
 * with 8 MiB it once ended before the 20th); SHOOT_OFFSITE_KILLS changes the number of kills
 * (at least 20).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { S3 } from "../../src/core/offsite/s3.ts";
import { CLIENT_STATUS, StatusWriter } from "../../src/core/state/status.ts";
import { spawner } from "../../src/io/process.ts";
import { shootArgv } from "../helpers/cli.ts";
import { startStore, storeTarget, type S3Endpoint } from "../helpers/ceph.ts";
import { tempDir } from "../helpers/fixture.ts";
import { seeded } from "../helpers/random.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";
import { settleTimes } from "./helpers.ts";

const GiB = 1024 ** 3;
const KILLS = Math.max(20, Number(process.env.SHOOT_OFFSITE_KILLS ?? 22));
const PART = 5 * 1024 * 1024;
const seed = Number(process.env.SHOOT_FAULT_SEED ?? Date.now() % 2 ** 31);
const rand = seeded(seed);

let store: S3Endpoint & { stop(): Promise<void> };
let root: string;

beforeAll(async () => {
  store = await startStore();
  root = tempDir("shoot-offsite-kill-");
}, 120_000);
afterAll(async () => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
  await store?.stop();
});

/** Four files of 256 MiB that do not compress, as one tar made by GNU tar: the held copy. */
async function makeCopy(): Promise<{ src: string; dest: string; file: string; md5: string }> {
  const src = path.join(root, "src");
  fs.mkdirSync(path.join(src, "data"), { recursive: true });
  const block = new Uint8Array(1024 * 1024);
  for (let f = 0; f < 4; f++) {
    const fd = fs.openSync(path.join(src, "data", `part-${f}.bin`), "w");
    for (let i = 0; i < 256; i++) {
      for (let o = 0; o < block.length; o += 65536) crypto.getRandomValues(block.subarray(o, o + 65536));
      fs.writeSync(fd, block);
    }
    fs.closeSync(fd);
  }
  fs.writeFileSync(path.join(src, "data", "README"), "a gibibyte of noise\n");
  settleTimes(src);
  const dest = path.join(root, "dest");
  fs.mkdirSync(path.join(dest, "web1"), { recursive: true });
  const file = "web1-20260102-030405.tar";
  const tar = await spawner.run([requireTool("tar"), "-cf", path.join(dest, "web1", file), "-C", src, "data"], { timeoutMs: 300_000 });
  expect(tar.exitCode).toBe(0);
  const sum = await spawner.run([requireTool("md5sum"), file], { cwd: path.join(dest, "web1"), captureStdout: true, timeoutMs: 120_000 });
  fs.writeFileSync(path.join(dest, "web1", `${file}.md5`), sum.stdout);
  const size = fs.statSync(path.join(dest, "web1", file)).size;
  expect(size).toBeGreaterThan(GiB);
  // the SHA-256 the server recorded, as a pull leaves it in client.status
  const sha = await spawner.run([requireTool("sha256sum"), file], { cwd: path.join(dest, "web1"), captureStdout: true, timeoutMs: 120_000 });
  const w = new StatusWriter(path.join(dest, CLIENT_STATUS), "client", "test-run", { now: () => new Date() });
  w.write("PULLED", `web1: pulled and verified ${file}`, { step: "pull", archive: { file, size, md5: sum.stdout.slice(0, 32), sha256: sha.stdout.slice(0, 64) } });
  w.close();
  return { src, dest, file, md5: sum.stdout.slice(0, 32) };
}

test(`a 1 GiB copy survives ${KILLS} SIGKILLs of its upload; the next run completes it, and no wrong object ever stands under its key`, async () => {
  const { src, dest, file, md5 } = await makeCopy();
  const prefix = `kill${Date.now()}/`;
  const creds = path.join(root, "creds");
  fs.writeFileSync(creds, `aws_access_key_id = ${store.accessKeyId}\naws_secret_access_key = ${store.secretAccessKey}\n`, { mode: 0o600 });
  const config = path.join(root, "shoot.toml");
  fs.writeFileSync(config, [
    "[client]", `dest_dir = ${JSON.stringify(dest)}`, "[[client.source]]", 'name = "web1"', 'remote = "/nonexistent"',
    "[[offsite]]", 'name = "s3"', `endpoint = ${JSON.stringify(store.endpoint)}`, `region = ${JSON.stringify(store.region)}`,
    `bucket = ${JSON.stringify(store.bucket)}`, `prefix = ${JSON.stringify(prefix)}`, `credentials_file = ${JSON.stringify(creds)}`,
    'part_size = "5MiB"', "concurrency = 4", "",
  ].join("\n"));
  const key = `${prefix}web1/${file}`;
  const s3 = new S3(storeTarget(store));
  const partsStored = async (): Promise<number> => {
    const xml = await (await s3.send({ method: "GET", query: [["uploads", ""], ["prefix", key]] })).text();
    const id = /<UploadId>([^<]+)<\/UploadId>/.exec(xml)?.[1];
    if (!id) return 0;
    const parts = await (await s3.send({ method: "GET", key, query: [["uploadId", id], ["max-parts", "1000"]] }, { allow404: true })).text();
    return (parts.match(/<Part>/g) ?? []).length;
  };
  const finalObject = async () => {
    const h = await s3.send({ method: "HEAD", key }, { allow404: true });
    return h.status === 404 ? undefined : h.headers;
  };
  const total = Math.ceil(fs.statSync(path.join(dest, "web1", file)).size / PART);
  const moments: string[] = [];
  let kills = 0;
  let done = false;
  while (kills < KILLS && !done) {
    const before = await partsStored();
    const proc = Bun.spawn([...shootArgv(), "offsite", "push", "--config", config], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    // a kill while it reads, or once the store holds a few more parts, plus a jitter that lands inside a part
    const early = rand() < 0.2;
    // parts still in flight land after the count is reached: leave room for them, so that the
    // upload is not over before the last kill
    const budget = (total - before) / (KILLS - kills + 2) - 2;
    const ahead = 1 + Math.floor(rand() * Math.max(1, budget));
    const jitter = Math.floor(rand() * 120);
    const until = Date.now() + 60_000;
    let exited = false;
    void proc.exited.then(() => (exited = true));
    if (early) await Bun.sleep(100 + Math.floor(rand() * 900));
    else while (!exited && Date.now() < until && (await partsStored()) < before + ahead) await Bun.sleep(40);
    await Bun.sleep(jitter);
    if (exited) {
      expect(await proc.exited).toBe(0);
      done = true;
      break;
    }
    proc.kill("SIGKILL");
    await proc.exited;
    kills++;
    const after = await partsStored();
    moments.push(early ? `early(${before}→${after})` : `${before}→${after}`);
    const obj = await finalObject();
    if (obj) {
      // the upload completed before the kill: it must be this copy
      expect(obj.get("x-amz-meta-shoot-md5")).toBe(md5);
      done = true;
    }
  }
  console.log(`kill.test.ts (seed ${seed}): ${kills} SIGKILLs of ${total} parts of 5 MiB, parts stored before→after each: ${moments.join(" ")}`);
  expect(kills).toBeGreaterThanOrEqual(20);

  // the next run completes the copy from what is stored
  const last = await spawner.run([...shootArgv(), "offsite", "push", "--config", config], { timeoutMs: 240_000, captureStdout: true });
  expect({ code: last.exitCode, out: last.stdout }).toEqual({ code: 0, out: expect.stringMatching(/sent|already there/) });
  console.log(`kill.test.ts: last run: ${last.stdout.split("\n").find((l) => l.includes(file))?.trim()}`);
  const obj = (await finalObject())!;
  expect(obj.get("x-amz-meta-shoot-md5")).toBe(md5);
  expect(obj.get("x-amz-meta-shoot-sha256")).toMatch(/^[0-9a-f]{64}$/);
  expect(Number(obj.get("content-length"))).toBe(fs.statSync(path.join(dest, "web1", file)).size);
  // no upload is left behind for the key
  expect(await partsStored()).toBe(0);

  // read back and extracted with GNU tar, it is the source tree
  const back = path.join(root, "back.tar");
  const res = await s3.send({ method: "GET", key });
  await Bun.write(back, res);
  fs.rmSync(path.join(dest, "web1", file)); // room: the copy held is no longer needed
  const out = path.join(root, "extracted");
  fs.mkdirSync(out);
  const x = await spawner.run([requireTool("tar"), "-xf", back, "-C", out], { timeoutMs: 300_000 });
  expect(x.exitCode).toBe(0);
  expect(treeDifferences(src, out)).toEqual([]);
}, 600_000);
