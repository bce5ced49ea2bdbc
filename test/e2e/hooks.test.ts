/**
 * `before` and `after` commands around real wrapper runs: what they see in their environment,
 * their output in the report, and what each way of failing does to the run. Every archive a
 * run makes here is extracted with GNU tar and compared with the source.
 */
import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot, startShoot } from "../helpers/cli.ts";
import { archivesIn, serverFixture, statusRecords, type ServerFixture } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";

const T = 60_000;
const TAR = requireTool("tar");
let fx: ServerFixture;
afterEach(() => fx?.cleanup());

const q = JSON.stringify;
const records = () => statusRecords(path.join(fx.backup, "server.status"));

async function wrapper() {
  return runShoot(["wrapper", "--config", fx.config], { timeoutMs: 45_000 });
}

/** The newest archive holds the source as it is: GNU tar extracts it, contents compared file by file. */
function checkNewestArchive(): string {
  const newest = archivesIn(fx.backup).at(-1)!;
  const out = fs.mkdtempSync(path.join(fx.root, "x-"));
  const r = Bun.spawnSync([TAR, "-xzf", path.join(fx.backup, newest), "-C", out]);
  expect({ tar: r.exitCode, err: r.stderr.toString() }).toEqual({ tar: 0, err: "" });
  for (const rel of fs.readdirSync(fx.src, { recursive: true }).map(String)) {
    const a = path.join(fx.src, rel);
    if (!fs.statSync(a).isFile()) continue;
    expect({ rel, same: fs.readFileSync(path.join(out, fx.src, rel)).equals(fs.readFileSync(a)) }).toEqual({ rel, same: true });
  }
  fs.rmSync(out, { recursive: true, force: true });
  return newest;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("before and after commands", () => {
  test("both succeed: they see the role, the run and (after) its code; their output is in the report and the status file", async () => {
    fx = serverFixture();
    const seen = path.join(fx.root, "seen");
    fx.setServer([
      `before = ["sh", "-c", ${q(`echo "before $SHOOT_ROLE $SHOOT_RUN" >> ${seen}; echo to-stdout; echo to-stderr >&2`)}]`,
      `after = ["sh", "-c", ${q(`echo "after $SHOOT_RUN $SHOOT_CODE $SHOOT_CODE_NAME" >> ${seen}; echo after-said-this`)}]`,
    ].join("\n"));
    const r = await wrapper();
    expect({ code: r.code, err: r.stderr }).toMatchObject({ code: 0 });
    const run = records().find((x) => x.name === "RUN_START")!.run;
    expect(fs.readFileSync(seen, "utf8")).toBe(`before server ${run}\nafter ${run} 30 FIRST_ARCHIVE\n`);
    expect(r.stdout).toContain("Hooks:\n");
    // standard output and error are two pipes: their lines come in either order
    expect(r.stdout).toMatch(/  before: \["sh","-c",.*\] OK, ended with exit status 0 after .*\n    \| to-std(out|err)\n    \| to-std(out|err)\n/);
    expect(r.stdout).toMatch(/  after: \["sh","-c",.*\] OK, ended with exit status 0 after .*\n    \| after-said-this\n/);
    const recs = records();
    const order = recs.map((x) => x.name);
    // before runs before the server starts; after after the final record
    expect(order.indexOf("HOOK_DONE")).toBeLessThan(order.indexOf("SERVER_STARTED"));
    expect(order.lastIndexOf("HOOK_DONE")).toBeGreaterThan(order.indexOf("FIRST_ARCHIVE"));
    expect(recs.filter((x) => x.name === "HOOK_DONE").map((x) => [...x.data.output].sort())).toEqual([["to-stderr", "to-stdout"], ["after-said-this"]]);
    checkNewestArchive();
  }, T);

  test("argv runs without a shell: words with $ and ; reach the program as they are", async () => {
    fx = serverFixture();
    const marker = path.join(fx.root, "should-not-exist");
    fx.setServer(`before = ["echo", "$SHOOT_RUN", ";", "touch", ${q(marker)}]`);
    const r = await wrapper();
    expect(r.code).toBe(0);
    expect(fs.existsSync(marker)).toBe(false);
    expect(records().find((x) => x.name === "HOOK_DONE")!.data.output).toEqual([`$SHOOT_RUN ; touch ${marker}`]);
    checkNewestArchive();
  }, T);

  test("a failing before: BEFORE_HOOK_FAILED, no archive, the previous one stays the newest; after still runs and sees 36", async () => {
    fx = serverFixture();
    expect((await wrapper()).code).toBe(0);
    const good = checkNewestArchive();
    fs.appendFileSync(path.join(fx.src, "etc/hosts"), "changed\n");
    const seen = path.join(fx.root, "after-saw");
    fx.setServer([
      `before = ["sh", "-c", "echo cannot stop the app >&2; exit 3"]`,
      `after = ["sh", "-c", ${q(`echo $SHOOT_CODE > ${seen}`)}]`,
    ].join("\n"));
    const r = await wrapper();
    expect(r.code).toBe(36);
    expect(archivesIn(fx.backup)).toEqual([good]);
    expect(fs.readFileSync(seen, "utf8")).toBe("36\n");
    expect(r.stdout).toContain("36 BEFORE_HOOK_FAILED");
    expect(r.stdout).toContain("cannot stop the app");
    const final = records().filter((x) => x.code === 36);
    expect(final).toHaveLength(1);
    expect(final[0]!.msg).toContain('before command ["sh","-c","echo cannot stop the app >&2; exit 3"] ended with exit status 3');
    expect(records().some((x) => x.name === "SERVER_STARTED")).toBe(false);
    // the backup host would see 36: not golden, nothing new to pull
    const status = await runShoot(["status", "--config", fx.config]);
    expect(status.code).not.toBe(0);
  }, T);

  test("a before that hangs past before_timeout is stopped (SIGTERM, then SIGKILL) and fails the run; one that is missing fails it too", async () => {
    fx = serverFixture();
    const pidFile = path.join(fx.root, "hook.pid");
    fx.setServer([`before = ["sh", "-c", ${q(`trap '' TERM; echo $$ > ${pidFile}; while :; do sleep 0.1; done`)}]`, 'before_timeout = "1s"', 'kill_grace = "1s"'].join("\n"));
    const started = Date.now();
    const r = await wrapper();
    expect(r.code).toBe(36);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(r.stdout).toContain("timed out after 1.0s and was stopped");
    expect(alive(Number(fs.readFileSync(pidFile, "utf8")))).toBe(false);
    expect(archivesIn(fx.backup)).toEqual([]);

    fx.setServer('before = ["/nonexistent/stop-the-app", "now"]');
    const missing = await wrapper();
    expect(missing.code).toBe(36);
    expect(missing.stdout).toContain("could not start: /nonexistent/stop-the-app is not installed");
    expect(archivesIn(fx.backup)).toEqual([]);
  }, T);

  test("SIGTERM while before runs: the command is stopped, the server never starts, INTERRUPTED; after still runs", async () => {
    fx = serverFixture();
    const pidFile = path.join(fx.root, "before.pid");
    const seen = path.join(fx.root, "after-saw");
    fx.setServer([`before = ["sh", "-c", ${q(`echo $$ > ${pidFile}; exec sleep 60`)}]`, `after = ["sh", "-c", ${q(`echo $SHOOT_CODE > ${seen}`)}]`].join("\n"));
    const w = startShoot(["wrapper", "--config", fx.config, "--quiet"]);
    const until = Date.now() + 20_000;
    while (!fs.existsSync(pidFile) || fs.readFileSync(pidFile, "utf8") === "") {
      if (Date.now() > until) throw new Error("the before command never started");
      await Bun.sleep(5);
    }
    const hookPid = Number(fs.readFileSync(pidFile, "utf8"));
    const sent = Date.now();
    w.kill("SIGTERM");
    expect(await w.exited).toBe(34);
    expect(Date.now() - sent).toBeLessThan(15_000);
    expect(alive(hookPid)).toBe(false);
    expect(records().some((x) => x.name === "SERVER_STARTED")).toBe(false);
    expect(fs.readFileSync(seen, "utf8")).toBe("34\n");
    expect(archivesIn(fx.backup)).toEqual([]);
  }, T);

  test('before_failure = "continue": the run goes on with a BEFORE_HOOK_IGNORED warning; a failing after is an AFTER_HOOK_FAILED warning, the code stands', async () => {
    fx = serverFixture();
    fx.setServer(['before = ["false"]', 'before_failure = "continue"', 'after = ["sh", "-c", "echo after broke >&2; exit 5"]'].join("\n"));
    const r = await wrapper();
    expect(r.code).toBe(0);
    const names = records().map((x) => x.name);
    expect(names).toContain("BEFORE_HOOK_IGNORED");
    expect(names).toContain("FIRST_ARCHIVE");
    expect(names.indexOf("AFTER_HOOK_FAILED")).toBeGreaterThan(names.lastIndexOf("FIRST_ARCHIVE"));
    expect(r.stdout).toContain("37 BEFORE_HOOK_IGNORED");
    expect(r.stdout).toContain("38 AFTER_HOOK_FAILED");
    expect(r.stdout).toContain("after broke");
    expect(r.stdout).toContain("the run's code 30 FIRST_ARCHIVE stands");
    checkNewestArchive();
    // the backup host still takes the archive: the last final record is golden
    const last = records().filter((x) => [4, 9, 30, 36].includes(x.code)).at(-1)!;
    expect(last.code).toBe(30);
  }, T);
});
