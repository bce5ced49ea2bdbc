/**
 * Reports through a real SMTP relay on 127.0.0.1 (smtp-server): what arrives is parsed back
 * and checked as a person would read it; the status file is checked for MAIL_SENT/MAIL_FAILED.
 */
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { MailConfig } from "../../src/core/common/config.ts";
import type { Clock } from "../../src/core/common/deps.ts";
import { notify, type NotifyOptions } from "../../src/core/report/notify.ts";
import type { RunOutcome } from "../../src/core/common/outcome.ts";
import { lastFinal, readStatusFile, StatusWriter, type StatusRecord } from "../../src/core/state/status.ts";
import { isLoopback, mustEncrypt, parseRelay } from "../../src/io/mailer.ts";
import { freePort, relayFixture } from "../helpers/smtp.ts";

const fx = relayFixture("shoot-mail-", "s3cret pass");
const clock: Clock = { now: () => new Date() };
let caseNo = 0;
const relay = fx.relay;

/** A fresh directory per test with a status file as a run leaves it, and its spool. */
function workDir(finalCode: "NEW_ARCHIVE" | "SERVER_FAILED" = "SERVER_FAILED"): { dir: string; spool: string; statusFile: string; w: StatusWriter } {
  const dir = path.join(fx.tmp, `case-${++caseNo}`);
  fs.mkdirSync(dir);
  const statusFile = path.join(dir, "server.status");
  const w = statusWith(statusFile, finalCode);
  fx.onCleanup(async () => w.close());
  return { dir, spool: path.join(dir, "mail-spool"), statusFile, w };
}

function mailConfig(url: string, over: Partial<MailConfig> = {}): MailConfig {
  return {
    to: ["ops@example.com", "oncall@example.org"],
    from: "shoot@web1.example.com",
    smtp: url,
    user: "shoot",
    password_file: fx.pwFile,
    when: "always",
    require_tls: false,
    ca_file: fx.cert.certFile,
    timeout: 5_000,
    spool_max: 100,
    ...over,
  };
}

/** A status file as a server run leaves it, and the writer that records the mail outcome. */
function statusWith(file: string, finalCode: "NEW_ARCHIVE" | "SERVER_FAILED"): StatusWriter {
  const w = new StatusWriter(file, "server", "20261126T020000Z-1-0001", clock);
  w.startFresh();
  w.write("RUN_START", "shoot-status 1, server run on web1", { host: "web1", format: "shoot-status" });
  w.write("STEP", "archive", { step: "archive" });
  w.write("ARCHIVE_WRITTEN", "web1-20261126-020000.tar.gz complete");
  w.write(finalCode, finalCode === "NEW_ARCHIVE" ? "archive made" : "web1: the server ended with 23");
  return w;
}

function opts(spool: string, w: StatusWriter | undefined, over: Partial<NotifyOptions>): NotifyOptions {
  return { spoolDefault: spool, record: w ? (name, msg) => w.write(name, msg) : undefined, env: {}, ...over };
}

function serverGolden(statusFile?: string): RunOutcome {
  return {
    role: "server",
    host: "web1",
    run: "20261126T020000Z-1-0001",
    code: 4,
    message: "archive web1-20261126-020000.tar.gz made",
    started: new Date("2026-11-26T02:00:00Z"),
    ended: new Date("2026-11-26T02:03:30Z"),
    archive: { file: "web1-20261126-020000.tar.gz", size: 10_485_760, md5: "0123456789abcdef0123456789abcdef" },
    warnings: [{ code: 80, msg: "/var/www/tmp/upload.part vanished" }],
    lastStep: "rotation",
    statusFile,
  };
}

function clientFailed(tag = ""): RunOutcome {
  return {
    role: "client",
    host: "backup1",
    run: `20261126T030000Z-2-000${tag}`,
    code: 45,
    message: `1 of 2 sources failed${tag ? ` (${tag})` : ""}`,
    started: new Date("2026-11-26T03:00:00Z"),
    ended: new Date("2026-11-26T03:00:40Z"),
    warnings: [],
    sources: [
      { name: "web1", code: 45, message: "the server's last run ended with 23 NO_SPACE" },
      { name: "db1", code: 4, message: "pulled and verified", archive: { file: "db1-20261126-021500.tar.gz", size: 2048, md5: "fedcba9876543210fedcba9876543210" } },
    ],
  };
}

