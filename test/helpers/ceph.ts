/**
 * A real S3 store for the offsite tests: a throwaway single-node Ceph cluster on 127.0.0.1, all
 * under one temporary directory. One monitor, one OSD whose object store is memstore (data in
 * RAM, capped), one radosgw; no manager, no cephx. Every daemon runs in the foreground as a
 * child of the test, its pid recorded, and is stopped by that pid; every ceph command line tool
 * runs under a time-out (some of them wait for ever for a manager that is not there).
 *
 * With SHOOT_S3_ENDPOINT set, the suite uses that store instead (AWS, MinIO, …): give
 * SHOOT_S3_ACCESS_KEY, SHOOT_S3_SECRET_KEY, SHOOT_S3_BUCKET, SHOOT_S3_LOCK_BUCKET (created with
 * Object Lock) and optionally SHOOT_S3_REGION. The cases that stop the store's daemon always
 * use a local cluster.
 */
import { randomUUID, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawner, describeResult, type Child } from "../../src/io/process.ts";
import { freePort } from "../../src/io/net.ts";
import { S3, type StoreTarget } from "../../src/core/offsite/s3.ts";
import { requireTool } from "./tools.ts";

export interface S3Endpoint {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** A plain bucket and one created with Object Lock. */
  bucket: string;
  lockBucket: string;
  /** "ceph" for the suite's own cluster, "external" for one given in the environment. */
  kind: "ceph" | "external";
}

export interface CephCluster extends S3Endpoint {
  kind: "ceph";
  dir: string;
  /** Pids by daemon name (mon, osd, rgw). */
  pids(): Record<string, number>;
  /** Stop radosgw at once (SIGKILL), leaving the cluster's data as it is. */
  killRgw(): Promise<void>;
  /** Start radosgw again and wait until it answers. */
  startRgw(): Promise<void>;
  /** Run radosgw-admin (under a time-out) and return its standard output. */
  admin(args: string[]): Promise<string>;
  stop(): Promise<void>;
}

const CLI_TIMEOUT_MS = 30_000;
const START_TIMEOUT_MS = 60_000;

function conf(dir: string, fsid: string, monPort: number, rgwPort: number, portBase: number, storeBytes: number): string {
  return `[global]
fsid = ${fsid}
mon host = [v2:127.0.0.1:${monPort}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind port min = ${portBase}
ms bind port max = ${portBase + 99}
auth cluster required = none
auth service required = none
auth client required = none
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
log file = ${dir}/log/$name.log
mon cluster log file = ${dir}/log/cluster.log
keyring = ${dir}/keyring
mon data = ${dir}/mon/$cluster-$id
osd data = ${dir}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = ${storeBytes}
mon data avail warn = 1
mon data avail crit = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
paxos propose interval = 0.05
[client]
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
`;
}

/** Is this pid one of ours and still running (a zombie counts as gone)? */
function alive(pid: number, comm: string): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return name.startsWith(comm.slice(0, 15)) && state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, log: () => string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await Bun.sleep(50);
  }
  throw new Error(`${what} within ${timeoutMs / 1000} s\n${log()}`);
}

function tailOf(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return `(no ${file})`;
  }
}

/**
 * Start the cluster, a user with keys, and the two buckets. The OSD keeps its objects in memory
 * (`storeBytes`, 4 GiB unless asked); a deleted object's data goes only when radosgw collects it,
 * hours later.
 */
