/**
 * A restore stopped part way (SIGKILL, SIGINT) and run again into the same directory: the note
 * it leaves there names it, a run without --force refuses and says what to do, a run with
 * --force finishes it and removes the note, and the tree restored then equals the source. GNU
 * tar restores the same archive to the same tree. A deep verify stopped by SIGINT ends
 * INTERRUPTED too, not as an internal error.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot, startShoot } from "../helpers/cli.ts";
import { serverFixture, writeTree, type ServerFixture } from "../helpers/fixture.ts";
import { boundedExit, faultFile, injected, waitFor } from "../helpers/faults.ts";
import { randomBytes, seeded } from "../helpers/random.ts";
import { requireTool } from "../helpers/tools.ts";
import { snapshotDifferences, snapshotTree } from "../helpers/tree-compare.ts";
import { code } from "../../src/core/common/codes.ts";
import { UNFINISHED_NOTE } from "../../src/core/restore/unfinished.ts";
import { isArchiveName } from "../../src/core/state/naming.ts";
import { spawner } from "../../src/io/process.ts";

faultFile(import.meta.path);

/** Small files enough that the write pass lasts well past the first of them. */
const FILES = 8000;
const TAR = requireTool("tar");
const same = { owners: process.getuid?.() === 0, root: true, mtimeResolutionNs: 1000 };

let fx: ServerFixture;
let archive = "";
afterAll(() => fx?.cleanup());

async function archiveOnce(): Promise<string> {
  if (archive) return archive;
  fx = serverFixture('compression = "none"', {});
  const rand = seeded(4242);
  const tree: Record<string, string | Uint8Array> = {};
  for (let i = 0; i < FILES; i++) tree[`d${i % 4}/f${String(i).padStart(5, "0")}`] = `file ${i}\n`.repeat(1 + (i % 50));
  // large enough that a deep verify is still reading when it is seen to have the archive open
  for (let i = 0; i < 4; i++) tree[`big/b${i}.bin`] = randomBytes(rand, 24 * 1024 * 1024);
  writeTree(fx.src, tree);
  const r = await runShoot(["server", "--config", fx.config, "--quiet"]);
  expect({ code: r.code, out: r.stdout + r.stderr }).toEqual({ code: 0, out: "" });
  archive = fs.readdirSync(fx.backup).find((n) => isArchiveName(n))!;
  // the archive itself restores by GNU tar to the tree
  const byTar = path.join(fx.root, "by-tar");
  fs.mkdirSync(byTar);
  const t = await spawner.run([TAR, "-xpf", path.join(fx.backup, archive), "-C", byTar], { timeoutMs: 60_000 });
  expect(t.exitCode).toBe(0);
  expect(snapshotDifferences(snapshotTree(fx.src), snapshotTree(path.join(byTar, fx.src)), same)).toEqual([]);
  fs.rmSync(byTar, { recursive: true });
  return archive;
}

/** Start a restore into `to` and stop it with `signal` once it has made its note and some files. */
async function stoppedPartWay(to: string, signal: NodeJS.Signals): Promise<{ code: number; stderr: string; pid: number }> {
  const name = await archiveOnce();
  const p = startShoot(["restore", "--config", fx.config, name, "--to", to]);
  // the note comes before the first file; the tenth file of the first directory means writing is well under way
  const early = path.join(to, fx.src, "d0", "f00040");
  const seen = await waitFor(() => (fs.existsSync(path.join(to, UNFINISHED_NOTE)) && fs.existsSync(early) ? true : undefined), 30_000, 1);
  p.kill(signal);
  const exit = await boundedExit(p, `restore stopped by ${signal}`);
  const stderr = await new Response(p.stderr).text();
  if (!seen) throw new Error(`the restore was not seen writing (exit ${exit}): ${stderr}`);
  injected(`${signal} restore`);
  return { code: exit, stderr, pid: p.pid };
}