function mailRecords(file: string): StatusRecord[] {
  return readStatusFile(file)!.records.filter((r) => r.name === "MAIL_SENT" || r.name === "MAIL_FAILED");
}

function spoolFiles(spool: string): string[] {
  return fs.existsSync(spool) ? fs.readdirSync(spool).filter((f) => f.endsWith(".mail")).sort() : [];
}

describe("mailing reports through a real relay", () => {
  test("golden server run over STARTTLS with a private CA and AUTH", async () => {
    const r = await relay();
    const { spool, statusFile, w } = workDir("NEW_ARCHIVE");
    const res = await notify(serverGolden(statusFile), opts(spool, w, { mail: mailConfig(r.url) }));
    expect(res).toEqual({ sent: 1, spooled: 0, dropped: 0, printed: false });
    expect(r.received).toHaveLength(1);
    const m = r.received[0]!;
    expect(m.subject).toBe("[shoot] web1 server OK 4 NEW_ARCHIVE, 1 warning");
    expect(m.to).toEqual(["ops@example.com", "oncall@example.org"]);
    expect(m.headerTo).toEqual(["ops@example.com", "oncall@example.org"]);
    expect(m.from).toBe("shoot@web1.example.com");
    expect(m.secure).toBe(true);
    expect(m.user).toBe("shoot");
    expect(m.headers.get("auto-submitted")).toBe("auto-generated");
    expect(m.text).toContain("shoot server run on web1: OK, 4 NEW_ARCHIVE");
    expect(m.text).toContain("A new backup archive was made (regular run).");
    expect(m.text).toContain("Archive:        web1-20261126-020000.tar.gz");
    expect(m.text).toContain("  size:         10.0 MiB (10485760 bytes)");
    expect(m.text).toContain("  md5:          0123456789abcdef0123456789abcdef");
    expect(m.text).toContain("Duration:       3m30s");
    expect(m.text).toContain("80 FILE_VANISHED: /var/www/tmp/upload.part vanished");
    expect(m.text).toContain(`Status file ${statusFile} (4 records):`);
    expect(m.text).toMatch(/\d\d:\d\d:\d\d {2}server {4}4 NEW_ARCHIVE {6}archive made/);
    const recs = mailRecords(statusFile);
    expect(recs.map((x) => x.name)).toEqual(["MAIL_SENT"]);
    expect(recs[0]!.msg).toBe(`report mailed to ops@example.com, oncall@example.org via 127.0.0.1:${r.port}`);
    expect(spoolFiles(spool)).toEqual([]);
  }, 20_000);

  test("failed client run with two sources", async () => {
    const r = await relay();
    const { spool } = workDir();
    const res = await notify(clientFailed(), opts(spool, undefined, { mail: mailConfig(r.url, { when: "failure" }) }));
    expect(res.sent).toBe(1);
    const m = r.received[0]!;
    expect(m.subject).toBe("[shoot] backup1 client FAILED 45 SERVER_FAILED (web1)");
    expect(m.to).toEqual(["ops@example.com", "oncall@example.org"]);
    expect(m.text).toContain("shoot client run on backup1: FAILED, 45 SERVER_FAILED");
    expect(m.text).toContain("2 sources: 1 OK, 1 failed, failures first:");
    expect(m.text).toMatch(/ {2}web1 {2}FAILED 45 SERVER_FAILED\n {8}the server's last run ended with 23 NO_SPACE/);
    expect(m.text).toMatch(/ {2}db1 {3}OK {5}4 NEW_ARCHIVE\n {8}pulled and verified\n {8}db1-20261126-021500.tar.gz, 2.0 KiB \(2048 bytes\), md5 fedcba9876543210fedcba9876543210/);
  }, 20_000);

  test("relay down at first, up on the next run: both reports arrive, in order, spool empty", async () => {
    const port = await freePort();
    const url = `smtp://127.0.0.1:${port}`;
    const { spool, statusFile, w } = workDir("SERVER_FAILED");
    const first = clientFailed("1");
    const res1 = await notify(first, opts(spool, w, { mail: mailConfig(url), now: () => new Date("2026-11-26T03:00:41Z") }));
    expect(res1.sent).toBe(0);
    expect(res1.spooled).toBe(1);
    expect(res1.errorKind).toBe("connect");
    expect(res1.error).toContain(`cannot connect to the relay 127.0.0.1:${port}: connection refused`);
    expect(res1.error).toContain(`1 report (`);
    expect(res1.error).toContain(`waits in the mail spool ${spool} for the next run`);
    const files = spoolFiles(spool);
    expect(files).toHaveLength(1);
    expect(fs.statSync(spool).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(spool, files[0]!)).mode & 0o777).toBe(0o600);
    expect(mailRecords(statusFile).map((x) => [x.name, x.msg])).toEqual([["MAIL_FAILED", res1.error!]]);
    // the mail failure is not a final record: the run's outcome in the status file stands
    expect(lastFinal(readStatusFile(statusFile)!.records)!.name).toBe("SERVER_FAILED");

    const r = await relay({ port });
    const second = clientFailed("2");
    const res2 = await notify(second, opts(spool, w, { mail: mailConfig(url) }));
    expect(res2).toEqual({ sent: 2, spooled: 0, dropped: 0, printed: false });
    expect(r.received.map((m) => m.text.includes("(1)") ? "first" : m.text.includes("(2)") ? "second" : "?")).toEqual(["first", "second"]);
    const late = r.received[0]!;
    expect(late.text).toStartWith("This report was made on 2026-11-26 03:00:41Z but could not be mailed then; it waited in the mail spool on backup1");
    expect(late.date?.toISOString()).toBe("2026-11-26T03:00:41.000Z");
    expect(late.subject).toBe("[shoot] backup1 client FAILED 45 SERVER_FAILED (web1)");
    expect(r.received[1]!.text).toContain("1 earlier report from the mail spool goes out before this one.");
    expect(spoolFiles(spool)).toEqual([]);
    expect(mailRecords(statusFile).at(-1)!.msg).toBe(`report mailed to ops@example.com, oncall@example.org via 127.0.0.1:${port} after 1 earlier report from the spool`);
  }, 20_000);

  test("wrong password: a clear auth error in the status, the outcome unchanged", async () => {
    const r = await relay();
    const { spool, statusFile, w } = workDir("NEW_ARCHIVE");
    const outcome = serverGolden(statusFile);
    const before = structuredClone(outcome);
    // the password from the environment when there is no password_file
    const res = await notify(outcome, opts(spool, w, { mail: mailConfig(r.url, { password_file: undefined }), env: { SHOOT_SMTP_PASSWORD: "wrong" } }));
    expect(outcome).toEqual(before);
    expect(r.received).toHaveLength(0);
    expect(r.authFailures).toBe(1);
    expect(res.sent).toBe(0);
    expect(res.spooled).toBe(1);
    expect(res.errorKind).toBe("auth");
    expect(res.error).toStartWith(`report not mailed (auth): the relay 127.0.0.1:${r.port} refused the login of user "shoot": 535`);
    const recs = mailRecords(statusFile);
    expect(recs.map((x) => x.name)).toEqual(["MAIL_FAILED"]);
    expect(recs[0]!.msg).toBe(res.error!);
    expect(recs[0]!.code).toBe(84);
    expect(lastFinal(readStatusFile(statusFile)!.records)!.code).toBe(4);
  }, 20_000);

  test('when = "failure" sends nothing for a golden run', async () => {
    const r = await relay();
    const { spool, statusFile, w } = workDir("NEW_ARCHIVE");
    const printed: string[] = [];
    const res = await notify(serverGolden(statusFile), opts(spool, w, { mail: mailConfig(r.url, { when: "failure" }), out: (t) => printed.push(t) }));
    expect(res).toEqual({ sent: 0, spooled: 0, dropped: 0, printed: false });
    expect(r.received).toHaveLength(0);
    expect(printed).toEqual([]);
    expect(mailRecords(statusFile)).toEqual([]);
    expect(fs.existsSync(spool)).toBe(false);
    // and a failed run with the same settings is mailed
    await notify(clientFailed(), opts(spool, w, { mail: mailConfig(r.url, { when: "failure" }) }));
    expect(r.received.map((m) => m.subject)).toEqual(["[shoot] backup1 client FAILED 45 SERVER_FAILED (web1)"]);
  }, 20_000);

  test('when = "failure": a clean run still delivers what waits in the spool', async () => {
    const port = await freePort();
    const { spool, statusFile, w } = workDir("NEW_ARCHIVE");
    const mail = mailConfig(`smtp://127.0.0.1:${port}`, { when: "failure" });
    expect((await notify(clientFailed("1"), opts(spool, w, { mail }))).spooled).toBe(1);
    const r = await relay({ port });
    const res = await notify(serverGolden(statusFile), opts(spool, w, { mail }));
    expect(res).toEqual({ sent: 1, spooled: 0, dropped: 0, printed: false });
    expect(r.received.map((m) => m.subject)).toEqual(["[shoot] backup1 client FAILED 45 SERVER_FAILED (web1)"]);
    expect(mailRecords(statusFile).at(-1)!.msg).toBe(`1 earlier report from the spool mailed to ops@example.com, oncall@example.org via 127.0.0.1:${port}`);
  }, 20_000);

  test("the spool is bounded: the oldest are dropped, counted, and the next report says so", async () => {
    const port = await freePort();
    const { spool, statusFile, w } = workDir("SERVER_FAILED");
    const mail = mailConfig(`smtp://127.0.0.1:${port}`, { spool_max: 2 });
    for (const tag of ["1", "2"]) expect((await notify(clientFailed(tag), opts(spool, w, { mail }))).dropped).toBe(0);
    const third = await notify(clientFailed("3"), opts(spool, w, { mail }));
    expect(third.spooled).toBe(2);
    expect(third.dropped).toBe(1);
    expect(third.error).toContain("2 reports (");
    expect(third.error).toContain("1 oldest report dropped (spool_max = 2)");
    expect(mailRecords(statusFile).at(-1)!.msg).toBe(third.error!);

    const r = await relay({ port });
    const res = await notify(clientFailed("4"), opts(spool, w, { mail }));
    expect(res).toEqual({ sent: 3, spooled: 0, dropped: 0, printed: false });
    const order = r.received.map((m) => /sources failed \((\d)\)/.exec(m.text)?.[1]);
    expect(order).toEqual(["2", "3", "4"]);
    expect(r.received[2]!.text).toContain("1 older report could not be mailed and was dropped because the spool was full (spool_max = 2).");
  }, 20_000);

  test("STARTTLS with a private certificate and no ca_file: a TLS error that says what to set", async () => {
    const r = await relay();
    const { spool } = workDir();
    const res = await notify(clientFailed(), opts(spool, undefined, { mail: mailConfig(r.url, { ca_file: undefined }) }));
    expect(res.errorKind).toBe("tls");
    expect(res.error).toContain(`TLS with the relay 127.0.0.1:${r.port} failed: self`);
    expect(res.error).toContain("set ca_file");
    expect(r.received).toHaveLength(0);
    expect(res.spooled).toBe(1);
  }, 20_000);

  test("require_tls with a relay that offers no STARTTLS: refused, the password never sent", async () => {
    const r = await relay({ tls: "none" });
    const { spool } = workDir();
    const res = await notify(clientFailed(), opts(spool, undefined, { mail: mailConfig(r.url, { require_tls: true }) }));
    expect(res.errorKind).toBe("tls");
    expect(res.error).toContain(`report not mailed (tls): the relay 127.0.0.1:${r.port} does not offer STARTTLS`);
    expect(res.error).toContain("refusing to send unencrypted because require_tls is set");
    expect(r.received).toHaveLength(0);
    expect(r.authFailures).toBe(0);
    // without require_tls a relay on this host may be used unencrypted
    const ok = await notify(clientFailed(), opts(workDir().spool, undefined, { mail: mailConfig(r.url) }));
    expect(ok.sent).toBe(1);
    expect(r.received[0]!.secure).toBe(false);
  }, 20_000);

  test("smtps:// implicit TLS", async () => {
    const r = await relay({ tls: "implicit" });
    expect(r.url).toStartWith("smtps://");
    const { spool } = workDir();
    const res = await notify(clientFailed(), opts(spool, undefined, { mail: mailConfig(r.url, { require_tls: true }) }));
    expect(res).toEqual({ sent: 1, spooled: 0, dropped: 0, printed: false });
    expect(r.received[0]!.secure).toBe(true);
    expect(r.received[0]!.user).toBe("shoot");
    expect(r.received[0]!.subject).toBe("[shoot] backup1 client FAILED 45 SERVER_FAILED (web1)");
  }, 20_000);

  test("no [mail]: the report goes to standard output for cron", async () => {
    const { spool, statusFile, w } = workDir("NEW_ARCHIVE");
    const printed: string[] = [];
    const res = await notify(serverGolden(statusFile), opts(spool, w, { out: (t) => printed.push(t) }));
    expect(res).toEqual({ sent: 0, spooled: 0, dropped: 0, printed: true });
    expect(printed).toHaveLength(1);
    expect(printed[0]).toStartWith("[shoot] web1 server OK 4 NEW_ARCHIVE, 1 warning\n\nshoot server run on web1: OK, 4 NEW_ARCHIVE\n");
    expect(printed[0]).toContain(`Status file ${statusFile} (4 records):`);
    expect(mailRecords(statusFile)).toEqual([]);
  }, 20_000);

  test('when = "never" mails nothing and prints nothing', async () => {
    const r = await relay();
    const printed: string[] = [];
    const res = await notify(clientFailed(), opts(workDir().spool, undefined, { mail: mailConfig(r.url, { when: "never" }), out: (t) => printed.push(t) }));
    expect(res).toEqual({ sent: 0, spooled: 0, dropped: 0, printed: false });
    expect(r.received).toHaveLength(0);
    expect(printed).toEqual([]);
  }, 20_000);

  test("a spool that cannot be written: the report is still sent; if not, its loss is recorded", async () => {
    const r = await relay();
    const { dir, statusFile, w } = workDir("SERVER_FAILED");
    const blocked = path.join(dir, "not-a-dir");
    fs.writeFileSync(blocked, "");
    const sent = await notify(clientFailed(), opts(path.join(blocked, "mail-spool"), w, { mail: mailConfig(r.url) }));
    expect(sent.sent).toBe(1);
    expect(sent.error).toBeUndefined();
    const down = await notify(clientFailed(), opts(path.join(blocked, "mail-spool"), w, { mail: mailConfig(`smtp://127.0.0.1:${await freePort()}`) }));
    expect(down.errorKind).toBe("connect");
    expect(down.error).toContain("this report is lost: the mail spool");
    expect(mailRecords(statusFile).at(-1)!.name).toBe("MAIL_FAILED");
  }, 20_000);

  test("record and mailer failures never escape notify", async () => {
    const { spool } = workDir();
    const res = await notify(clientFailed(), {
      spoolDefault: spool,
      mail: mailConfig("smtp://127.0.0.1:1"),
      mailer: { send: () => Promise.reject(new Error("boom")) },
      record: () => {
        throw new Error("status file gone");
      },
    });
    expect(res.errorKind).toBe("protocol");
    expect(res.error).toContain("boom");
    expect(res.spooled).toBe(1);
  }, 20_000);
});