export async function startCeph(storeBytes = 4 * 1024 ** 3): Promise<CephCluster> {
  const tools = {
    mon: requireTool("ceph-mon"), osd: requireTool("ceph-osd"), rgw: requireTool("radosgw"),
    ceph: requireTool("ceph"), admin: requireTool("radosgw-admin"), monmaptool: requireTool("monmaptool"),
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-ceph-"));
  for (const d of ["run", "log", "mon", "osd/ceph-0", "rgw"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const fsid = randomUUID();
  const monPort = await freePort();
  const rgwPort = await freePort();
  const portBase = 20000 + Math.floor(Math.random() * 400) * 100;
  const confFile = path.join(dir, "ceph.conf");
  fs.writeFileSync(confFile, conf(dir, fsid, monPort, rgwPort, portBase, storeBytes));
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", CEPH_CONF: confFile };
  const children = new Map<string, Child>();
  const pidOf = new Map<string, number>();

  const cli = async (argv: string[], what: string): Promise<string> => {
    const r = await spawner.run(argv, { env, timeoutMs: CLI_TIMEOUT_MS, killSignal: "SIGKILL", captureStdout: true });
    if (r.exitCode !== 0) throw new Error(`${what}: ${describeResult(r, 8)}`);
    return r.stdout;
  };
  const daemon = (name: string, argv: string[]) => {
    const c = spawner.start(argv, { env, stderrLines: 40 });
    children.set(name, c);
    pidOf.set(name, c.pid);
  };
  const stopOne = async (name: string) => {
    const c = children.get(name);
    if (!c) return;
    const comm = name === "rgw" ? "radosgw" : `ceph-${name}`;
    if (alive(c.pid, comm)) c.kill("SIGKILL");
    await c.done;
    children.delete(name);
  };
  const s3 = (bucket: string, accessKeyId: string, secretAccessKey: string) =>
    new S3({ endpoint: `http://127.0.0.1:${rgwPort}`, region: "us-east-1", bucket, creds: { accessKeyId, secretAccessKey }, timeoutMs: 10_000 });
  const rgwAnswers = async () => {
    try {
      await fetch(`http://127.0.0.1:${rgwPort}/`, { signal: AbortSignal.timeout(1000) });
      return true;
    } catch {
      return false;
    }
  };
  const startRgw = async () => {
    daemon("rgw", [tools.rgw, "-f", "-c", confFile, "-n", "client.rgw.test"]);
    await waitFor("radosgw did not answer", rgwAnswers, START_TIMEOUT_MS, () => tailOf(path.join(dir, "log", "client.rgw.test.log")));
  };
  const stop = async () => {
    // radosgw first: without its OSD it would wait for its shutdown alarm
    for (const n of ["rgw", "osd", "mon"]) await stopOne(n);
    fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    await cli([tools.monmaptool, "--create", "--fsid", fsid, "--addv", "a", `[v2:127.0.0.1:${monPort}]`, path.join(dir, "monmap")], "monmaptool");
    await cli([tools.mon, "-c", confFile, "--mkfs", "-i", "a", "--monmap", path.join(dir, "monmap")], "ceph-mon --mkfs");
    daemon("mon", [tools.mon, "-f", "-c", confFile, "-i", "a"]);
    const uuid = randomUUID();
    const id = (await cli([tools.ceph, "-c", confFile, "--connect-timeout", "20", "osd", "new", uuid], "ceph osd new")).trim();
    if (id !== "0") throw new Error(`ceph osd new gave the id ${JSON.stringify(id)}, expected 0`);
    await cli([tools.osd, "-c", confFile, "-i", "0", "--mkfs", "--osd-uuid", uuid], "ceph-osd --mkfs");
    daemon("osd", [tools.osd, "-f", "-c", confFile, "-i", "0"]);
    await waitFor("the OSD did not come up", async () => /1 up/.test(await cli([tools.ceph, "-c", confFile, "osd", "stat"], "ceph osd stat")), START_TIMEOUT_MS, () => tailOf(path.join(dir, "log", "osd.0.log")));
    await startRgw();
    const accessKeyId = `T${randomBytes(9).toString("hex").toUpperCase()}`;
    const secretAccessKey = randomBytes(24).toString("base64url");
    await cli([tools.admin, "-c", confFile, "-n", "client.rgw.test", "user", "create", "--uid=shoot-test", "--display-name=shoot test", `--access-key=${accessKeyId}`, `--secret-key=${secretAccessKey}`], "radosgw-admin user create");
    const bucket = "shoot-plain";
    const lockBucket = "shoot-locked";
    await s3(bucket, accessKeyId, secretAccessKey).createBucket();
    await s3(lockBucket, accessKeyId, secretAccessKey).createBucket({ objectLock: true });
    return {
      kind: "ceph", dir, endpoint: `http://127.0.0.1:${rgwPort}`, region: "us-east-1", accessKeyId, secretAccessKey, bucket, lockBucket,
      pids: () => Object.fromEntries(pidOf),
      killRgw: () => stopOne("rgw"),
      startRgw,
      admin: (args) => cli([tools.admin, "-c", confFile, "-n", "client.rgw.test", ...args], `radosgw-admin ${args[0]}`),
      stop,
    };
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
}

/** The store given in the environment, if any (see the top of this file). */
export function externalEndpoint(env: Record<string, string | undefined> = process.env): S3Endpoint | undefined {
  if (!env.SHOOT_S3_ENDPOINT) return undefined;
  const need = ["SHOOT_S3_ACCESS_KEY", "SHOOT_S3_SECRET_KEY", "SHOOT_S3_BUCKET", "SHOOT_S3_LOCK_BUCKET"].filter((k) => !env[k]);
  if (need.length) throw new Error(`SHOOT_S3_ENDPOINT is set, but ${need.join(", ")} not`);
  return {
    kind: "external", endpoint: env.SHOOT_S3_ENDPOINT, region: env.SHOOT_S3_REGION ?? "us-east-1",
    accessKeyId: env.SHOOT_S3_ACCESS_KEY!, secretAccessKey: env.SHOOT_S3_SECRET_KEY!, bucket: env.SHOOT_S3_BUCKET!, lockBucket: env.SHOOT_S3_LOCK_BUCKET!,
  };
}

/** The suite's store: the one in the environment, else a local cluster. stop() stops what was started. */
export async function startStore(): Promise<S3Endpoint & { stop(): Promise<void> }> {
  const ext = externalEndpoint();
  if (ext) return { ...ext, stop: async () => {} };
  return startCeph();
}

export function storeTarget(e: S3Endpoint, bucket = e.bucket, over: Partial<StoreTarget> = {}): StoreTarget {
  return { endpoint: e.endpoint, region: e.region, bucket, creds: { accessKeyId: e.accessKeyId, secretAccessKey: e.secretAccessKey }, timeoutMs: 30_000, ...over };
}
