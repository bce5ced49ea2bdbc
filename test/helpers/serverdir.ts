/**
 * Backup directories as a server leaves them, made by hand for client tests that need a
 * server in a state a real run would not produce on demand (two days old, failed, lying about
 * its archive): a tar archive of given bytes, its `md5sum` file and file list, and a
 * server.status written with the real StatusWriter.
 */
import fs from "node:fs";
import path from "node:path";
import { spawner } from "../../src/io/process.ts";
import { CHECKSUM_SUFFIX, LIST_SUFFIX } from "../../src/core/state/naming.ts";
import { BLOCK, RECORD, encodeHeader, paddingAfter } from "../../src/core/archive/tar.ts";
import { LIST_FORMAT, LIST_VERSION } from "../../src/core/scan/scan.ts";
import { SERVER_STATUS, StatusWriter, type ArchiveInfo } from "../../src/core/state/status.ts";
import type { CodeName } from "../../src/core/common/codes.ts";
import { writeListText } from "./lists.ts";
import { requireTool } from "./tools.ts";

export interface FakeRun {
  /** Final record's code name; "none" leaves the run unfinished (mid-run). */
  final: CodeName | "none";
  msg?: string;
  /** Age of every record and of the file's mtime, in ms. */
  ageMs?: number;
  /** Overrides for the final record's archive field (untrusted input tests). */
  archive?: Partial<Record<keyof ArchiveInfo, unknown>>;
}

/**
 * Write archive `name` in `dir`: a plain tar stream holding `bytes` as one file ("payload"),
 * with a real `md5sum` line and the server's file list beside it, so that a client's deep
 * verification reads it as it would a server's. (Readers go by content, not by name: a
 * `.tar.gz` name holding plain tar is read as plain tar.) The list is compressed as a server
 * writes it, or with `plainList` plain text, as servers before compressed lists wrote it.
 */
export async function writeArchive(dir: string, name: string, bytes: Uint8Array, plainList = false): Promise<ArchiveInfo> {
  fs.mkdirSync(dir, { recursive: true });
  const tar = tarOf(bytes);
  fs.writeFileSync(path.join(dir, name), tar);
  const r = await spawner.run([requireTool("md5sum"), "--", name], { cwd: dir, captureStdout: true, timeoutMs: 30_000 });
  if (r.exitCode !== 0) throw new Error(`md5sum failed: ${r.stderrTail.join(" ")}`);
  fs.writeFileSync(path.join(dir, `${name}${CHECKSUM_SUFFIX}`), r.stdout);
  const md5 = r.stdout.slice(0, 32);
  const sha256 = new Bun.CryptoHasher("sha256").update(tar).digest("hex");
  const header = { format: LIST_FORMAT, v: LIST_VERSION, archive: name, entries: 1, bytes: bytes.length, size: tar.length, md5, sha256 };
  const line = `["${PAYLOAD}","file",420,0,0,${bytes.length},1700000000000000,1700000000000000,1,null]`;
  writeListText(path.join(dir, `${name}${LIST_SUFFIX}`), `${JSON.stringify(header)}\n${line}\n`, plainList);
  return { file: name, size: tar.length, md5, sha256 };
}

const PAYLOAD = "payload";

/** A tar stream holding `bytes` as the one file PAYLOAD, ended and padded as GNU tar pads. */
export function tarOf(bytes: Uint8Array): Uint8Array {
  const header = encodeHeader({ name: PAYLOAD, type: "file", mode: 0o644, uid: 0, gid: 0, size: bytes.length, mtimeNs: 1_700_000_000_000_000_000n });
  const body = header.length + bytes.length + paddingAfter(bytes.length);
  const total = body + 2 * BLOCK + ((RECORD - ((body + 2 * BLOCK) % RECORD)) % RECORD);
  const out = new Uint8Array(total);
  out.set(header, 0);
  out.set(bytes, header.length);
  return out;
}

/** Bytes that do not compress and differ per seed (an archive's content does not matter to the client). */
export function randomBytes(size: number): Uint8Array {
  const b = new Uint8Array(size);
  crypto.getRandomValues(b.subarray(0, Math.min(size, 65536)));
  for (let off = 65536; off < size; off += 65536) crypto.getRandomValues(b.subarray(off, Math.min(size, off + 65536)));
  return b;
}

/** Write server.status for one run ending as `run` says, about `archive`. */
export function writeServerStatus(dir: string, archive: ArchiveInfo | undefined, run: FakeRun): void {
  const when = new Date(Date.now() - (run.ageMs ?? 0));
  const file = path.join(dir, SERVER_STATUS);
  fs.rmSync(file, { force: true });
  const w = new StatusWriter(file, "server", "test-run", { now: () => when });
  w.write("RUN_START", "test server run", { host: "testhost", format: "shoot-status" });
  w.write("STEP", "scanning", { step: "scan" });
  if (run.final !== "none") {
    const a = run.archive ? { ...archive, ...run.archive } : archive;
    w.write(run.final, run.msg ?? `ended with ${run.final}`, a ? { archive: a as ArchiveInfo } : {});
  }
  w.close();
  fs.utimesSync(file, when, when);
}

/**
 * The tree an archive made by writeArchive holds, written under `root` as GNU tar extracts it
 * (the one file, its mode and time), for treeDifferences.
 */
export function payloadTree(root: string, bytes: Uint8Array): void {
  fs.mkdirSync(root, { recursive: true });
  const file = path.join(root, PAYLOAD);
  fs.writeFileSync(file, bytes);
  fs.chmodSync(file, 0o644);
  fs.utimesSync(file, 1_700_000_000, 1_700_000_000);
}
