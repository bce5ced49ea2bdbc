/**
 * Write one archive of a directory tree and print a JSON line: the result, the warnings, the
 * wall time and the peak RSS of this process. Run as a child so its memory is measured alone:
 *   bun bench/archive-one.ts --src DIR --out FILE [--compression gzip|zstd|none] [--level N] [--fsync] [--no-prove]
 * (no fsync by default: GNU tar, the reference, does not either; --no-prove only to measure what
 * the proof that the archive restores costs)
 */
import fs from "node:fs";
import { parseArgs } from "node:util";
import { writeArchive, type ArchiveWarning } from "../src/core/archive/writer.ts";
import type { Compression } from "../src/core/common/config.ts";
import { walkTree } from "./walk.ts";

/** Peak resident set size of this process in bytes (Linux VmHWM). */
export function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

const { values } = parseArgs({
  options: {
    src: { type: "string" },
    out: { type: "string" },
    compression: { type: "string", default: "gzip" },
    level: { type: "string" },
    fsync: { type: "boolean", default: false },
    "no-prove": { type: "boolean", default: false },
  },
});
if (!values.src || !values.out) throw new Error("usage: archive-one.ts --src DIR --out FILE [--compression gzip|zstd|none] [--level N]");
const compression = values.compression as Compression;
if (!["gzip", "zstd", "none"].includes(compression)) throw new Error(`unknown compression ${compression}`);
const level = values.level ? Number(values.level) : compression === "zstd" ? 3 : 6;

const warnings: ArchiveWarning[] = [];
const began = performance.now();
const fd = fs.openSync(values.out, "w+", 0o600);
const prove = !values["no-prove"];
const result = await writeArchive(walkTree(values.src), fd, { compression, level, flushBehind: values.fsync, prove, onWarning: (w) => warnings.push(w) });
if (values.fsync) fs.fsyncSync(fd);
fs.closeSync(fd);
const wallMs = performance.now() - began;
// the piece hashes are BigInts, which JSON does not hold; their number says enough
const { pieces, ...written } = result;
console.log(JSON.stringify({ result: { ...written, pieces: pieces?.length }, warnings, wallMs, peakRss: peakRss() }));
