/**
 * A pulled copy counts as verified only once it proves restorable (verify = "deep", the
 * default): the server's file list is pulled beside it and the copy's whole tar stream is read
 * and checked against it. Copies whose checksums match but whose tar streams are damaged or
 * differ from their list are refused with COPY_UNPROVEN and never kept; "checksum" keeps the
 * checksum-only check. Servers here are real backup directories made by hand, pulled through
 * the suite's sshd, and one made by `shoot wrapper` itself.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { listTree, md5sumCheck, runClient, sshSource, writeClientConfig, type ClientSpec } from "../helpers/client.ts";
import { runShoot } from "../helpers/cli.ts";
import { serverFixture, tempDir } from "../helpers/fixture.ts";
import { readListText, writeListText } from "../helpers/lists.ts";
import { randomBytes, tarOf, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { treeDifferences } from "../helpers/tree-compare.ts";
import { archiveName } from "../../src/core/state/naming.ts";

const T = 120_000;
let sshd: SshServer;
let base: string;

beforeAll(async () => {
  requireTool("rsync");
  sshd = await startSshd();
  base = tempDir("shoot-deep-");
}, 30_000);
afterAll(async () => {
  await sshd?.stop();
  fs.rmSync(base, { recursive: true, force: true });
}, 30_000);

/** A served backup directory whose archive `damage` may change after its checksums were taken (and taken again). */
async function served(name: string, damage?: (tar: Uint8Array, dir: string, file: string) => Uint8Array | undefined) {
  const dir = path.join(base, name, "server");
  const file = archiveName(name, new Date(), "gzip");
  let archive = await writeArchive(dir, file, randomBytes(300_000));
  const tar = fs.readFileSync(path.join(dir, file));
  const changed = damage?.(tar, dir, file);
  if (changed) {
    // the checksums follow the damaged bytes: only reading the tar stream can tell
    const listText = readListText(path.join(dir, `${file}.list`));
    archive = await writeArchive(dir, file, new Uint8Array(0));
    fs.writeFileSync(path.join(dir, file), changed);
    const md5 = new Bun.CryptoHasher("md5").update(changed).digest("hex");
    const sha256 = new Bun.CryptoHasher("sha256").update(changed).digest("hex");
    fs.writeFileSync(path.join(dir, `${file}.md5`), `${md5}  ${file}\n`);
    const [head, ...rest] = listText.split("\n");
    writeListText(path.join(dir, `${file}.list`), [JSON.stringify({ ...JSON.parse(head!), size: changed.length, md5, sha256 }), ...rest].join("\n"));
    archive = { file, size: changed.length, md5, sha256 };
  }
  writeServerStatus(dir, archive, { final: "NEW_ARCHIVE" });
  return { dir, file, archive };
}

function config(name: string, dir: string, extra: Partial<ClientSpec> = {}) {
  const dest = path.join(base, name, "dest");
  const cfg = writeClientConfig(path.join(base, name, "client.toml"), { dest, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, name, dir)], ...extra });
  return { dest, cfg };
}

