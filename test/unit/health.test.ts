import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { code } from "../../src/core/common/codes.ts";
import { parseConfig, type Config } from "../../src/core/common/config.ts";
import { alarmsFor, checkHealth, projectSpace, renderHealth, renderNagios, sourceTable, type HealthReport, type SourceHealth } from "../../src/core/report/health.ts";
import { acquireLock } from "../../src/core/state/lock.ts";
import { pingUrl, renderMetrics } from "../../src/core/report/metrics.ts";
// the parser the metrics end-to-end test uses (no type declarations of its own)
const parsePrometheus = require("parse-prometheus-text-format") as (text: string) => unknown;
import { createProgress, progressLine } from "../../src/core/report/progress.ts";
import { StatusWriter, type ArchiveInfo } from "../../src/core/state/status.ts";
import { tempDir } from "../helpers/fixture.ts";

const T = 10_000;
const DAY = 86_400_000;
const NOW = new Date("2026-06-15T12:00:00Z");
const GiB = 1024 ** 3;

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  dirs = [];
});

function dir(): string {
  const d = tempDir("shoot-health-");
  dirs.push(d);
  return d;
}

const at = (msAgo: number) => new Date(NOW.getTime() - msAgo);
const deps = (free = 100 * GiB) => ({ clock: { now: () => NOW }, disk: { freeBytes: () => free } });

function stamp(d: Date): string {
  const iso = d.toISOString();
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
}

/** An archive file of `bytes` (its content does not matter here) with an md5sum line beside it. */
function archive(d: string, made: Date, bytes = 1000, prefix = "web1"): ArchiveInfo {
  const file = `${prefix}-${stamp(made)}.tar.gz`;
  fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(d, file), Buffer.alloc(bytes, 1));
  const md5 = new Bun.CryptoHasher("md5").update(Buffer.alloc(bytes, 1)).digest("hex");
  fs.writeFileSync(path.join(d, `${file}.md5`), `${md5}  ${file}\n`);
  return { file, size: bytes, md5 };
}

/** A server run in server.status: RUN_START, a step, and `final` (none: the run is unfinished). */
function serverRun(d: string, ended: Date, final: "NEW_ARCHIVE" | "UNCHANGED" | "FIRST_ARCHIVE" | "ARCHIVE_FAILED" | "none", a?: ArchiveInfo, file = "server.status"): void {
  const w = new StatusWriter(path.join(d, file), "wrapper", `run-${ended.getTime()}`, { now: () => new Date(ended.getTime() - 60_000) });
  w.write("RUN_START", "start", { format: "shoot-status", host: "web1" });
  w.write("STEP", "scan", { step: "scan" });
  w.close();
  if (final !== "none") {
    const end = new StatusWriter(path.join(d, file), "wrapper", `run-${ended.getTime()}`, { now: () => ended });
    end.write(final, `ended with ${final}`, a ? { archive: a } : {});
    end.close();
  }
}

function serverConfig(backup: string, monitor = ""): Config {
  return parseConfig(`[server]\nname = "web1"\nsources = ["/etc"]\nbackup_dir = ${JSON.stringify(backup)}\nreserve = "0"\nkeep = 3\n${monitor ? `[monitor]\n${monitor}\n` : ""}`, "test.toml", "web1");
}

function clientConfig(dest: string, names: string[], monitor = ""): Config {
  const sources = names.map((n) => `[[client.source]]\nname = "${n}"\nremote = "/srv/${n}"\n`).join("\n");
  return parseConfig(`[client]\ndest_dir = ${JSON.stringify(dest)}\nreserve = "0"\nkeep = 3\n${sources}\n${monitor ? `[monitor]\n${monitor}\n` : ""}`, "test.toml", "backup1");
}

