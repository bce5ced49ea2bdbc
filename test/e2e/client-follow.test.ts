/**
 * A pull that takes a while is checked with the checksum taken while rsync received it, over
 * the test suite's sshd: the SHA-256 when the status record has one, else the MD5. The copy
 * kept is the one the server recorded, and one that is not is rejected the same way as after
 * the transfer.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { listTree, md5sumCheck, runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { tempDir } from "../helpers/fixture.ts";
import { randomBytes, tarOf, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { archiveName } from "../../src/core/state/naming.ts";

const T = 120_000;
/** At the 2 MiB/s limit below, a transfer of about two seconds. */
const SIZE = 4 * 1024 * 1024;
let sshd: SshServer;
let base: string;

beforeAll(async () => {
  requireTool("rsync");
  sshd = await startSshd();
  base = tempDir("shoot-follow-");
}, 30_000);
afterAll(async () => {
  await sshd?.stop();
  fs.rmSync(base, { recursive: true, force: true });
}, 30_000);

/**
 * A served archive of `bytes` whose status record carries its SHA-256 too (unless `md5Only`);
 * then `served` replaces its content.
 */
async function serve(name: string, bytes: Uint8Array, served = bytes, md5Only = false) {
  const backup = path.join(base, name, "server");
  const file = archiveName(name, new Date(), "zstd");
  const recorded = await writeArchive(backup, file, bytes);
  const archive = md5Only ? { file: recorded.file, size: recorded.size, md5: recorded.md5 } : recorded;
  writeServerStatus(backup, archive, { final: "NEW_ARCHIVE" });
  fs.writeFileSync(path.join(backup, file), tarOf(served));
  const dest = path.join(base, name, "dest");
  const cfg = writeClientConfig(path.join(base, name, "client.toml"), {
    dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, name, backup, { bwlimit: "2MiB" })],
  });
  return { file, dest, cfg };
}

function hashedAs(r: Awaited<ReturnType<typeof runClient>>): string {
  return String((r.records.find((x) => x.name === "PULLED")!.data as { hashed: string }).hashed);
}

test("a slow pull is verified with the SHA-256 taken while it arrived", async () => {
  const { file, dest, cfg } = await serve("slow", randomBytes(SIZE));
  const r = await runClient(cfg, dest);
  expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { slow: 30 } });
  expect(hashedAs(r)).toBe("SHA-256 while receiving");
  expect(md5sumCheck(path.join(dest, "slow"))).toEqual([file]);
  expect(listTree(path.join(dest, "slow"))).toEqual([".shoot-copies", file, `${file}.list`, `${file}.md5`]);
}, T);

test("a slow pull of bytes other than those recorded is rejected and nothing is kept", async () => {
  const recorded = randomBytes(SIZE);
  const other = Uint8Array.from(recorded);
  other[SIZE - 10] = other[SIZE - 10]! ^ 0xff; // one byte near the end, read last
  const { file, dest, cfg } = await serve("bad", recorded, other);
  const r = await runClient(cfg, dest);
  expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 50, codes: { bad: 50 } });
  const actual = createHash("sha256").update(tarOf(other)).digest("hex");
  expect(r.outcome.sources[0]!.message).toContain(`its SHA-256 is ${actual}`);
  expect(listTree(path.join(dest, "bad")).filter((p) => p.includes(file))).toEqual([]);
}, T);

test("a status record without SHA-256: the copy is held to its MD5, taken while it arrived", async () => {
  const good = await serve("md5", randomBytes(SIZE), undefined, true);
  const r = await runClient(good.cfg, good.dest);
  expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { md5: 30 } });
  expect(hashedAs(r)).toBe("MD5 while receiving");
  expect(md5sumCheck(path.join(good.dest, "md5"))).toEqual([good.file]);

  const recorded = randomBytes(SIZE);
  const other = Uint8Array.from(recorded);
  other[SIZE - 10] = other[SIZE - 10]! ^ 0xff;
  const bad = await serve("md5bad", recorded, other, true);
  const rb = await runClient(bad.cfg, bad.dest);
  expect({ exit: rb.code, codes: rb.codes }).toEqual({ exit: 50, codes: { md5bad: 50 } });
  expect(rb.outcome.sources[0]!.message).toContain(`its MD5 is ${createHash("md5").update(tarOf(other)).digest("hex")}`);
  expect(listTree(path.join(bad.dest, "md5bad")).filter((p) => p.includes(bad.file))).toEqual([]);
}, T);
