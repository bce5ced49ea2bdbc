/**
 * Every archive the benchmark makes is extracted with GNU tar and compared with its source, at
 * the end of the section that made it (a later section changes the tree) and, for any not yet
 * checked, at the end of the run: a speed measured on an archive that does not restore is
 * worth nothing; one that does not restore fails the benchmark.
 * Each measured run reports the MD5 of what it wrote; the last archive of each kind is kept,
 * every run of that kind must have written the same bytes (the writer is deterministic), and
 * the kept one is extracted and compared file by file (test/helpers/tree-compare.ts).
 */
import fs from "node:fs";
import path from "node:path";
import { spawner, describeResult } from "../src/io/process.ts";
import { treeDifferences } from "../test/helpers/tree-compare.ts";
import type { Row } from "./lib.ts";
import { removeTree } from "./shoot.ts";

interface Kind {
  label: string;
  source: string;
  md5s: Set<string>;
  kept?: string;
  /** Server runs write from their file list, which keeps mtimes to the microsecond. */
  mtimeResolutionNs: number;
}

export class RestoreChecks {
  private readonly kinds = new Map<string, Kind>();

  constructor(private readonly dir: string) {}

  /** A measured run of `label` wrote an archive of `source` with this MD5. */
  wrote(label: string, source: string, md5: string, opts: { fromList?: boolean } = {}): void {
    let k = this.kinds.get(label);
    if (!k) {
      k = { label, source, md5s: new Set(), mtimeResolutionNs: opts.fromList ? 1000 : 1 };
      this.kinds.set(label, k);
    }
    k.md5s.add(md5);
  }

  /**
   * Keep the last archive of `label` for the end: moved out of the way of the runs that follow,
   * or copied where a later section still needs it where it is.
   */
  keep(label: string, archive: string, opts: { copy?: boolean } = {}): void {
    const k = this.kinds.get(label);
    if (!k) throw new Error(`bench: no run of ${label} reported an archive`);
    fs.mkdirSync(this.dir, { recursive: true });
    k.kept = path.join(this.dir, `${label.replace(/[^a-z0-9]+/gi, "-")}-${path.basename(archive)}`);
    if (opts.copy) fs.copyFileSync(archive, k.kept);
    else fs.renameSync(archive, k.kept);
  }

  /** Check `label` now, while its source is as it was written (a day-2 tree is undone after). */
  async checkNow(label: string, rows: Row[]): Promise<void> {
    const k = this.kinds.get(label);
    if (!k) throw new Error(`bench: no run of ${label} reported an archive`);
    await this.report(k, rows);
  }

  /** Extract every kept archive not yet checked with GNU tar and compare it with its source: one row each. */
  async checkAll(rows: Row[]): Promise<boolean> {
    for (const k of this.kinds.values()) if (!this.checked.has(k.label)) await this.report(k, rows);
    removeTree(this.dir);
    return this.failed === 0;
  }

  private readonly checked = new Set<string>();
  private failed = 0;

  private async report(k: Kind, rows: Row[]): Promise<void> {
    console.error(`restore check: ${k.label}: extracting with GNU tar and comparing with ${k.source} ...`);
    const problem = await this.checkOne(k);
    this.checked.add(k.label);
    if (problem !== undefined) this.failed++;
    rows.push({
      name: `restore check: ${k.label}`,
      note: problem ?? `${k.md5s.size === 1 ? "every run wrote the same bytes; " : ""}GNU tar restored them: every file, link, mode and mtime equals the source`,
      target: "restores exactly",
      verdict: problem === undefined ? "pass" : "FAIL",
    });
  }

  private async checkOne(k: Kind): Promise<string | undefined> {
    if (!k.kept) return "no archive was kept to check";
    if (k.md5s.size !== 1) return `the runs wrote ${k.md5s.size} different archives (MD5 ${[...k.md5s].join(", ")})`;
    const md5 = new Bun.CryptoHasher("md5");
    const fd = fs.openSync(k.kept, "r");
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) md5.update(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
    const kept = md5.digest("hex");
    if (!k.md5s.has(kept)) return `the archive kept has MD5 ${kept}, the runs reported ${[...k.md5s][0]}`;
    const to = path.join(this.dir, "x");
    removeTree(to);
    fs.mkdirSync(to, { recursive: true });
    try {
      const r = await spawner.run(["tar", "-x", "-p", "--numeric-owner", "-f", k.kept, "-C", to], { timeoutMs: 30 * 60_000, stderrLines: 10 });
      if (r.exitCode !== 0 || r.stderrTail.length > 0) return `GNU tar could not extract it: ${describeResult(r, 5)}`;
      const diffs = treeDifferences(k.source, path.join(to, k.source), { owners: process.getuid?.() === 0, mtimeResolutionNs: k.mtimeResolutionNs });
      return diffs.length === 0 ? undefined : `${diffs.length} differences from the source: ${diffs.slice(0, 3).join("; ")}`;
    } finally {
      removeTree(to);
      fs.rmSync(k.kept, { force: true });
    }
  }
}
