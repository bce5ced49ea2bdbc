/**
 * dest_dir on a tiny tmpfs (mounted by the test, as root): an archive that does not fit is
 * refused with CLIENT_NO_SPACE before anything is transferred, and the copies held stay intact.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { listTree, md5sumCheck, runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { tempDir } from "../helpers/fixture.ts";
import { randomBytes, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { spawner } from "../../src/io/process.ts";
import { archiveName } from "../../src/core/state/naming.ts";

const T = 120_000;
let sshd: SshServer;
let base: string;
let mounted = "";

beforeAll(async () => {
  requireTool("rsync");
  sshd = await startSshd();
  base = tempDir("shoot-space-");
}, 30_000);
afterAll(async () => {
  if (mounted) await spawner.run(["umount", mounted], { timeoutMs: 10_000 });
  await sshd?.stop();
  fs.rmSync(base, { recursive: true, force: true });
}, 30_000);

test("dest_dir on a 2 MiB tmpfs: a 3 MiB archive is CLIENT_NO_SPACE, the earlier copy stays intact", async () => {
  const dest = path.join(base, "dest");
  fs.mkdirSync(dest);
  const m = await spawner.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", dest], { timeoutMs: 10_000 });
  if (m.exitCode !== 0) throw new Error(`mounting a tmpfs needs root (the suite runs as root): ${m.stderrTail.join(" ")}`);
  mounted = dest;

  const backup = path.join(base, "server");
  const small = await writeArchive(backup, archiveName("web1", new Date(Date.now() - 3600_000), "gzip"), randomBytes(300 * 1024));
  writeServerStatus(backup, small, { final: "FIRST_ARCHIVE" });
  const cfg = writeClientConfig(path.join(base, "client.toml"), { dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "web1", backup)] });
  const r1 = await runClient(cfg, dest);
  expect({ exit: r1.code, codes: r1.codes }).toEqual({ exit: 0, codes: { web1: 30 } });
  const held = fs.readFileSync(path.join(dest, "web1", small.file));

  const big = await writeArchive(backup, archiveName("web1", new Date(), "gzip"), randomBytes(3 * 1024 * 1024));
  writeServerStatus(backup, big, { final: "NEW_ARCHIVE" });
  const r2 = await runClient(cfg, dest);
  expect({ exit: r2.code, codes: r2.codes }).toEqual({ exit: 48, codes: { web1: 48 } });
  expect(r2.outcome.sources[0]!.message).toContain(`${big.file} needs 3.0 MiB`);
  expect(r2.records.map((x) => x.name)).not.toContain("PULLED");
  // the earlier copy is untouched and still verifies
  expect(Buffer.compare(fs.readFileSync(path.join(dest, "web1", small.file)), held)).toBe(0);
  expect(md5sumCheck(path.join(dest, "web1"))).toEqual([small.file]);
  expect(listTree(path.join(dest, "web1"))).toEqual([".shoot-copies", small.file, `${small.file}.list`, `${small.file}.md5`]);

  // with the reserve, even the small one no longer fits: the reserve is honoured too
  fs.rmSync(path.join(dest, "web1"), { recursive: true });
  const reserved = writeClientConfig(path.join(base, "reserved.toml"), { dest, reserve: "1900KiB", known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "web1", backup)] });
  writeServerStatus(backup, small, { final: "NEW_ARCHIVE" });
  const r3 = await runClient(reserved, dest);
  expect(r3.codes).toEqual({ web1: 48 });
  expect(r3.outcome.sources[0]!.message).toContain("reserve of 1.9 MiB");
}, T);
