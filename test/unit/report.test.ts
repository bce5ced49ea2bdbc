import { describe, expect, test } from "bun:test";
import type { RunOutcome } from "../../src/core/common/outcome.ts";
import { renderReport, reportSubject } from "../../src/core/report/report.ts";
import type { StatusRecord } from "../../src/core/state/status.ts";

const started = new Date("2026-11-26T02:00:00Z");
const ended = new Date("2026-11-26T02:04:12Z");

function serverGolden(): RunOutcome {
  return {
    role: "server",
    host: "web1",
    run: "20261126T020000Z-4242-beef",
    code: 4,
    message: "archive web1-20261126-020000.tar.gz made: 1200 files, 3 changed",
    started,
    ended,
    archive: { file: "web1-20261126-020000.tar.gz", size: 1_288_490_188, md5: "9e107d9d372bb6826bd81d3542a419d6" },
    warnings: [],
    lastStep: "rotation",
  };
}

function clientFailed(): RunOutcome {
  return {
    role: "client",
    host: "backup1",
    run: "20261126T030000Z-77-0001",
    code: 45,
    message: "1 of 2 sources failed",
    started,
    ended,
    warnings: [],
    sources: [
      {
        name: "web1",
        code: 45,
        message: "the server's last run ended with 23 NO_SPACE",
        warnings: [{ code: 87, msg: "server.status: 1 torn line skipped" }],
      },
      {
        name: "db1",
        code: 4,
        message: "pulled and verified",
        archive: { file: "db1-20261126-021500.tar.zst", size: 5_242_880, md5: "d41d8cd98f00b204e9800998ecf8427e" },
        wireBytes: 65_536,
      },
    ],
  };
}

function rec(t: string, code: number, name: string, msg: string): StatusRecord {
  return { v: 1, t, code, name, msg, role: "server", run: "r" };
}

describe("report subject", () => {
  test("golden server run: host, role, OK, code and name", () => {
    expect(reportSubject(serverGolden())).toBe("[shoot] web1 server OK 4 NEW_ARCHIVE");
  }, 5_000);

  test("a server's report goes by the configured name; the headline names the host too when it differs", () => {
    const o = { ...serverGolden(), role: "wrapper" as const, host: "vm", name: "web1" };
    expect(reportSubject(o)).toBe("[shoot] web1 wrapper OK 4 NEW_ARCHIVE");
    expect(renderReport(o).text.split("\n")[0]).toBe("shoot wrapper run for web1 on vm: OK, 4 NEW_ARCHIVE");
    expect(renderReport({ ...o, host: "web1" }).text.split("\n")[0]).toBe("shoot wrapper run on web1: OK, 4 NEW_ARCHIVE");
  }, 5_000);

  test("failed client run names the failing sources only", () => {
    expect(reportSubject(clientFailed())).toBe("[shoot] backup1 client FAILED 45 SERVER_FAILED (web1), 1 warning");
  }, 5_000);

  test("many failing sources are capped with a count", () => {
    const o = clientFailed();
    o.sources = ["a", "b", "c", "d", "e"].map((name) => ({ name, code: 40, message: "unreachable" }));
    o.code = 40;
    expect(reportSubject(o)).toBe("[shoot] backup1 client FAILED 40 UNREACHABLE (a, b, c +2 more)");
  }, 5_000);

  test("a subject never carries a line break or control character", () => {
    const o = serverGolden();
    o.host = "web1\r\nBcc: evil@example.com";
    const s = reportSubject(o);
    expect(s).not.toMatch(/[\r\n\u0000-\u001f]/);
    expect(s).toStartWith("[shoot] web1 Bcc: evil@example.com server OK");
  }, 5_000);
});