describe("a restore stopped part way, run again into the same directory", () => {
  test("SIGKILL: the note names it; without --force a refusal that says what to do; --force finishes it", async () => {
    await archiveOnce();
    const to = path.join(fx.root, "killed");
    const stopped = await stoppedPartWay(to, "SIGKILL");
    expect(stopped.code).not.toBe(0);
    const note = JSON.parse(fs.readFileSync(path.join(to, UNFINISHED_NOTE), "utf8"));
    expect(note).toMatchObject({ archive, pid: stopped.pid });

    const again = await runShoot(["restore", "--config", fx.config, archive, "--to", to]);
    expect(again.code).toBe(code("RESTORE_EXISTS"));
    expect(again.stdout).toContain(`a restore of ${archive} into ${fs.realpathSync(to)} begun ${note.started} (process ${stopped.pid}`);
    expect(again.stdout).toContain("did not finish: run the same command again with --force to finish it");
    expect(fs.existsSync(path.join(to, UNFINISHED_NOTE))).toBe(true);

    const forced = await runShoot(["restore", "--config", fx.config, archive, "--to", to, "--force"]);
    expect({ code: forced.code, err: forced.stderr }).toEqual({ code: 0, err: "" });
    expect(forced.stdout).toContain(`it finished the restore of ${archive} begun ${note.started}, which had stopped part way`);
    expect(fs.readdirSync(to)).toEqual([fx.src.split("/")[1]!]);
    expect(snapshotDifferences(snapshotTree(fx.src), snapshotTree(path.join(to, fx.src)), same)).toEqual([]);
  }, 120_000);

  test("SIGINT: INTERRUPTED, what was written stays and the note says so; --force finishes it", async () => {
    await archiveOnce();
    const to = path.join(fx.root, "interrupted");
    const stopped = await stoppedPartWay(to, "SIGINT");
    expect(stopped.code).toBe(code("INTERRUPTED"));
    expect(stopped.stderr).toContain("interrupted by SIGINT part way: what was written stays");
    expect(stopped.stderr).toContain(`${path.join(fs.realpathSync(to), UNFINISHED_NOTE)} says so`);
    expect(fs.existsSync(path.join(to, UNFINISHED_NOTE))).toBe(true);

    const forced = await runShoot(["restore", "--config", fx.config, archive, "--to", to, "--force", "--quiet"]);
    expect({ code: forced.code, out: forced.stdout + forced.stderr }).toEqual({ code: 0, out: "" });
    expect(fs.existsSync(path.join(to, UNFINISHED_NOTE))).toBe(false);
    expect(snapshotDifferences(snapshotTree(fx.src), snapshotTree(path.join(to, fx.src)), same)).toEqual([]);
  }, 120_000);

  test("verify --deep stopped by SIGINT: INTERRUPTED, not an internal error", async () => {
    const name = await archiveOnce();
    const file = path.join(fx.backup, name);
    const p = startShoot(["verify", "--deep", "--config", fx.config, name]);
    const reading = () => {
      try {
        return fs.readdirSync(`/proc/${p.pid}/fd`).some((fd) => fs.readlinkSync(`/proc/${p.pid}/fd/${fd}`) === file) || undefined;
      } catch {
        return undefined; // the process or one of its descriptors went meanwhile
      }
    };
    const seen = await waitFor(reading, 30_000, 1);
    p.kill("SIGINT");
    const exit = await boundedExit(p, "verify stopped by SIGINT");
    const stderr = await new Response(p.stderr).text();
    if (!seen) throw new Error(`verify was not seen reading ${name} (exit ${exit}): ${stderr}`);
    injected("SIGINT verify");
    expect({ exit, stderr: stderr.trim() }).toEqual({ exit: code("INTERRUPTED"), stderr: expect.stringContaining("shoot verify: interrupted by SIGINT") });
    expect(stderr).not.toContain("internal error");
  }, 120_000);
});
