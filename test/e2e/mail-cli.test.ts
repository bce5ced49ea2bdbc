/**
 * `shoot mail --test` as a real process against a real relay on 127.0.0.1: a message that
 * arrives, and for each way sending can fail, an exit code and a message naming the step.
 */
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { freePort, relayFixture, startSilentServer } from "../helpers/smtp.ts";

const MAIL_TEST_FAILED = 15;
const fx = relayFixture("shoot-mailcli-", "s3cret");
const relay = fx.relay;
let n = 0;

/** A configuration file with a [mail] section; `lines` replace or add keys. */
function config(smtp: string, lines: Record<string, string> = {}): string {
  const keys: Record<string, string> = {
    to: '["ops@example.com"]',
    from: '"shoot@web1.example.com"',
    smtp: JSON.stringify(smtp),
    user: '"shoot"',
    password_file: JSON.stringify(fx.pwFile),
    ca_file: JSON.stringify(fx.cert.certFile),
    timeout: '"5s"',
    ...lines,
  };
  const file = path.join(fx.tmp, `shoot-${++n}.toml`);
  const body = Object.entries(keys).filter(([, v]) => v !== "").map(([k, v]) => `${k} = ${v}`);
  fs.writeFileSync(file, `[server]\nsources = ["/etc"]\nbackup_dir = ${JSON.stringify(fx.tmp)}\n\n[mail]\n${body.join("\n")}\n`);
  return file;
}

const env = { SHOOT_SMTP_PASSWORD: undefined, SHOOT_CONFIG: undefined };

describe("shoot mail --test", () => {
  test("sends a test message with the current settings", async () => {
    const r = await relay();
    const res = await runShoot(["mail", "--test", "--config", config(r.url)], { env, timeoutMs: 30_000 });
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(`test message sent to ops@example.com via 127.0.0.1:${r.port} (STARTTLS when the relay offers it): check that it arrived\n`);
    expect(r.received).toHaveLength(1);
    const m = r.received[0]!;
    expect(m.subject).toBe(`[shoot] ${os.hostname()} mail test`);
    expect(m.to).toEqual(["ops@example.com"]);
    expect(m.secure).toBe(true);
    expect(m.user).toBe("shoot");
    expect(m.text).toContain(`Relay:     ${r.url} (STARTTLS when the relay offers it)`);
    expect(m.text).toContain(`Spool:     ${path.join(fx.tmp, "mail-spool")} (0 reports waiting)`);
  }, 30_000);

  test("the password may come from the environment; never from the command line", async () => {
    const r = await relay({ tls: "implicit" });
    const file = config(r.url, { password_file: "" });
    const ok = await runShoot(["mail", "--test", "--config", file], { env: { ...env, SHOOT_SMTP_PASSWORD: "s3cret" }, timeoutMs: 30_000 });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("(implicit TLS (smtps))");
    expect(r.received).toHaveLength(1);
    const flag = await runShoot(["mail", "--test", "--config", file, "--password", "s3cret"], { env, timeoutMs: 30_000 });
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("unknown flag --password");
    const none = await runShoot(["mail", "--test", "--config", file], { env, timeoutMs: 30_000 });
    expect(none.code).toBe(MAIL_TEST_FAILED);
    expect(none.stderr).toContain('test message not sent: config: user = "shoot" is set but there is no password: set password_file or $SHOOT_SMTP_PASSWORD');
  }, 30_000);

  test("says exactly what failed: auth, recipient, TLS, connect, DNS, time-out", async () => {
    const r = await relay({ refuseRecipients: ["nobody@example.com"] });
    const cases: { name: string; file: string; expect: string }[] = [
      {
        name: "auth",
        file: config(r.url, { password_file: JSON.stringify(path.join(fx.tmp, "wrong.pass")) }),
        expect: `test message not sent: auth: the relay 127.0.0.1:${r.port} refused the login of user "shoot": 535`,
      },
      {
        name: "recipient",
        file: config(r.url, { to: '["nobody@example.com"]' }),
        expect: `test message not sent: recipient: the relay 127.0.0.1:${r.port} refused the recipient nobody@example.com: `,
      },
      {
        name: "tls",
        file: config(r.url, { ca_file: "" }),
        expect: `test message not sent: tls: TLS with the relay 127.0.0.1:${r.port} failed: self`,
      },
      {
        name: "connect",
        file: config(`smtp://127.0.0.1:${await freePort()}`),
        expect: "test message not sent: connect: cannot connect to the relay 127.0.0.1:",
      },
      {
        name: "dns",
        file: config("smtp://no-such-relay.invalid:587", { timeout: '"3s"' }),
        expect: "test message not sent: dns: cannot resolve the relay's host name no-such-relay.invalid",
      },
      {
        name: "require_tls",
        file: config((await relay({ tls: "none" })).url, { require_tls: "true" }),
        expect: "does not offer STARTTLS",
      },
    ];
    // readable by others: the warning comes with the error
    fs.writeFileSync(path.join(fx.tmp, "wrong.pass"), "guess\n", { mode: 0o644 });
    const results = await Promise.all(cases.map((c) => runShoot(["mail", "--test", "--config", c.file], { env, timeoutMs: 30_000 })));
    results.forEach((res, i) => {
      const c = cases[i]!;
      expect({ name: c.name, code: res.code }).toEqual({ name: c.name, code: MAIL_TEST_FAILED });
      expect(res.stderr).toContain(c.expect);
      expect(res.stdout).toBe("");
    });
    expect(results[0]!.stderr).toContain(`warning: password_file ${path.join(fx.tmp, "wrong.pass")} can be read or written by its group and all other users (mode 0644): run chmod 600 ${path.join(fx.tmp, "wrong.pass")}`);
    expect(results[1]!.stderr).not.toContain("warning");
    expect(results[2]!.stderr).toContain("set ca_file");
    expect(r.received).toHaveLength(0);
  }, 60_000);

  test("a relay that never answers is a time-out, bounded by `timeout`", async () => {
    const silent = await startSilentServer();
    fx.onCleanup(() => silent.close());
    const began = performance.now();
    const res = await runShoot(["mail", "--test", "--config", config(`smtp://127.0.0.1:${silent.port}`, { timeout: '"1s"' })], { env, timeoutMs: 30_000 });
    expect(res.code).toBe(MAIL_TEST_FAILED);
    expect(res.stderr).toContain(`test message not sent: timeout: the relay 127.0.0.1:${silent.port} accepted the connection but sent no greeting within 1s`);
    expect(performance.now() - began).toBeLessThan(15_000);
  }, 30_000);

  test("usage and configuration errors", async () => {
    const noTest = await runShoot(["mail", "--config", config("smtp://127.0.0.1:25")], { env });
    expect(noTest.code).toBe(2);
    expect(noTest.stderr).toContain("shoot mail needs --test");
    const file = path.join(fx.tmp, "no-mail.toml");
    fs.writeFileSync(file, `[server]\nsources = ["/etc"]\nbackup_dir = "/tmp"\n`);
    const noMail = await runShoot(["mail", "--test", "--config", file], { env });
    expect(noMail.code).toBe(10);
    expect(noMail.stderr).toContain(`${file}: [mail]: missing: shoot mail --test needs a [mail] section`);
  }, 30_000);
});
