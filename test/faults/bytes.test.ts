/**
 * Damaged bytes between a real server and the backup host: flipped bytes in an archive that
 * `shoot wrapper` made and in its .md5; a truncated archive padded back to the size its record
 * gives; server.status with a torn last line, garbage, a record from the future, a final code
 * that is not a number, a size beyond what a status may be, and bytes flipped at random. The
 * client must end each with a code of its own and never keep a copy that differs from what the
 * server made; once the damage is repaired the next pull ends golden.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { serverFixture, statusRecords, type ServerFixture } from "../helpers/fixture.ts";
import {
  caseSeed, checkArchives, checkClean, checkGoodKept, checkNoCorruptAccepted, expectNamed, faultFile, faultSshd, goldenWrapper,
  injected, mutateTree, scaled, seedTree, snapshotGood, tally,
} from "../helpers/faults.ts";
import { randomBytes, seeded } from "../helpers/random.ts";
import type { CodeName } from "../../src/core/common/codes.ts";

faultFile(import.meta.path);

const host = faultSshd("shoot-fault-bytes-");
let fx: ServerFixture;
let dest: string;
let copies: string;
let config: string;
const truth = new Map<string, string>();
const rand = seeded(caseSeed("damaged bytes"));
const statusFile = () => path.join(fx.backup, "server.status");

beforeAll(async () => {
  fx = serverFixture("keep = 2");
  seedTree(fx.src, rand, 80, 400 * 1024);
  dest = path.join(fx.root, "dest");
  copies = path.join(dest, "web1");
  config = writeClientConfig(path.join(fx.root, "client.toml"), { dest, keep: 3, known_hosts: host.sshd.knownHosts, sources: [sshSource(host.sshd, "web1", fx.backup)] });
  await newArchive("first backup");
  await goldenPull("first pull");
}, 60_000);
afterAll(() => {
  fx?.cleanup();
});

/** A new archive from the real server; its MD5 is the truth a copy is held to. */
async function newArchive(context: string): Promise<{ file: string; size: number; md5: string }> {
  mutateTree(fx.src, rand, context);
  await goldenWrapper(fx, context);
  const a = statusRecords(statusFile()).filter((r) => r.archive).at(-1)!.archive;
  truth.set(a.file, a.md5);
  return a;
}

async function pull(context: string) {
  try {
    const r = await runClient(config, dest, [], 60_000);
    checkNoCorruptAccepted(copies, truth, context, path.join(dest, "client.status"));
    return r;
  } catch (e) {
    if (/hung and was killed/.test(String(e))) tally.hangs++;
    throw e;
  }
}

async function goldenPull(context: string): Promise<void> {
  const r = await pull(context);
  expect({ context, code: r.code, message: r.code ? r.outcome.sources[0]?.message : "" }).toEqual({ context, code: 0, message: "" });
  checkClean(dest, context);
  checkArchives(copies, context);
}

/** Damage files on the server, pull, expect one of `codes`, repair, and pull golden. */
async function damaged(context: string, files: string[], damage: () => void, codes: CodeName[]): Promise<number> {
  const saved = new Map(files.map((f) => [f, { bytes: fs.readFileSync(f), mtime: fs.statSync(f).mtime }]));
  const good = snapshotGood(copies);
  damage();
  injected(context.split(":")[0]!);
  const r = await pull(context);
  expectNamed(r.code, codes, context);
  checkGoodKept(good, context);
  checkArchives(copies, context);
  checkClean(dest, `${context} (nothing of the bad copy left)`);
  for (const [f, s] of saved) {
    fs.writeFileSync(f, s.bytes);
    fs.utimesSync(f, new Date(), s.mtime);
  }
  checkArchives(fx.backup, `${context}: repaired`);
  await goldenPull(`${context}: repaired`);
  return r.code;
}

function flipByte(file: string, at: number): void {
  const fd = fs.openSync(file, "r+");
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, at);
  b[0] = b[0]! ^ (1 + Math.floor(rand() * 255));
  fs.writeSync(fd, b, 0, 1, at);
  fs.closeSync(fd);
}

describe("damaged archives and checksum files", () => {
  test(`flipped bytes in an archive, ${scaled(2)} times: CHECKSUM_MISMATCH, the bad copy never kept`, async () => {
    for (let i = 0; i < scaled(2); i++) {
      const a = await newArchive(`archive flip ${i}`);
      const file = path.join(fx.backup, a.file);
      const code = await damaged(`flipped archive byte: ${i}`, [file], () => {
        for (let k = 0; k <= Math.floor(rand() * 3); k++) flipByte(file, Math.floor(rand() * a.size));
      }, ["CHECKSUM_MISMATCH"]);
      expect(code).toBe(50);
    }
  }, 90_000);

  test("a flipped byte in the .md5: CHECKSUM_MISMATCH", async () => {
    const a = await newArchive("md5 flip");
    const md5 = path.join(fx.backup, `${a.file}.md5`);
    expect(await damaged("flipped .md5 byte", [md5], () => flipByte(md5, Math.floor(rand() * 32)), ["CHECKSUM_MISMATCH"])).toBe(50);
  }, 60_000);

  test("a truncated archive padded back to the size its record gives: CHECKSUM_MISMATCH", async () => {
    const a = await newArchive("truncated");
    const file = path.join(fx.backup, a.file);
    expect(await damaged("truncated archive", [file], () => {
      fs.truncateSync(file, Math.floor(a.size / 2));
      fs.truncateSync(file, a.size); // zeros up to the size the record and a quick `ls -l` expect
    }, ["CHECKSUM_MISMATCH"])).toBe(50);
  }, 60_000);
});