describe("verify = deep", () => {
  test("a sound copy is read to its end, checked against the server's file list, and kept with that list", async () => {
    const s = await served("sound");
    const { dest, cfg } = config("sound", s.dir);
    const r = await runClient(cfg, dest);
    expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { sound: 30 } });
    const pulled = r.records.find((x) => x.name === "PULLED")!;
    expect(pulled.data.proof).toBe("deep: 1 entries read to the end of the tar stream and checked against the server's file list");
    expect(listTree(path.join(dest, "sound"))).toEqual([".shoot-copies", s.file, `${s.file}.list`, `${s.file}.md5`]);
    md5sumCheck(path.join(dest, "sound"));
  }, T);

  test("a server of an earlier version, whose file list is plain text: the copy is checked against it and kept", async () => {
    const dir = path.join(base, "plain", "server");
    const file = archiveName("plain", new Date(), "gzip");
    writeServerStatus(dir, await writeArchive(dir, file, randomBytes(300_000), true), { final: "NEW_ARCHIVE" });
    const { dest, cfg } = config("plain", dir);
    const r = await runClient(cfg, dest);
    expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { plain: 30 } });
    expect(r.records.find((x) => x.name === "PULLED")!.data.proof).toStartWith("deep: 1 entries read to the end");
    expect(fs.readFileSync(path.join(dest, "plain", `${file}.list`), "utf8")).toBe(fs.readFileSync(path.join(dir, `${file}.list`), "utf8"));
  }, T);

  const damaged: Array<[string, (tar: Uint8Array, dir: string, file: string) => Uint8Array | undefined, RegExp]> = [
    ["cut before its end-of-archive marker", (tar) => tar.subarray(0, 512 + 200_000), /truncated|ends early|end-of-archive/],
    ["a header byte changed", (tar) => {
      const t = tar.slice();
      t[10] = t[10]! ^ 0x01;
      return t;
    }, /damaged|checksum|not in the server's file list|listed entries are not in the archive/],
    ["a file list that says another size", (_tar, dir, file) => {
      const list = path.join(dir, `${file}.list`);
      writeListText(list, readListText(list).replace(",300000,", ",299999,"));
      return undefined;
    }, /differ in size from the file list/],
    ["a file list damaged after its header", (_tar, dir, file) => {
      const list = path.join(dir, `${file}.list`);
      const bytes = fs.readFileSync(list);
      bytes[bytes.readUInt32LE(16) + 30]! ^= 0xff; // in the member after the header's
      fs.writeFileSync(list, bytes);
      return undefined;
    }, /is damaged: it cannot be read to its end: .*\.list: the compressed block at byte \d+ /],
    ["a file list that is not one", (_tar, dir, file) => {
      fs.writeFileSync(path.join(dir, `${file}.list`), "not a list\n");
      return undefined;
    }, /is not a file list of this version/],
  ];
  for (const [what, damage, why] of damaged) {
    test(`checksums that match a tar stream ${what}: COPY_UNPROVEN (54), nothing kept`, async () => {
      const name = what.replace(/[^a-z]+/g, "-").slice(0, 30).replace(/-$/, "");
      const s = await served(name, damage);
      const { dest, cfg } = config(name, s.dir);
      const r = await runClient(cfg, dest);
      expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 54, codes: { [name]: 54 } });
      expect(r.outcome.sources[0]!.message).toMatch(why);
      expect(r.outcome.sources[0]!.message).toContain("matches its checksum but was not kept");
      expect(listTree(dest).filter((p) => !p.startsWith(`${name}/.`))).toEqual(["client.status"]);
    }, T);
  }

  test("no file list on the server (rotation removed it while the client pulled): PULL_FAILED, nothing kept, the next run tries again", async () => {
    const s = await served("no-list", (_tar, dir, file) => {
      fs.rmSync(path.join(dir, `${file}.list`));
      return undefined;
    });
    const { dest, cfg } = config("no-list", s.dir);
    const r = await runClient(cfg, dest);
    expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 49, codes: { "no-list": 49 } });
    expect(r.outcome.sources[0]!.message).toMatch(/file list .* could not be pulled, so .* was not kept/);
    expect(listTree(dest).filter((p) => !p.startsWith("no-list/."))).toEqual(["client.status"]);
  }, T);

  test('verify = "checksum" keeps checksum-only verification: the cut stream is taken as it was before', async () => {
    const s = await served("checksum-only", (tar) => tar.subarray(0, 512 + 200_000));
    const { dest, cfg } = config("checksum-only", s.dir, { verify: "checksum" });
    const r = await runClient(cfg, dest);
    expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { "checksum-only": 30 } });
    expect(r.records.find((x) => x.name === "PULLED")!.data.proof).toBeUndefined();
  }, T);
});

test("a copy of what `shoot wrapper` made proves restorable on the backup host, restores with GNU tar, and `verify --deep` there compares it with its list", async () => {
  const fx = serverFixture(`compression = "zstd"`);
  try {
    fs.writeFileSync(path.join(fx.src, "noise.bin"), randomBytes(700_000));
    const w = await runShoot(["wrapper", "--config", fx.config]);
    expect(w.code).toBe(0);
    const { dest, cfg } = config("wrapped", fx.backup);
    const r = await runClient(cfg, dest);
    expect({ exit: r.code, codes: r.codes }).toEqual({ exit: 0, codes: { wrapped: 30 } });
    const file = r.outcome.sources[0]!.archive!.file;
    const copy = path.join(dest, "wrapped", file);
    const x = tempDir("shoot-deep-x-");
    expect(Bun.spawnSync([requireTool("tar"), "-xpf", copy, "-C", x]).exitCode).toBe(0);
    expect(treeDifferences(fx.src, path.join(x, fx.src), { mtimeResolutionNs: 1000 })).toEqual([]);
    fs.rmSync(x, { recursive: true, force: true });
    const v = await runShoot(["verify", "--deep", copy]);
    expect(v.code).toBe(0);
    expect(v.stdout + v.stderr).toMatch(/all \d+ entries match the server's file list/);
  } finally {
    fx.cleanup();
  }
}, T);

test("tarOf makes what GNU tar reads (the hand-made servers above hold real archives)", () => {
  const dir = tempDir("shoot-deep-tar-");
  const bytes = randomBytes(5000);
  fs.writeFileSync(path.join(dir, "a.tar"), tarOf(bytes));
  expect(Bun.spawnSync([requireTool("tar"), "-xf", "a.tar"], { cwd: dir }).exitCode).toBe(0);
  expect(Buffer.from(fs.readFileSync(path.join(dir, "payload"))).equals(Buffer.from(bytes))).toBe(true);
  fs.rmSync(dir, { recursive: true, force: true });
});
