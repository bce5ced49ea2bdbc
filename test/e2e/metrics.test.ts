/**
 * The metrics file after real runs, read back with a Prometheus text-format parser
 * (parse-prometheus-text-format). That parser is lenient (it takes a malformed value as a
 * string rather than failing), so the test also checks every value is a number and that no
 * sample line was lost.
 */
import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { runClient, writeClientConfig } from "../helpers/client.ts";
import { archivesIn, serverFixture, type ServerFixture } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";

interface PromSample {
  value: string;
  labels?: Record<string, string>;
}
interface PromFamily {
  name: string;
  help: string;
  type: string;
  metrics: PromSample[];
}
// the package ships no type declarations
const parsePrometheus = require("parse-prometheus-text-format") as (text: string) => PromFamily[];

const T = 60_000;
let fx: ServerFixture | undefined;
afterEach(() => {
  fx?.cleanup();
  fx = undefined;
});

/** Parse the file; every sample line must come back, every value must be a number. */
function readMetrics(file: string): Map<string, PromSample[]> {
  const text = fs.readFileSync(file, "utf8");
  const families = parsePrometheus(text);
  const sampleLines = text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
  expect(families.reduce((n, f) => n + f.metrics.length, 0)).toBe(sampleLines.length);
  const out = new Map<string, PromSample[]>();
  for (const f of families) {
    expect(f.name).toMatch(/^shoot_[a-z_]+$/);
    expect(f.type).toBe("GAUGE");
    expect(f.help.length).toBeGreaterThan(10);
    for (const m of f.metrics) expect(Number.isFinite(Number(m.value)) && m.value.trim() !== "").toBe(true);
    out.set(f.name, f.metrics);
  }
  return out;
}

function value(m: Map<string, PromSample[]>, name: string, labels: Record<string, string>): number | undefined {
  const s = m.get(name)?.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  return s ? Number(s.value) : undefined;
}

describe("metrics file", () => {
  test("written after a wrapper run, parsed by a Prometheus parser, replaced atomically by the next", async () => {
    fx = serverFixture();
    const metricsDir = path.join(fx.root, "textfile");
    fs.mkdirSync(metricsDir);
    const file = path.join(metricsDir, "shoot.prom");
    fx.setServer(`[monitor]\nmetrics_file = ${JSON.stringify(file)}`);
    const t0 = Date.now() / 1000;
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
    const first = readMetrics(file);
    const server = { role: "server", name: "test" };
    const archive = archivesIn(fx.backup).at(-1)!;
    expect(value(first, "shoot_last_run_code", server)).toBe(30);
    expect(value(first, "shoot_last_run_success", server)).toBe(1);
    expect(value(first, "shoot_healthy", server)).toBe(1);
    expect(value(first, "shoot_archive_size_bytes", server)).toBe(fs.statSync(path.join(fx.backup, archive)).size);
    expect(value(first, "shoot_last_success_timestamp_seconds", server)).toBeGreaterThanOrEqual(Math.floor(t0));
    expect(value(first, "shoot_last_run_duration_seconds", server)).toBeGreaterThan(0);
    expect(value(first, "shoot_free_bytes", server)).toBeGreaterThan(0);
    expect(fs.statSync(file).mode & 0o777).toBe(0o644);
    const inode = fs.statSync(file).ino;

    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
    const second = readMetrics(file);
    expect(value(second, "shoot_last_run_code", server)).toBe(9);
    // a new file took the old one's name: readers never see it half written
    expect(fs.statSync(file).ino).not.toBe(inode);
    expect(fs.readdirSync(metricsDir)).toEqual(["shoot.prom"]);

    // a failed run: its code, not healthy, and the last success still from the run before
    fs.rmSync(fx.src, { recursive: true });
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(20);
    const failed = readMetrics(file);
    expect(value(failed, "shoot_last_run_code", server)).toBe(20);
    expect(value(failed, "shoot_last_run_success", server)).toBe(0);
    expect(value(failed, "shoot_healthy", server)).toBe(0);
    expect(value(failed, "shoot_status_code", server)).toBe(20);
    expect(value(failed, "shoot_last_success_timestamp_seconds", server)).toBe(value(second, "shoot_last_success_timestamp_seconds", server)!);
  }, T);

  test("a backup host's file has each source; a metrics file that cannot be written changes nothing", async () => {
    requireTool("rsync");
    fx = serverFixture();
    expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
    const dest = path.join(fx.root, "copies");
    const file = path.join(fx.root, "client.prom");
    const config = writeClientConfig(path.join(fx.root, "client.toml"), { dest, sources: [{ name: "web1", remote: fx.backup }, { name: "gone", remote: path.join(fx.root, "nowhere") }] });
    fs.appendFileSync(config, `\n[monitor]\nmetrics_file = ${JSON.stringify(file)}\n`);
    const run = await runClient(config, dest);
    expect(run.codes).toEqual({ web1: 30, gone: 42 });
    const m = readMetrics(file);
    expect(value(m, "shoot_source_healthy", { source: "web1" })).toBe(1);
    expect(value(m, "shoot_source_copies", { source: "web1" })).toBe(1);
    expect(value(m, "shoot_source_last_code", { source: "web1" })).toBe(30);
    expect(value(m, "shoot_source_healthy", { source: "gone" })).toBe(0);
    expect(value(m, "shoot_source_last_code", { source: "gone" })).toBe(42);
    expect(value(m, "shoot_last_run_code", { role: "client", name: "client" })).toBe(42);

    fs.writeFileSync(config, fs.readFileSync(config, "utf8").replace(JSON.stringify(file), JSON.stringify(path.join(fx.root, "no/such/dir/x.prom"))));
    const again = await runClient(config, dest, ["web1"]);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("metrics file");
  }, T);
});

describe("healthcheck pings", () => {
  test("start, success, and failure with the code; a ping that cannot be delivered changes nothing", async () => {
    const seen: Array<{ method: string; path: string; body: string }> = [];
    const hc = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        seen.push({ method: req.method, path: new URL(req.url).pathname, body: await req.text() });
        return new Response("OK");
      },
    });
    try {
      fx = serverFixture(`[monitor]\nhealthcheck_url = "http://127.0.0.1:${hc.port}/ping/abc-{role}"`);
      expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(0);
      fs.rmSync(fx.src, { recursive: true });
      expect((await runShoot(["wrapper", "--config", fx.config])).code).toBe(20);
      expect(seen.map((s) => `${s.method} ${s.path}`)).toEqual([
        "POST /ping/abc-server/start", "POST /ping/abc-server",
        "POST /ping/abc-server/start", "POST /ping/abc-server/20",
      ]);
      expect(seen[3]!.body).toContain("20 SOURCE_MISSING");
    } finally {
      hc.stop(true);
    }
    // nobody listens there any more: the run's outcome stands, a warning says why
    const r = await runShoot(["wrapper", "--config", fx.config]);
    expect(r.code).toBe(20);
    expect(r.stderr).toContain("healthcheck ping");
  }, T);
});