describe("server health", () => {
  test("a recent golden run is healthy: exit 0, Nagios OK, archive and duration known", () => {
    const d = dir();
    const a = archive(d, at(2 * 3_600_000));
    serverRun(d, at(2 * 3_600_000), "NEW_ARCHIVE", a);
    const r = checkHealth(serverConfig(d), deps());
    expect(r.exitCode).toBe(0);
    expect(r.nagios).toBe(0);
    const s = r.roles[0]!;
    expect(s.state).toBe("ok");
    expect(s.lastRun?.code).toBe(4);
    expect(s.lastRun?.durationMs).toBe(60_000);
    expect(s.archive?.file).toBe(a.file);
    expect(s.lastGolden?.from).toBe("status");
    expect(renderNagios(r)).toMatch(/^SHOOT OK - server web1: OK, last run 4 NEW_ARCHIVE 2h0m ago \| 'server_age'=7200s;;93600;0 /);
    expect(renderHealth(r)).toContain("healthy");
  }, T);

  test("a golden run older than max_age is stale (44); a failed run exits with its own code", () => {
    const d = dir();
    serverRun(d, at(2 * DAY), "NEW_ARCHIVE", archive(d, at(2 * DAY)));
    let r = checkHealth(serverConfig(d, 'max_age = "1d"'), deps());
    expect([r.exitCode, r.roles[0]!.state, r.nagios]).toEqual([44, "stale", 2]);
    // the default max_age (26h) allows a daily run some slack
    r = checkHealth(serverConfig(d), deps());
    expect(r.exitCode).toBe(44);

    const f = dir();
    serverRun(f, at(DAY + 3_600_000), "NEW_ARCHIVE", archive(f, at(DAY + 3_600_000)), "server.status.1");
    serverRun(f, at(3_600_000), "ARCHIVE_FAILED");
    r = checkHealth(serverConfig(f), deps());
    expect([r.exitCode, r.roles[0]!.state, r.nagios]).toEqual([24, "failed", 2]);
    // the last golden run is still known from the previous status file
    expect(r.roles[0]!.lastGolden?.ageMs).toBe(DAY + 3_600_000);
    expect(renderNagios(r)).toStartWith("SHOOT CRITICAL - server web1: FAILED, last run 24 ARCHIVE_FAILED");
  }, T);

  test("no status at all is 'never' (44); a run without a final record is running (live lock) or crashed (31)", () => {
    const none = dir();
    expect(checkHealth(serverConfig(none), deps()).roles[0]!.state).toBe("never");
    expect(checkHealth(serverConfig(none), deps()).exitCode).toBe(44);

    const d = dir();
    serverRun(d, at(DAY / 2), "NEW_ARCHIVE", archive(d, at(DAY / 2)), "server.status.1");
    serverRun(d, at(60_000), "none");
    const crashed = checkHealth(serverConfig(d), deps());
    expect([crashed.exitCode, crashed.roles[0]!.state]).toEqual([31, "failed"]);
    expect(crashed.roles[0]!.lastRun?.message).toContain("without a final record");

    const lock = acquireLock(d, "wrapper", NOW);
    try {
      const running = checkHealth(serverConfig(d), deps());
      expect([running.exitCode, running.roles[0]!.state]).toEqual([0, "running"]);
      expect(running.roles[0]!.running?.pid).toBe(process.pid);
      expect(running.roles[0]!.lastRun?.code).toBe(4);
    } finally {
      lock.release();
    }
  }, T);

  test("UNCHANGED for longer than unchanged_warn is a warning: exit 0, Nagios WARNING", () => {
    const d = dir();
    const a = archive(d, at(10 * DAY));
    serverRun(d, at(3_600_000), "UNCHANGED", a);
    const r = checkHealth(serverConfig(d), deps());
    expect(r.exitCode).toBe(0);
    expect(r.nagios).toBe(1);
    expect(r.roles[0]!.warnings.map((w) => w.code)).toEqual([code("UNCHANGED_TOO_LONG")]);
    expect(renderNagios(r)).toStartWith("SHOOT WARNING - ");
    // within the limit, or with the warning off: nothing
    expect(checkHealth(serverConfig(d, 'unchanged_warn = "14d"'), deps()).nagios).toBe(0);
    expect(checkHealth(serverConfig(d, 'unchanged_warn = "0s"'), deps()).nagios).toBe(0);
  }, T);

  test("space that runs out within space_warn_days at the growth of the archives held is a warning", () => {
    const d = dir();
    // 1, 2, 3 MB a day apart: growing 1 MB a day, 3 of them kept → 3 MB a day more to hold
    archive(d, at(3 * DAY), 1_000_000);
    archive(d, at(2 * DAY), 2_000_000);
    const a = archive(d, at(DAY), 3_000_000);
    serverRun(d, at(DAY - 60_000), "NEW_ARCHIVE", a);
    const tight = checkHealth(serverConfig(d, 'max_age = "2d"'), deps(3_000_000 + 20_000_000));
    expect(tight.roles[0]!.space?.daysLeft).toBeGreaterThan(5);
    expect(tight.roles[0]!.space?.daysLeft).toBeLessThan(8);
    expect(tight.roles[0]!.warnings.map((w) => w.code)).toEqual([code("SPACE_LOW")]);
    expect(tight.nagios).toBe(1);
    const roomy = checkHealth(serverConfig(d, 'max_age = "2d"'), deps(10 * GiB));
    expect(roomy.roles[0]!.warnings).toEqual([]);
    expect(checkHealth(serverConfig(d, 'max_age = "2d"\nspace_warn_days = 0'), deps(3_000_000 + 20_000_000)).roles[0]!.warnings).toEqual([]);
  }, T);
});