describe("damaged server.status", () => {
  const rewrite = (fn: (lines: string[]) => string[]) => {
    const lines = fs.readFileSync(statusFile(), "utf8").split("\n").filter(Boolean);
    fs.writeFileSync(statusFile(), `${fn(lines).join("\n")}\n`);
  };

  test("a torn last line is skipped with a warning; the archive is still pulled", async () => {
    await newArchive("torn");
    const good = snapshotGood(copies);
    const line = fs.readFileSync(statusFile(), "utf8").split("\n").filter(Boolean).at(-1)!;
    fs.appendFileSync(statusFile(), line.slice(0, Math.floor(line.length / 2)));
    injected("torn status line");
    const r = await pull("torn last line");
    expect(r.code).toBe(0);
    const warnings = (JSON.parse(r.stdout) as { sources: Array<{ warnings: Array<{ code: number }> }> }).sources[0]!.warnings;
    expect(warnings.some((w) => w.code === 87)).toBe(true);
    checkGoodKept(good, "torn last line");
  }, 60_000);

  test("the final record itself torn: the server's own final record stands in for the wrapper's", async () => {
    await newArchive("torn final");
    rewrite((lines) => [...lines.slice(0, -1), lines.at(-1)!.slice(0, 40)]);
    injected("torn status line");
    const r = await pull("torn final record");
    expect(r.code).toBe(0);
  }, 60_000);

  test("garbage, a record from the future, a final code that is not a number, an oversized file: each its own code", async () => {
    const cases: Array<[string, () => void, CodeName[]]> = [
      ["status all garbage", () => fs.writeFileSync(statusFile(), randomBytes(rand, 4096)), ["STATUS_INVALID"]],
      ["status garbage lines in between", () => rewrite((l) => l.flatMap((x) => [x, Buffer.from(randomBytes(rand, 60)).toString("latin1").replace(/\n/g, " ")])), []],
      ["status record from the future", () => rewrite((l) => [...l, JSON.stringify({ ...JSON.parse(l.at(-1)!), t: new Date(Date.now() + 86_400_000).toISOString() })]), ["STATUS_INVALID"]],
      ["status final code not a number", () => rewrite((l) => l.map((x) => x.replace(/"code":(4|9|30),/, '"code":"$1",'))), ["SERVER_BUSY", "STATUS_INVALID"]],
      ["status final code out of range", () => rewrite((l) => l.map((x) => x.replace(/"code":(4|9|30),/, '"code":1e400,'))), ["SERVER_BUSY", "STATUS_INVALID"]],
      ["status huge file", () => fs.truncateSync(statusFile(), 17 * 1024 * 1024), ["STATUS_INVALID"]],
      ["status empty", () => fs.writeFileSync(statusFile(), ""), ["STATUS_INVALID"]],
    ];
    await newArchive("status damage");
    const seen: Record<string, number> = {};
    // the status is judged before the copies held are looked at: no new archive is needed for these
    for (const [name, damage, codes] of cases) seen[name] = await damaged(`${name}: `, [statusFile()], damage, codes);
    console.log(`damaged server.status: ${JSON.stringify(seen)}`);
    expect(seen["status garbage lines in between"]).toBe(0);
  }, 120_000);

  test(`bytes flipped at random in server.status, ${scaled(4)} times: golden or a code of its own, never a bad copy`, async () => {
    const codes: Record<string, number> = {};
    const allowed: CodeName[] = ["STATUS_INVALID", "STATUS_STALE", "SERVER_FAILED", "SERVER_BUSY", "UNSAFE_NAME", "PULL_FAILED", "CHECKSUM_MISMATCH", "CLIENT_NO_SPACE"];
    for (let i = 0; i < scaled(4); i++) {
      await newArchive(`status flip ${i}`);
      const size = fs.statSync(statusFile()).size;
      // aimed at the last lines, where the final record and its archive fields are
      const code = await damaged(`status byte flips: ${i}`, [statusFile()], () => {
        for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) flipByte(statusFile(), size - 1 - Math.floor(rand() * Math.min(size, 1200)));
      }, allowed);
      codes[code] = (codes[code] ?? 0) + 1;
    }
    console.log(`random flips in server.status: exit codes ${JSON.stringify(codes)}`);
  }, 120_000);
});
