/**
 * A pull that takes a while is checked with checksums taken while rsync received it, over the
 * test suite's sshd: the copy kept is the one the server recorded, and one that is not is
 * rejected the same way as after the transfer.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { listTree, md5sumCheck, runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { tempDir } from "../helpers/fixture.ts";
import { randomBytes, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { archiveName } from "../../src/core/naming.ts";

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

/** A served archive of `bytes` whose status record carries its SHA-256 too; then `served` replaces its content. */
async function serve(name: string, bytes: Uint8Array, served = bytes) {
  const backup = path.join(base, name, "server");
  const file = archiveName(name, new Date(), "zstd");
  const archive = { ...(await writeArchive(backup, file, bytes)), sha256: createHash("sha256").update(bytes).digest("hex") };
  writeServerStatus(backup, archive, { final: "NEW_ARCHIVE" });
  fs.writeFileSync(path.join(backup, file), served);
  const dest = path.join(base, name, "dest");
  const cfg = writeClientConfig(path.join(base, name, "client.toml"), {
    dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, name, backup, { bwlimit: "2MiB" })],
  });
  return { file, dest, cfg };
}

test("a slow pull is verified with the MD5 and SHA-256 taken while it arrived", async () => {
  const { file, dest, cfg } = await serve("slow", randomBytes(SIZE));
  const r = await runClient(cfg, dest);
  expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { slow: 30 } });
  const pulled = r.records.find((x) => x.name === "PULLED")!;
  expect((pulled.data as { hashed: string }).hashed).toBe("while receiving");
  expect(md5sumCheck(path.join(dest, "slow"))).toEqual([file]);
  expect(listTree(path.join(dest, "slow"))).toEqual([file, `${file}.md5`]);
}, T);

test("a slow pull of bytes other than those recorded is rejected and nothing is kept", async () => {
  const recorded = randomBytes(SIZE);
  const other = Uint8Array.from(recorded);
  other[SIZE - 10] = other[SIZE - 10]! ^ 0xff; // one byte near the end, read last
  const { file, dest, cfg } = await serve("bad", recorded, other);
  const r = await runClient(cfg, dest);
  expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 50, codes: { bad: 50 } });
  const actual = createHash("md5").update(other).digest("hex");
  expect(r.outcome.sources[0]!.message).toContain(`its MD5 is ${actual}`);
  expect(listTree(path.join(dest, "bad")).filter((p) => p.includes(file))).toEqual([]);
}, T);
