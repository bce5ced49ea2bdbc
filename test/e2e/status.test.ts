import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { runClient, writeClientConfig } from "../helpers/client.ts";
import { serverFixture, type ServerFixture } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";

const T = 60_000;
const DAY = 86_400_000;
let fx: ServerFixture | undefined;
afterEach(() => {
  fx?.cleanup();
  fx = undefined;
});

async function status(config: string, ...args: string[]): Promise<{ code: number; out: string; json?: any }> {
  const r = await runShoot(["status", "--config", config, ...args]);
  return { code: r.code, out: r.stdout + r.stderr, json: args.includes("--json") ? JSON.parse(r.stdout) : undefined };
}

/** Move a status file and every record in it `ms` into the past, as if the runs had stopped then. */
function age(file: string, ms: number): void {
  const shift = (iso: string) => new Date(Date.parse(iso) - ms).toISOString();
  const lines = fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => {
    const r = JSON.parse(l);
    r.t = shift(r.t);
    return JSON.stringify(r);
  });
  fs.writeFileSync(file, `${lines.join("\n")}\n`);
  const then = new Date(Date.now() - ms);
  fs.utimesSync(file, then, then);
}

describe("shoot status on a server", () => {
  test("healthy after a run: exit 0, JSON with the run, code and archive; Nagios OK", async () => {
    fx = serverFixture('[monitor]\nmax_age = "1d"');
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
    const text = await status(fx.config);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/server test \(.+\): OK\n {2}last run: +\S+ \S+ \(\S+ ago\) 30 FIRST_ARCHIVE: The first backup was made/);
    expect(text.out).toContain("last golden:");
    const j = (await status(fx.config, "--json")).json;
    expect(j.exitCode).toBe(0);
    expect(j.roles[0].state).toBe("ok");
    expect(j.roles[0].lastRun.code).toBe(30);
    expect(j.roles[0].archive.file).toMatch(/^test-\d{8}-\d{6}\.tar\.gz$/);
    const nagios = await status(fx.config, "--nagios");
    expect(nagios.code).toBe(0);
    expect(nagios.out).toMatch(/^SHOOT OK - server test: OK, last run 30 FIRST_ARCHIVE [\d.]+m?s ago \| 'server_age'=\d+s;;86400;0 'server_archive'=\d+B 'server_free'=\d+B\n$/);
  }, T);

  test("stale when the last run is older than max_age: exit 44 (STATUS_STALE), Nagios CRITICAL", async () => {
    fx = serverFixture('[monitor]\nmax_age = "1d"');
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
    age(path.join(fx.backup, "server.status"), 2 * DAY);
    const r = await status(fx.config);
    expect(r.code).toBe(44);
    expect(r.out).toContain("STALE");
    expect(r.out).toContain("not healthy: exit 44 STATUS_STALE");
    const nagios = await status(fx.config, "--nagios");
    expect(nagios.code).toBe(2);
    expect(nagios.out).toStartWith("SHOOT CRITICAL - server test: STALE, last run 30 FIRST_ARCHIVE 2d0h ago (max_age 24h0m)");
  }, T);

  test("failed when the last run failed: exit with its code, the last golden run still shown", async () => {
    fx = serverFixture();
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
    fs.rmSync(fx.src, { recursive: true });
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(20);
    const r = await status(fx.config, "--json");
    expect(r.code).toBe(20);
    expect(r.json.roles[0].state).toBe("failed");
    expect(r.json.roles[0].lastRun.name).toBe("SOURCE_MISSING");
    expect(r.json.roles[0].lastGolden.from).toBe("status");
    const nagios = await status(fx.config, "--nagios");
    expect(nagios.code).toBe(2);
    expect(nagios.out).toStartWith("SHOOT CRITICAL - server test: FAILED, last run 20 SOURCE_MISSING");
  }, T);

  test("UNCHANGED for longer than unchanged_warn: exit 0 with a warning, Nagios WARNING", async () => {
    fx = serverFixture('[monitor]\nunchanged_warn = "1s"');
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
    await Bun.sleep(1100);
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
    const r = await status(fx.config);
    expect(r.code).toBe(0);
    expect(r.out).toContain("warning 86 UNCHANGED_TOO_LONG: the server test has answered 9 UNCHANGED since");
    expect(r.out).toContain("healthy, with warnings");
    const nagios = await status(fx.config, "--nagios");
    expect(nagios.code).toBe(1);
    expect(nagios.out).toStartWith("SHOOT WARNING - ");
  }, T);

  test("a configuration that cannot be read: its own code; with --nagios UNKNOWN (3)", async () => {
    const missing = "/nonexistent/shoot.toml";
    expect((await status(missing)).code).toBe(10);
    const nagios = await status(missing, "--nagios");
    expect(nagios.code).toBe(3);
    expect(nagios.out).toStartWith("SHOOT UNKNOWN - ");
  }, T);
});

describe("shoot status on a backup host", () => {
  test("each source: healthy after a pull, stale when the pulls stopped, failed with the code when its server failed", async () => {
    requireTool("rsync");
    fx = serverFixture();
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
    const dest = path.join(fx.root, "copies");
    const config = writeClientConfig(path.join(fx.root, "client.toml"), { dest, sources: [{ name: "web1", remote: fx.backup }] });
    fs.appendFileSync(config, '\n[monitor]\nmax_age = "1d"\n');
    expect((await runClient(config, dest)).code).toBe(0);
    let r = await status(config, "--json");
    expect(r.code).toBe(0);
    expect(r.json.roles[0].role).toBe("client");
    expect(r.json.roles[0].sources[0]).toMatchObject({ name: "web1", state: "ok", copies: 1, last: { code: 30 } });

    // the client stopped running two days ago
    age(path.join(dest, "client.status"), 2 * DAY);
    r = await status(config, "--json");
    expect(r.code).toBe(44);
    expect(r.json.roles[0].sources[0].state).toBe("stale");
    expect((await status(config, "--nagios")).out).toStartWith("SHOOT CRITICAL - client: STALE, last run 30 FIRST_ARCHIVE 2d0h ago");

    // the server fails; the client pulls nothing and says why
    fs.rmSync(fx.src, { recursive: true });
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(20);
    expect((await runClient(config, dest)).code).toBe(45);
    r = await status(config);
    expect(r.code).toBe(45);
    expect(r.out).toContain("web1: FAILED 45 SERVER_FAILED");
    expect((await status(config, "--nagios")).code).toBe(2);
  }, T);
});
