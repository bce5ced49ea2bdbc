/**
 * Text a server or an archive chose reaches a person only escaped, as GNU tar prints names:
 * the client's outcome and log, its mailed report, `shoot status` (text and Nagios), and
 * `shoot list` of an archive built byte by byte. JSON output keeps JSON's own escaping.
 */
import { afterAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { runShoot } from "../helpers/cli.ts";
import { writeClientConfig } from "../helpers/client.ts";
import { tempDir } from "../helpers/fixture.ts";
import { randomBytes, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { startRelay } from "../helpers/smtp.ts";
import { encodeHeader } from "../../src/core/archive/tar.ts";
import { archiveName } from "../../src/core/state/naming.ts";

const T = 60_000;
const base = tempDir("shoot-printing-");
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

/** Any control character but the line breaks of the output itself, and the invisible ones. */
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const HOSTILE = "\u001b]0;owned\u0007\u001b[2J\u001b[31mred\r\nFAKE LINE: all is well\u0000 \\x \u202eevil";
// as printed: one line (the line break became a space), every control character escaped
const SHOWN = "\\033]0;owned\\a\\033[2J\\033[31mred FAKE LINE: all is well\\000 \\\\x \\342\\200\\256evil";

test("a server's message with terminal escapes: the outcome, the log, the mailed report and shoot status print it escaped", async () => {
  const server = path.join(base, "server");
  const info = await writeArchive(server, archiveName("web1", new Date(Date.now() - 60_000), "gzip"), randomBytes(4096));
  writeServerStatus(server, info, { final: "SERVER_FAILED", msg: HOSTILE });
  const relay = await startRelay({ tls: "none" });
  try {
    const dest = path.join(base, "dest");
    const config = writeClientConfig(path.join(base, "client.toml"), { dest, sources: [{ name: "web1", remote: server }] });
    fs.appendFileSync(config, `\n[mail]\nto = ["ops@example.com"]\nfrom = "shoot@example.com"\nsmtp = "${relay.url}"\nwhen = "always"\ntimeout = "5s"\n`);

    const r = await runShoot(["client", "--config", config]);
    expect(r.code).toBe(45);
    const printed = r.stdout + r.stderr;
    expect(printed).toContain(SHOWN);
    expect(printed).not.toMatch(RAW);

    expect(relay.received).toHaveLength(1);
    const mail = relay.received[0]!;
    expect(mail.text).toContain(SHOWN);
    expect(mail.text).not.toMatch(RAW);
    expect(mail.subject).not.toMatch(RAW);

    const status = await runShoot(["status", "--config", config]);
    expect(status.stdout).toContain(SHOWN);
    expect(status.stdout + status.stderr).not.toMatch(RAW);
    const nagios = await runShoot(["status", "--config", config, "--nagios"]);
    expect(nagios.stdout.trim().split("\n")).toHaveLength(1);
    expect(nagios.stdout).not.toMatch(RAW);

    // JSON keeps the text as it was, in JSON's own escaping (which leaves characters from U+007F on as they are)
    const json = await runShoot(["status", "--config", config, "--json"]);
    expect(json.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
    expect(JSON.parse(json.stdout).roles[0].sources[0].last.message).toContain("\u001b]0;owned\u0007");
  } finally {
    await relay.close();
  }
}, T);

test("shoot list prints an archive's names, link targets and owners escaped as GNU tar does", async () => {
  const file = path.join(base, "hostile.tar.gz");
  const entry = (name: string, extra: Partial<Parameters<typeof encodeHeader>[0]> = {}) =>
    encodeHeader({ name, type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtimeNs: 0n, ...extra });
  const tar = Buffer.concat([
    entry("evil\u001b]0;owned\u0007\u001b[2Jname"),
    entry("nl\nFAKE 0 1970-01-01 00:00 fake"),
    entry("link", { type: "symlink", linkTarget: "\u001b[31mred\u009b" }),
    entry("owner", { uname: "root\u001b[2J", gname: "x\ty" }),
    Buffer.alloc(1024),
  ]);
  fs.writeFileSync(file, zlib.gzipSync(tar));
  const r = await runShoot(["list", file]);
  expect(r.code).toBe(0);
  expect(r.stdout).not.toMatch(RAW);
  const lines = r.stdout.trim().split("\n");
  expect(lines).toHaveLength(4);
  expect(lines[0]).toEndWith(" evil\\033]0;owned\\a\\033[2Jname");
  expect(lines[1]).toEndWith(" nl\\nFAKE 0 1970-01-01 00:00 fake");
  expect(lines[2]).toEndWith(" link -> \\033[31mred\\302\\233");
  expect(lines[3]).toContain("root\\033[2J/x\\ty");
  // GNU tar prints the same names the same way
  const gnu = Bun.spawnSync(["tar", "-tzf", file], { env: { ...process.env, LC_ALL: "C.UTF-8" } });
  expect(gnu.stdout.toString().split("\n").slice(0, 3)).toEqual(["evil\\033]0;owned\\a\\033[2Jname", "nl\\nFAKE 0 1970-01-01 00:00 fake", "link"]);
  const json = await runShoot(["list", file, "--json"]);
  expect(JSON.parse(json.stdout)[0].name).toBe("evil\u001b]0;owned\u0007\u001b[2Jname");
}, T);