describe("free space projection", () => {
  const arch = (daysAgo: number, bytes: number) => ({ made: at(daysAgo * DAY), bytes });

  test("no history, or no growth: no date; too little room for the next archive: now", () => {
    expect(projectSpace([], 1000, 0).daysLeft).toBeUndefined();
    expect(projectSpace([{ archives: [arch(1, 100)], keep: 2 }], 1000, 0).daysLeft).toBeUndefined();
    expect(projectSpace([{ archives: [arch(2, 100), arch(1, 100)], keep: 2 }], 10_000, 0).daysLeft).toBeUndefined();
    expect(projectSpace([{ archives: [arch(1, 600)], keep: 2 }], 1000, 500).daysLeft).toBe(0);
  });

  test("copies that accumulate up to keep level off: no false alarm when keep of them fit", () => {
    // one 1 GB copy a day, 2 held, keep 7: 5 more will come and then it stays flat
    const g = { archives: [arch(2, GiB), arch(1, GiB)], keep: 7 };
    expect(projectSpace([g], 7 * GiB, 0).daysLeft).toBeUndefined();
    const short = projectSpace([g], 4 * GiB, 0);
    expect(short.daysLeft).toBeGreaterThanOrEqual(3);
    expect(short.daysLeft).toBeLessThanOrEqual(4);
  });

  test("several sources add up", () => {
    const grow = (keep: number) => ({ archives: [arch(3, 1000), arch(2, 2000), arch(1, 3000)], keep });
    const one = projectSpace([grow(3)], 100_000, 0).daysLeft!;
    const two = projectSpace([grow(3), grow(3)], 100_000, 0).daysLeft!;
    expect(two).toBeLessThan(one);
  });
});

