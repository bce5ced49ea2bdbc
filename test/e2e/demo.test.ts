/**
 * `shoot demo`: on a machine with nothing configured, a server backup and a client pull of
 * sample files in one directory, the copy verified and restored, a second round ending 9; over
 * a local path by default and over ssh (a throwaway sshd, stopped afterwards) with --ssh.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { ROOT, runShoot } from "../helpers/cli.ts";
import { md5sumCheck } from "../helpers/client.ts";
import { statusRecords, tempDir } from "../helpers/fixture.ts";
import { childPids } from "../helpers/sshd.ts";
import { requireTool } from "../helpers/tools.ts";
import { spawner } from "../../src/io/process.ts";

const T = 60_000;
let tmp = "";

beforeAll(() => {
  requireTool("rsync");
  tmp = tempDir("shoot-demo-test-");
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** With nothing configured: no $SHOOT_CONFIG, and a working directory of its own. */
const bare = { env: { SHOOT_CONFIG: undefined }, timeoutMs: 50_000 };

/** What every demo run must leave: golden codes in the status files, a copy that md5sum -c passes, the restored tree. */
function expectVerifiedCopy(dir: string, out: string): void {
  expect(out).toContain("30 FIRST_ARCHIVE");
  expect(out).toContain("9 UNCHANGED");
  expect(out).not.toContain("✘");
  const server = statusRecords(path.join(dir, "server/server.status"));
  const client = statusRecords(path.join(dir, "client/client.status"));
  expect(server.at(-1)!.code).toBe(9);
  expect(client.at(-1)!.code).toBe(9);
  const copies = md5sumCheck(path.join(dir, "client/demo"));
  expect(copies.length).toBe(1);
  expect(fs.existsSync(path.join(dir, "server", copies[0]!))).toBe(true);
  expect(out).toContain(path.join(dir, "client/demo", copies[0]!));
  expect(out).toContain(path.join(dir, "shoot.toml"));
  // the restore check left the sample files, byte for byte, under restored/
  const restored = path.join(dir, "restored", dir.replace(/^\/+/, ""), "sample");
  const bin = path.join(restored, "data/random.bin");
  expect(fs.readFileSync(bin).equals(fs.readFileSync(path.join(dir, "sample/data/random.bin")))).toBe(true);
  expect(fs.readlinkSync(path.join(restored, "first-page.txt"))).toBe("docs/chapter-01/page-001.txt");
  expect(fs.readdirSync(path.join(restored, "empty"))).toEqual([]);
  expect(fs.readdirSync(path.join(dir, "sample/docs/chapter-01")).length).toBeGreaterThanOrEqual(10);
}

describe("shoot demo", () => {
  test("pulls over a local path: exit 0, 30 then 9, the copy verified and restored", async () => {
    const dir = path.join(tmp, "local");
    const started = performance.now();
    const r = await runShoot(["demo", "--dir", dir], { ...bare, cwd: tmp });
    const seconds = (performance.now() - started) / 1000;
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });
    expectVerifiedCopy(dir, r.stdout);
    expect(r.stdout).toContain("over a local path");
    // a few seconds on an idle machine; the bound leaves room for a busy one
    expect(seconds).toBeLessThan(40);
  }, T);

  test("--ssh pulls through a throwaway sshd and the read-only forced command, then stops that sshd", async () => {
    requireTool("sshd");
    const dir = path.join(tmp, "ssh");
    const r = await runShoot(["demo", "--ssh", "--dir", dir], { ...bare, cwd: tmp });
    expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ code: 0, stderr: "" });
    expectVerifiedCopy(dir, r.stdout);
    const authorized = fs.readFileSync(path.join(dir, "ssh/authorized_keys"), "utf8");
    expect(authorized).toMatch(/^command="[^"]* serve --read-only [^"]*\/server",restrict ssh-ed25519 /);
    expect(fs.readFileSync(path.join(dir, "ssh/sshd.log"), "utf8")).toContain("Accepted publickey");
    const config = fs.readFileSync(path.join(dir, "shoot.toml"), "utf8");
    expect(config).toMatch(/^remote = "[^"]+@127\.0\.0\.1:/m);
    // the sshd the demo started, and every session it forked, is gone
    const pid = Number(/sshd\s+pid (\d+) listening/.exec(r.stdout)?.[1]);
    expect(pid).toBeGreaterThan(0);
    expect(r.stdout).toContain(`sshd stopped    pid ${pid}`);
    expect(fs.existsSync(`/proc/${pid}`)).toBe(false);
    expect(childPids(pid)).toEqual([]);
  }, T);

  test("from a clone: the printed next steps run as printed there, and no file of the clone changes (src/main.ts keeps its mode)", async () => {
    const git = requireTool("git");
    const repoState = () => ({
      status: Bun.spawnSync([git, "status", "--porcelain"], { cwd: ROOT, env: process.env }).stdout.toString(),
      mainMode: fs.statSync(path.join(ROOT, "src/main.ts")).mode,
    });
    const before = repoState();
    const dir = path.join(tmp, "from-clone");
    const r = await runShoot(["demo", "--dir", dir], { ...bare, cwd: ROOT });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(repoState()).toEqual(before);

    const lines = r.stdout.split("\n");
    const steps = lines.slice(lines.indexOf("Try next:") + 1).filter((l) => l.startsWith("  ")).map((l) => l.trim());
    expect(steps).toHaveLength(3);
    expect(steps[0]).toEndWith(`status --config ${path.join(dir, "shoot.toml")}`);
    // what a person would type in the clone: a path, not a `shoot` that is not on PATH there
    if (!process.env.SHOOT_BIN) expect(steps[0]).toStartWith("node_modules/.bin/bun src/main.ts status");
    const sh = requireTool("sh");
    const said: number[] = [];
    for (const step of steps) {
      const run = await spawner.run([sh, "-c", step], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1", SHOOT_CONFIG: undefined }, captureStdout: true, timeoutMs: 50_000 });
      said.push(run.exitCode ?? -1);
    }
    expect(said).toEqual([0, 0, 0]);
    expect(statusRecords(path.join(dir, "server/server.status")).at(-1)!.name).toBe("NEW_ARCHIVE");
    expect(repoState()).toEqual(before);
  }, T);

  test("refuses a directory that is not empty, and changes nothing in it", async () => {
    const dir = path.join(tmp, "full");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "keep.txt"), "mine\n");
    const r = await runShoot(["demo", "--dir", dir], { ...bare, cwd: tmp });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--dir ${dir} is not empty`);
    expect(fs.readdirSync(dir)).toEqual(["keep.txt"]);
  }, T);
});
