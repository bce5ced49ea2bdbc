/**
 * The wrapper's report, end to end: a real wrapper run mails through a real relay on
 * 127.0.0.1 (STARTTLS, AUTH), the message parsed; a relay that is down keeps the report in
 * the spool for the next run, and the backup's outcome never changes.
 */
import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { serverFixture, statusRecords, type ServerFixture } from "../helpers/fixture.ts";
import { freePort, relayFixture } from "../helpers/smtp.ts";

const mail = relayFixture("shoot-mailwrap-", "pw-wrapper");
let fx: ServerFixture;
afterEach(() => fx?.cleanup());
const env = { SHOOT_SMTP_PASSWORD: undefined, SHOOT_CONFIG: undefined };

function withMail(url: string, when = "always"): void {
  fs.appendFileSync(fx.config, `\n[mail]\nto = ["ops@example.com"]\nfrom = "shoot@web1.example.com"\nsmtp = ${JSON.stringify(url)}\nuser = "shoot"\npassword_file = ${JSON.stringify(mail.pwFile)}\nca_file = ${JSON.stringify(mail.cert.certFile)}\ntimeout = "5s"\nwhen = "${when}"\n`);
}

describe("wrapper reports by mail", () => {
  test("a golden run is mailed with subject, recipients, archive and status tail", async () => {
    fx = serverFixture();
    const relay = await mail.relay();
    withMail(relay.url);
    const r = await runShoot(["wrapper", "--config", fx.config], { env });
    expect(r.code).toBe(0);
    expect(relay.received).toHaveLength(1);
    const m = relay.received[0]!;
    expect(m.secure).toBe(true);
    expect(m.to).toEqual(["ops@example.com"]);
    expect(m.subject).toMatch(/^\[shoot\] \S+ wrapper OK 30 FIRST_ARCHIVE/);
    const archive = statusRecords(path.join(fx.backup, "server.status")).find((x) => x.code === 30)!.archive;
    expect(m.text).toContain(archive.file);
    expect(m.text).toContain(archive.md5);
    expect(m.text).toContain("SERVER_STARTED");
    expect(statusRecords(path.join(fx.backup, "server.status")).some((x) => x.name === "MAIL_SENT")).toBe(true);
  }, 60_000);

  test("relay down: the run still ends golden, the report waits in the spool and goes out first next time", async () => {
    fx = serverFixture();
    const port = await freePort();
    withMail(`smtp://127.0.0.1:${port}`);
    const first = await runShoot(["wrapper", "--config", fx.config], { env });
    expect(first.code).toBe(0);
    const recs = statusRecords(path.join(fx.backup, "server.status"));
    expect(recs.some((x) => x.name === "MAIL_FAILED")).toBe(true);
    expect(recs.filter((x) => x.code === 30)).not.toHaveLength(0);
    expect(fs.readdirSync(path.join(fx.backup, "mail-spool"))).toHaveLength(1);

    const relay = await mail.relay({ port });
    const second = await runShoot(["wrapper", "--config", fx.config], { env });
    expect(second.code).toBe(0);
    expect(relay.received.map((m) => m.subject.split(" ").slice(3, 6).join(" "))).toEqual(["OK 30 FIRST_ARCHIVE", "OK 9 UNCHANGED"]);
    expect(fs.readdirSync(path.join(fx.backup, "mail-spool"))).toHaveLength(0);
  }, 60_000);

  test("when = failure sends nothing for a golden run, and mails a failed one", async () => {
    fx = serverFixture();
    const relay = await mail.relay();
    withMail(relay.url, "failure");
    expect((await runShoot(["wrapper", "--config", fx.config], { env })).code).toBe(0);
    expect(relay.received).toHaveLength(0);
    fs.rmSync(path.join(fx.src, "etc"), { recursive: true });
    fs.writeFileSync(fx.config, fs.readFileSync(fx.config, "utf8").replace(/sources = \[(.*?)\]/, (_, s) => `sources = [${s}, "${fx.src}/gone"]`));
    const failed = await runShoot(["wrapper", "--config", fx.config], { env });
    expect(failed.code).toBe(20);
    expect(relay.received).toHaveLength(1);
    expect(relay.received[0]!.subject).toMatch(/FAILED 20 SOURCE_MISSING/);
    expect(relay.received[0]!.text).toContain(`${fx.src}/gone`);
  }, 60_000);
});