describe("client health", () => {
  function clientRun(dest: string, ended: Date, outcomes: Record<string, number>, a?: Record<string, ArchiveInfo>): void {
    const w = new StatusWriter(path.join(dest, "client.status"), "client", "c1", { now: () => ended });
    w.write("RUN_START", "client run", { format: "shoot-status", host: "backup1" });
    for (const [name, c] of Object.entries(outcomes)) {
      w.write("SOURCE_DONE", `${name}: ${c}`, { step: "pull", ...(a?.[name] ? { archive: a[name] } : {}), data: { source: name, code: c } });
    }
    const failures = Object.values(outcomes).filter((c) => ![4, 9, 30].includes(c));
    w.write(failures.length ? "SERVER_FAILED" : "NEW_ARCHIVE", "done", { step: "end" });
    w.close();
  }

  test("each source: good, failed with the server's code, never pulled; the exit code is the most severe", () => {
    const dest = dir();
    const a = archive(path.join(dest, "web1"), at(3_600_000));
    clientRun(dest, at(1_800_000), { web1: 4, db1: 45 }, { web1: a });
    const r = checkHealth(clientConfig(dest, ["web1", "db1", "new1"]), deps());
    const byName = Object.fromEntries(r.roles[0]!.sources!.map((s) => [s.name, s]));
    expect(byName.web1!.state).toBe("ok");
    expect(byName.web1!.copies).toBe(1);
    expect(byName.web1!.archive?.file).toBe(a.file);
    expect([byName.db1!.state, byName.db1!.exitCode]).toEqual(["failed", 45]);
    expect([byName.new1!.state, byName.new1!.exitCode]).toEqual(["never", 44]);
    expect(r.exitCode).toBe(45);
    expect(r.nagios).toBe(2);
    expect(renderHealth(r)).toContain("db1: FAILED 45 SERVER_FAILED");
  }, T);

  test("a source whose last good pull is older than max_age is stale, even when the client runs", () => {
    const dest = dir();
    const old = at(3 * DAY);
    const a = archive(path.join(dest, "web1"), old);
    const w = new StatusWriter(path.join(dest, "client.status.1"), "client", "c0", { now: () => old });
    w.write("SOURCE_DONE", "web1: 4", { data: { source: "web1", code: 4 }, archive: a });
    w.write("NEW_ARCHIVE", "done");
    w.close();
    clientRun(dest, at(60_000), {});
    const r = checkHealth(clientConfig(dest, ["web1"]), deps());
    expect(r.roles[0]!.sources![0]!.state).toBe("stale");
    expect(r.exitCode).toBe(44);
  }, T);
});