describe("relay settings", () => {
  test("URLs, default ports, and when encryption is insisted on", () => {
    expect(parseRelay("smtp://mail.example.com")).toEqual({ implicitTls: false, host: "mail.example.com", port: 587, label: "mail.example.com:587" });
    expect(parseRelay("smtps://mail.example.com")).toMatchObject({ implicitTls: true, port: 465 });
    expect(parseRelay("smtp://[::1]:2525")).toMatchObject({ host: "::1", label: "[::1]:2525" });
    expect(() => parseRelay("smtp://u:pw@mail.example.com")).toThrow("leave user and password out of the URL");
    expect(isLoopback("127.0.0.1") && isLoopback("localhost") && isLoopback("::1")).toBe(true);
    expect(isLoopback("mail.example.com")).toBe(false);
    const base = { smtp: "smtp://mail.example.com:587", require_tls: false, timeout: 1000 };
    // a password never crosses the network in clear, whatever require_tls says
    expect(mustEncrypt({ ...base, user: "shoot" }, parseRelay(base.smtp))).toBe(true);
    expect(mustEncrypt(base, parseRelay(base.smtp))).toBe(false);
    expect(mustEncrypt({ ...base, user: "shoot" }, parseRelay("smtp://127.0.0.1:25"))).toBe(false);
    expect(mustEncrypt({ ...base, require_tls: true }, parseRelay("smtp://127.0.0.1:25"))).toBe(true);
  }, 5_000);
});
