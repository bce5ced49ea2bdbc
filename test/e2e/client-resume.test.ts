/**
 * An archive transfer cut half-way (the server's sshd drops the connection) is resumed by the
 * next run: the data already received is reused, not fetched again, and the copy verifies.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { startShoot } from "../helpers/cli.ts";
import { listTree, md5sumCheck, runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { tempDir } from "../helpers/fixture.ts";
import { randomBytes, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { readDirOrEmpty } from "../../src/core/state/fsutil.ts";
import { archiveName } from "../../src/core/state/naming.ts";

const T = 120_000;
const SIZE = 8 * 1024 * 1024;
let sshd: SshServer;
let base: string;

beforeAll(async () => {
  requireTool("rsync");
  sshd = await startSshd();
  base = tempDir("shoot-resume-");
}, 30_000);
afterAll(async () => {
  await sshd?.stop();
  fs.rmSync(base, { recursive: true, force: true });
}, 30_000);

/**
 * Bytes received so far for `file` in the staging directory (rsync's temporary file or its kept
 * partial). The client makes and removes directories and files there while this looks (the
 * status pull's, rsync's temporary names), so whatever vanishes between a listing and a look
 * counts as nothing.
 */
function receivedSoFar(stage: string, file: string): number {
  let best = 0;
  const walk = (dir: string) => {
    for (const n of readDirOrEmpty(dir)) {
      const p = path.join(dir, n);
      const st = fs.statSync(p, { throwIfNoEntry: false });
      if (st?.isDirectory()) walk(p);
      else if (st && (n === file || n.startsWith(`.${file}.`))) best = Math.max(best, st.size);
    }
  };
  walk(stage);
  return best;
}

/** Wait until the running client has received `bytes` of `file`; a client that ends first is a failure that shows what it printed. */
async function waitForBytes(proc: ReturnType<typeof startShoot>, stage: string, file: string, bytes: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (receivedSoFar(stage, file) < bytes) {
    if (proc.exitCode !== null) {
      const [out, err] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text()];
      throw new Error(`the client ended (exit ${proc.exitCode}) before ${bytes} bytes arrived:\n${out}\n${err}`);
    }
    if (Date.now() > deadline) throw new Error(`the transfer did not get going in 60 s: ${receivedSoFar(stage, file)} bytes arrived`);
    await Bun.sleep(100);
  }
}

test("a transfer killed half-way is resumed by the next run, reusing what arrived, and verifies", async () => {
  const backup = path.join(base, "server");
  const file = archiveName("big", new Date(), "gzip");
  const archive = await writeArchive(backup, file, randomBytes(SIZE));
  writeServerStatus(backup, archive, { final: "NEW_ARCHIVE" });
  const dest = path.join(base, "dest");
  const stage = path.join(dest, "big", ".shoot-tmp-pull");
  const slow = writeClientConfig(path.join(base, "slow.toml"), { dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "big", backup, { bwlimit: "1MiB" })] });
  const fast = writeClientConfig(path.join(base, "fast.toml"), { dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "big", backup)] });

  // 1. a slow pull, cut off by dropping the connection on the server's side once 2 MiB arrived
  const proc = startShoot(["client", "--config", slow, "--json"]);
  await waitForBytes(proc, stage, file, 2 * 1024 * 1024);
  const sessions = sshd.sessionPids();
  expect(sessions.length).toBeGreaterThan(0);
  for (const pid of sessions) process.kill(pid, "SIGTERM");
  const killer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  const [out, exit] = [await new Response(proc.stdout).text(), await proc.exited];
  clearTimeout(killer);
  expect(exit).toBe(49);
  expect(JSON.parse(out).sources[0].code).toBe(49);
  const partial = fs.statSync(path.join(stage, ".shoot-partial", file)).size;
  expect(partial).toBeGreaterThanOrEqual(2 * 1024 * 1024);
  expect(partial).toBeLessThan(SIZE);
  // nothing half-done is taken for a copy
  expect(fs.readdirSync(path.join(dest, "big"))).toEqual([".shoot-tmp-pull"]);

  // 2. the next run picks up where the first stopped
  const r = await runClient(fast, dest);
  expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { big: 30 } });
  const pulled = r.records.find((x) => x.name === "PULLED")!;
  const { matched, literal, received } = pulled.data as { matched: number; literal: number; received: number };
  // the blocks received before the cut were matched, only the rest crossed the wire
  expect(matched).toBeGreaterThanOrEqual(partial - 128 * 1024);
  expect(literal).toBeLessThanOrEqual(SIZE - partial + 128 * 1024);
  expect(received).toBeLessThan(SIZE - partial / 2);
  expect(md5sumCheck(path.join(dest, "big"))).toEqual([file]);
  expect(listTree(path.join(dest, "big"))).toEqual([".shoot-copies", file, `${file}.list`, `${file}.md5`]);
  console.log(`resume: ${partial} bytes before the cut; second run matched ${matched}, literal ${literal}, received ${received} of ${SIZE}`);
}, T);

test("SIGTERM during a pull ends the run with INTERRUPTED, keeps the partial data and releases the lock", async () => {
  const backup = path.join(base, "server2");
  const file = archiveName("stop", new Date(), "gzip");
  const archive = await writeArchive(backup, file, randomBytes(4 * 1024 * 1024));
  writeServerStatus(backup, archive, { final: "NEW_ARCHIVE" });
  const dest = path.join(base, "dest2");
  const stage = path.join(dest, "stop", ".shoot-tmp-pull");
  const cfg = writeClientConfig(path.join(base, "stop.toml"), { dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "stop", backup, { bwlimit: "1MiB" })] });
  const proc = startShoot(["client", "--config", cfg, "--json"]);
  await waitForBytes(proc, stage, file, 1024 * 1024);
  proc.kill("SIGTERM");
  const killer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  const exit = await proc.exited;
  clearTimeout(killer);
  expect(exit).toBe(34);
  expect(fs.statSync(path.join(stage, ".shoot-partial", file)).size).toBeGreaterThanOrEqual(1024 * 1024);
  const records = fs.readFileSync(path.join(dest, "client.status"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(records.at(-1)!.name).toBe("INTERRUPTED");
  expect(fs.existsSync(path.join(dest, ".shoot.lock"))).toBe(false);
}, T);