describe("renderings", () => {
  function report(): HealthReport {
    const d = dir();
    const a = archive(d, at(3_600_000), 4096);
    serverRun(d, at(3_600_000), "NEW_ARCHIVE", a);
    return checkHealth(serverConfig(d), deps(5 * GiB));
  }

  test("metrics: one HELP and TYPE per family, every sample a number, label values escaped", () => {
    const text = renderMetrics(report());
    const lines = text.trimEnd().split("\n");
    const families = lines.filter((l) => l.startsWith("# TYPE ")).map((l) => l.split(" ")[2]);
    expect(new Set(families).size).toBe(families.length);
    for (const l of lines.filter((x) => !x.startsWith("#"))) expect(l).toMatch(/^shoot_[a-z_]+(\{[a-z]+="[^"\\]*(?:\\.[^"\\]*)*"(,[a-z]+="[^"\\]*(?:\\.[^"\\]*)*")*\})? -?[0-9.e+]+$/);
    expect(text).toContain('shoot_last_run_code{role="server",name="web1"} 4\n');
    expect(text).toContain('shoot_archive_size_bytes{role="server",name="web1"} 4096\n');
    expect(text).toContain(`shoot_free_bytes{role="server",name="web1"} ${5 * GiB}\n`);
  }, T);

  test("metrics count the run that just ended even when it wrote no status record", () => {
    const r = report();
    const ended = new Date(NOW.getTime());
    const text = renderMetrics(r, { role: "wrapper", host: "web1", run: "", code: 12, message: "locked", started: new Date(ended.getTime() - 500), ended, warnings: [] });
    expect(text).toContain('shoot_last_run_code{role="server",name="web1"} 12\n');
    expect(text).toContain('shoot_last_run_success{role="server",name="web1"} 0\n');
    expect(text).toContain('shoot_last_run_duration_seconds{role="server",name="web1"} 0.5\n');
  }, T);

  test("healthcheck URLs: /start, the URL itself on success, /<code> on failure; {role} filled in", () => {
    expect(pingUrl("https://hc.example/ping/abc", "start", "wrapper")).toBe("https://hc.example/ping/abc/start");
    expect(pingUrl("https://hc.example/ping/abc/", "end", "wrapper", 4)).toBe("https://hc.example/ping/abc/");
    expect(pingUrl("https://hc.example/ping/abc", "end", "server", 24)).toBe("https://hc.example/ping/abc/24");
    expect(pingUrl("https://hc.example/k/{role}?rid=1", "end", "client", 45)).toBe("https://hc.example/k/client/45?rid=1");
  });

  test("progress: a line with bytes, rate and ETA on a terminal; nothing when not a terminal or quiet", () => {
    expect(progressLine("restoring x", 50 * 1024 ** 2, 100 * 1024 ** 2, 10 * 1024 ** 2)).toBe("restoring x  50.0 MiB / 100 MiB  50%  10.0 MiB/s  ETA 5.0s");
    const writes: string[] = [];
    let t = 0;
    const tty = { isTTY: true, write: (s: string) => writes.push(s) };
    const p = createProgress({ label: "x", total: 1000, stream: tty, env: {}, now: () => t });
    t = 1000;
    p.update(500);
    p.finish();
    expect(writes[0]).toContain("500 B / 1000 B  50%  500 B/s  ETA 1.0s");
    expect(writes.at(-1)).toBe("\r\x1b[K");
    const none: string[] = [];
    createProgress({ label: "x", stream: { isTTY: false, write: (s: string) => none.push(s) }, env: {} }).update(1);
    createProgress({ label: "x", quiet: true, stream: { isTTY: true, write: (s: string) => none.push(s) }, env: {} }).update(1);
    createProgress({ label: "x", stream: { isTTY: true, write: (s: string) => none.push(s) }, env: { TERM: "dumb" } }).update(1);
    expect(none).toEqual([]);
  });
});

describe("alarms for a run's report", () => {
  test("only UNCHANGED_TOO_LONG and SPACE_LOW of the role asked for", () => {
    const d = dir();
    serverRun(d, at(3_600_000), "UNCHANGED", archive(d, at(10 * DAY)));
    fs.appendFileSync(path.join(d, "server.status"), "{torn\n");
    const all = checkHealth(serverConfig(d), deps()).roles[0]!.warnings.map((w) => w.code);
    expect(all).toEqual([code("STATUS_TORN"), code("UNCHANGED_TOO_LONG")]);
    expect(alarmsFor(serverConfig(d), "server", deps()).map((w) => w.code)).toEqual([code("UNCHANGED_TOO_LONG")]);
    expect(alarmsFor(serverConfig(d), "client", deps())).toEqual([]);
  }, T);
});

describe("shoot status for a hundred sources", () => {
  test("Prometheus metrics: a few series per source, labelled by its configured name alone (label values bounded by the configuration)", () => {
    const names = Array.from({ length: 100 }, (_, i) => `web${String(i).padStart(3, "0")}`);
    const sources: SourceHealth[] = names.map((name, i) => ({
      name, state: i === 5 ? "failed" : "ok", exitCode: i === 5 ? 40 : 0, summary: "", copies: 2, warnings: [], tries: i === 5 ? 3 : 1, durationMs: 1500,
      last: { code: i === 5 ? 40 : 4, name: "X", message: `a message with spaces and a file ${name}-20260615-110000.tar.gz`, at: "2026-06-15T11:00:00Z", ageMs: 1 },
      lastGolden: { at: "2026-06-15T11:00:00Z", ageMs: 1, from: "status" },
      archive: { file: `${name}-20260615-110000.tar.gz`, size: 1000 },
    }));
    const report: HealthReport = {
      checkedAt: "2026-06-15T12:00:00Z", exitCode: 40, nagios: 2, maxAgeMs: DAY,
      roles: [{ role: "client", name: "client", dir: "/srv/shoot", state: "failed", exitCode: 40, summary: "", warnings: [], sources }],
    };
    const families = parsePrometheus(renderMetrics(report)) as Array<{ name: string; metrics: Array<{ labels?: Record<string, string> }> }>;
    const perSource = families.filter((f) => f.name.startsWith("shoot_source_"));
    expect(perSource.map((f) => f.name).sort()).toEqual([
      "shoot_source_archive_size_bytes", "shoot_source_copies", "shoot_source_healthy", "shoot_source_last_code",
      "shoot_source_last_duration_seconds", "shoot_source_last_success_timestamp_seconds", "shoot_source_last_tries",
    ]);
    for (const f of perSource) {
      expect({ f: f.name, n: f.metrics.length }).toEqual({ f: f.name, n: 100 });
      for (const m of f.metrics) expect(Object.keys(m.labels ?? {})).toEqual(["source"]);
      expect(new Set(f.metrics.map((m) => m.labels!.source))).toEqual(new Set(names));
    }
    const values = families.flatMap((f) => f.metrics.flatMap((m) => Object.values(m.labels ?? {})));
    expect(values.filter((v) => !names.includes(v) && !["client"].includes(v))).toEqual([]);
    expect(families.find((f) => f.name === "shoot_source_last_tries")!.metrics.find((m) => m.labels!.source === "web005")).toMatchObject({ value: "3" });
  }, T);

  test("a table with one line per source, the ones not healthy first, then what each failed one said", () => {
    const ok = (i: number): SourceHealth => ({
      name: `web${String(i).padStart(3, "0")}`, state: "ok", exitCode: 0, summary: "", copies: 2, warnings: [], tries: 1, durationMs: 4200,
      last: { code: 4, name: "NEW_ARCHIVE", message: "pulled", at: "2026-06-15T11:00:00Z", ageMs: 3_600_000 },
      lastGolden: { at: "2026-06-15T11:00:00Z", ageMs: 3_600_000, from: "status" },
      archive: { file: `web${String(i).padStart(3, "0")}-20260615-110000.tar.gz`, size: 20 << 20 },
    });
    const sources = Array.from({ length: 100 }, (_, i) => ok(i));
    sources[42] = { ...ok(42), state: "failed", exitCode: 120, tries: 3, summary: "web042: FAILED 120 THROTTLED 1h0m ago", last: { code: 120, name: "THROTTLED", message: "the server closed the connection during the ssh key exchange (3 tries)", at: "2026-06-15T11:00:00Z", ageMs: 3_600_000 } };
    sources[7] = { ...ok(7), state: "stale", exitCode: 44, lastGolden: { at: "2026-06-12T11:00:00Z", ageMs: 3 * DAY, from: "status" } };
    const lines = sourceTable(sources);
    expect(lines[0]).toBe("  sources:     100 sources: 98 OK, 1 failed, 1 stale");
    const cells = (l: string) => l.trim().split(/ {2,}/);
    expect(cells(lines[1]!)).toEqual(["SOURCE", "STATE", "LAST", "LAST GOOD", "TRIES", "TOOK", "COPIES", "NEWEST COPY"]);
    // severity first: a stale source (its server stopped running) before a throttled one
    expect(lines[2]).toStartWith("  web007  STALE   4 NEW_ARCHIVE");
    expect(cells(lines[3]!)).toEqual(["web042", "FAILED", "120 THROTTLED", "1h0m ago", "3", "4.2s", "2", "web042-20260615-110000.tar.gz (20.0 MiB)"]);
    // the columns line up
    expect(lines[3]!.indexOf("1h0m ago")).toBe(lines[1]!.indexOf("LAST GOOD"));
    expect(lines.slice(2, 102).map((l) => l.trim().split(/\s+/)[0]).sort()).toEqual(sources.map((s) => s.name).sort());
    expect(lines.slice(102)).toEqual(["  failed:", "    web042: FAILED 120 THROTTLED 1h0m ago: the server closed the connection during the ssh key exchange (3 tries)"]);
  }, T);
});
