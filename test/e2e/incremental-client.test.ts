/**
 * Incremental archives on the backup host: a server making a chain (real runs of `shoot
 * server`), and two clients pulling it over a real sshd, one every run and one every other run
 * (so it must pull the links it missed), one checking copies deep and one by checksum alone.
 * After every client run each restore point the client keeps is whole there, restores with
 * `shoot restore` and with GNU tar alone to the tree the server saw when it made it, and
 * retention has removed nothing a kept point needs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { runClient, sshSource, writeClientConfig } from "../helpers/client.ts";
import { serverFixture, tempDir, type ServerFixture } from "../helpers/fixture.ts";
import { seeded } from "../helpers/random.ts";
import { startSshd, type SshServer } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { snapshotDifferences, snapshotTree, type TreeEntry } from "../helpers/tree-compare.ts";
import { changeTree, seedChangeTree } from "../helpers/tree-changes.ts";
import { code } from "../../src/core/common/codes.ts";
import { chainOf, levelOf } from "../../src/core/state/chain.ts";
import { isArchiveName, sortArchives } from "../../src/core/state/naming.ts";
import { spawner } from "../../src/io/process.ts";

const RUNS = 7;
const TAR = requireTool("tar");
let sshd: SshServer;
let fx: ServerFixture;
let root: string;

beforeAll(async () => {
  requireTool("rsync");
  sshd = await startSshd();
  root = tempDir("shoot-incremental-client-");
  fs.chmodSync(root, 0o755);
  fx = serverFixture('incremental = "chain"\nfull_every = 4\nkeep = 3\ncompression = "zstd"', {});
  fs.chmodSync(fx.root, 0o755);
}, 30_000);
afterAll(async () => {
  await sshd?.stop();
  fx?.cleanup();
  if (root) fs.rmSync(root, { recursive: true, force: true });
}, 30_000);

const compare = (snap: Map<string, TreeEntry>, dir: string) =>
  fs.existsSync(dir) ? snapshotDifferences(snap, snapshotTree(dir), { owners: process.getuid?.() === 0, root: true, mtimeResolutionNs: 1000 }) : [`nothing restored at ${dir}`];

/** Every problem with the copies in `dir`: a kept point whose chain is not all there, or that restores wrong either way. */
/** `all`: restore every kept point, not only the newest. */
async function checkCopies(dir: string, config: string, snapshots: Map<string, Map<string, TreeEntry>>, label: string, all: boolean): Promise<string[]> {
  const copies = sortArchives(fs.readdirSync(dir).filter((n) => isArchiveName(n) && fs.existsSync(path.join(dir, `${n}.md5`))));
  const problems: string[] = [];
  for (const point of copies) {
    const c = chainOf(point, copies);
    if (!c.ok) {
      problems.push(`${label}: ${point}: ${c.missing}`);
      continue;
    }
    if (!all && point !== copies.at(-1)) continue;
    const snap = snapshots.get(point)!;
    const byShoot = path.join(root, `${label}-shoot-${point}`);
    const r = await runShoot(["restore", "--config", config, point, "--to", byShoot, "--quiet"]);
    if (r.code !== 0) problems.push(`${label}: shoot restore ${point}: ${r.code} ${r.stdout}${r.stderr}`);
    problems.push(...compare(snap, path.join(byShoot, fx.src)).map((d) => `${label}: shoot restore ${point}: ${d}`));
    const byTar = path.join(root, `${label}-tar-${point}`);
    fs.mkdirSync(byTar);
    for (const a of c.chain) {
      const t = await spawner.run([TAR, "-x", "--listed-incremental=/dev/null", "-f", path.join(dir, a), "-C", byTar], { timeoutMs: 60_000 });
      if (t.exitCode !== 0) problems.push(`${label}: GNU tar ${a}: ${t.stderrTail.join(" ")}`);
    }
    problems.push(...compare(snap, path.join(byTar, fx.src)).map((d) => `${label}: GNU tar ${point}: ${d}`));
    fs.rmSync(byShoot, { recursive: true, force: true });
    fs.rmSync(byTar, { recursive: true, force: true });
  }
  return problems;
}

describe("a chain pulled by clients", () => {
  test(`${RUNS} server runs; a client after each and one after every other, deep and checksum: every kept point restores on the backup host`, async () => {
    const rand = seeded(4242);
    seedChangeTree(fx.src, rand);
    const every = { dest: path.join(root, "every"), config: path.join(root, "every.toml") };
    const other = { dest: path.join(root, "other"), config: path.join(root, "other.toml") };
    writeClientConfig(every.config, { dest: every.dest, keep: 2, known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "web", fx.backup)] });
    writeClientConfig(other.config, { dest: other.dest, keep: 2, verify: "checksum", known_hosts: sshd.knownHosts, sources: [sshSource(sshd, "web", fx.backup)] });
    const snapshots = new Map<string, Map<string, TreeEntry>>();
    const levels: number[] = [];
    let linksPulled = 0;
    for (let i = 0; i < RUNS; i++) {
      if (i > 0) changeTree(fx.src, rand, 1 + Math.floor(rand() * 5));
      const s = await runShoot(["server", "--config", fx.config, "--quiet"]);
      expect({ run: i, code: s.code, err: s.stderr }).toEqual({ run: i, code: 0, err: "" });
      const newest = sortArchives(fs.readdirSync(fx.backup).filter((n) => isArchiveName(n))).at(-1)!;
      if (!snapshots.has(newest)) levels.push(levelOf(newest)!);
      snapshots.set(newest, snapshotTree(fx.src));
      const runs = i % 2 === 1 || i === RUNS - 1 ? [every, other] : [every];
      for (const c of runs) {
        const r = await runClient(c.config, c.dest);
        const golden = [code("FIRST_ARCHIVE"), code("NEW_ARCHIVE"), code("UNCHANGED")].includes(r.codes.web!);
        expect({ run: i, client: c.dest, golden, msg: r.outcome.sources[0]?.message }).toMatchObject({ run: i, client: c.dest, golden: true });
        linksPulled += r.records.filter((x) => x.name === "PULLED" && x.archive?.file !== newest).length;
        // after every run the newest point restores and every kept one is whole; after the last, all restore
        expect(await checkCopies(path.join(c.dest, "web"), c.config, snapshots, `run ${i} ${path.basename(c.dest)}`, i === RUNS - 1)).toEqual([]);
      }
    }
    console.log(`client chain: server levels ${levels.join(" ")}; ${linksPulled} earlier archive(s) pulled as links of a chain`);
    expect(Math.max(...levels)).toBe(3);
    expect(linksPulled).toBeGreaterThan(0);
    // the client that checks by checksum alone keeps each copy's list too: chains are put together from them
    for (const n of fs.readdirSync(path.join(other.dest, "web")).filter((f) => isArchiveName(f))) expect(fs.existsSync(path.join(other.dest, "web", `${n}.list`))).toBe(true);
  }, 300_000);
});