describe("report body", () => {
  test("golden server run: outcome and meaning, last step, archive, duration", () => {
    const { text } = renderReport(serverGolden());
    expect(text).toStartWith("shoot server run on web1: OK, 4 NEW_ARCHIVE\nA new backup archive was made (regular run).\n");
    expect(text).toContain("What happened:  archive web1-20261126-020000.tar.gz made: 1200 files, 3 changed");
    expect(text).toContain("Last step:      rotation");
    expect(text).toContain("Archive:        web1-20261126-020000.tar.gz");
    expect(text).toContain("  size:         1.2 GiB (1288490188 bytes)");
    expect(text).toContain("  md5:          9e107d9d372bb6826bd81d3542a419d6");
    expect(text).toContain("Started:        2026-11-26 02:00:00Z");
    expect(text).toContain("Duration:       4m12s");
    expect(text).toContain("Run:            20261126T020000Z-4242-beef");
    expect(text).not.toContain("Warnings");
    expect(text).not.toContain("Sources");
  }, 5_000);

  test("failed client run: each source's outcome, archive and warnings", () => {
    const { text } = renderReport(clientFailed());
    expect(text).toContain("shoot client run on backup1: FAILED, 45 SERVER_FAILED");
    expect(text).toContain("The server's last run did not end with a golden code");
    expect(text).toContain("Sources (2: 1 OK, 1 FAILED):");
    expect(text).toContain("  web1  FAILED 45 SERVER_FAILED");
    expect(text).toContain("the server's last run ended with 23 NO_SPACE");
    expect(text).toContain("87 STATUS_TORN: server.status: 1 torn line skipped");
    expect(text).toContain("  db1   OK     4 NEW_ARCHIVE");
    expect(text).toContain("db1-20261126-021500.tar.zst, 5.0 MiB (5242880 bytes), md5 d41d8cd98f00b204e9800998ecf8427e");
    expect(text).toContain("64.0 KiB crossed the wire");
  }, 5_000);

  test("warnings are capped with a count of the rest", () => {
    const o = serverGolden();
    o.warnings = Array.from({ length: 25 }, (_, i) => ({ code: 80, msg: `/home/u/file${i} vanished` }));
    const { subject, text } = renderReport(o, { maxWarnings: 10 });
    expect(subject).toEndWith(", 25 warnings");
    expect(text).toContain("Warnings (25, the first 10 listed):");
    expect(text).toContain("80 FILE_VANISHED: /home/u/file9 vanished");
    expect(text).not.toContain("file10 vanished");
    expect(text).toContain("… and 15 more not listed here");
  }, 5_000);

  test("status tail: the last records, readable, with skipped lines counted", () => {
    const records = Array.from({ length: 30 }, (_, i) =>
      rec(`2026-11-26T02:0${Math.floor(i / 10)}:${String(i % 10).padStart(2, "0")}.000Z`, 61, "STEP", `step ${i}`));
    records.unshift(rec("2026-11-25T23:59:59.000Z", 60, "RUN_START", "older day"));
    const { text } = renderReport(serverGolden(), { tail: { file: "/var/backups/shoot/server.status", records, skipped: 1 }, tailLines: 20 });
    expect(text).toContain("Status file /var/backups/shoot/server.status (last 20 of 31 records):");
    expect(text).toContain("  02:02:09  server   61 STEP  step 29\n");
    expect(text).toContain("  02:01:00  server   61 STEP  step 10\n");
    expect(text).not.toContain("step 9\n");
    expect(text).toContain("(1 line could not be read as records and were skipped)");
    const older = renderReport(serverGolden(), { tail: { file: "f", records: records.slice(0, 2), skipped: 0 } }).text;
    expect(older).toContain("  2026-11-25 23:59:59  server   60 RUN_START  older day");
  }, 5_000);

  test("an unreadable status file is said, not thrown", () => {
    const { text } = renderReport(serverGolden(), { tail: { file: "/x/server.status", records: [], skipped: 0, error: "EACCES: permission denied" } });
    expect(text).toContain("Status file /x/server.status: could not be read: EACCES: permission denied");
  }, 5_000);

  test("untrusted text cannot forge lines or hide characters", () => {
    const o = clientFailed();
    o.sources![0]!.warnings = [{ code: 87, msg: "a\nFAKE: all fine\u001b[2J\u202eevil" }];
    const tail = { file: "f", records: [rec("2026-11-26T02:00:00Z", 61, "STEP", "x\ny\u0007")], skipped: 0 };
    const { text } = renderReport(o, { tail });
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u202e]/);
    expect(text).toContain("a FAKE: all fine\\033[2J\\342\\200\\256evil");
    expect(text).toContain("STEP  x y\\a");
    o.sources![0]!.name = "web\u001b[31m1";
    expect(reportSubject(o)).toContain("(web\\033[31m1)");
  }, 5_000);

  test("a multi-line message stays indented under its label", () => {
    const o = serverGolden();
    o.code = 24;
    o.message = "tar failed:\nline two";
    const { text, subject } = renderReport(o);
    expect(subject).toBe("[shoot] web1 server FAILED 24 ARCHIVE_FAILED");
    expect(text).toContain("What happened:  tar failed:\n                line two\n");
  }, 5_000);

  test("notes, unknown codes, and the same input always renders the same", () => {
    const o = serverGolden();
    o.code = 123;
    const before = structuredClone(o);
    const a = renderReport(o, { notes: ["2 earlier reports from the mail spool go out before this one."] });
    const b = renderReport(o, { notes: ["2 earlier reports from the mail spool go out before this one."] });
    expect(a).toEqual(b);
    expect(o).toEqual(before);
    expect(a.subject).toBe("[shoot] web1 server FAILED 123 UNKNOWN_123");
    expect(a.text).toContain("This code is not in shoot's code table.");
    expect(a.text).toEndWith("\n2 earlier reports from the mail spool go out before this one.\n");
  }, 5_000);
});
