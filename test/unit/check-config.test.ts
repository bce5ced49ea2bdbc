import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { parseConfig } from "../../src/core/common/config.ts";
import { configWarnings, durationText, resolvedText, sizeText } from "../../src/core/setup/check.ts";

const ROOT = path.resolve(import.meta.dir, "../..");

describe("check-config's resolved text", () => {
  test.each([
    [1024 ** 3, '"1GiB"'], [512 * 1024 ** 2, '"512MiB"'], [1536 * 1024, '"1536KiB"'], [1000, "1000"], [0, "0"],
  ])("size %d is written %s", (n, want) => expect(sizeText(n)).toBe(want));

  test.each([
    [6 * 3_600_000, '"6h"'], [26 * 3_600_000, '"26h"'], [86_400_000, '"1d"'], [90_000, '"90s"'], [1500, '"1500ms"'], [0, '"0s"'],
  ])("duration %d ms is written %s", (ms, want) => expect(durationText(ms)).toBe(want));

  test("reads back as the same configuration, every section and every default", () => {
    const example = fs.readFileSync(path.join(ROOT, "examples/shoot.toml"), "utf8");
    const mail = '[mail]\nto = ["ops@example.com"]\nfrom = "shoot@web1"\nsmtp = "smtp://mail.example.com:587"\nuser = "shoot"\npassword_file = "/etc/shoot/smtp.pass"\n';
    for (const text of [example, `${example}\n`.replace(/^\[mail\][\s\S]*?(?=^\[monitor\])/m, mail)]) {
      const cfg = parseConfig(text, "a.toml", "web1");
      const again = parseConfig(resolvedText(cfg), "b.toml", "other-host");
      expect({ ...again, file: "" }).toEqual({ ...cfg, file: "" });
    }
  });
});

test("check-config's warnings: what a run would trip over, with the code it would end with", () => {
  const cfg = parseConfig(
    [
      "[server]", 'sources = ["/here", "/gone"]', 'backup_dir = "/nobackup"',
      "[client]", 'dest_dir = "/dest"', 'known_hosts = "/kh"',
      "[[client.source]]", 'name = "web1"', 'remote = "root@web1:/b"', 'identity = "/key"',
      "[mail]", 'to = ["a@b"]', 'from = "c@d"', 'smtp = "smtp://relay:587"', 'user = "u"', 'password_file = "/pw"',
    ].join("\n"),
    "c.toml",
    "web1",
  );
  const there = new Set(["/here", "/dest"]);
  expect(configWarnings(cfg, (p) => there.has(p))).toEqual([
    "the source /gone does not exist (yet): a run fails with 20 SOURCE_MISSING until it does",
    "backup_dir /nobackup does not exist: a run fails with 22 BACKUP_DIR_UNUSABLE; create it: install -d -m 700 /nobackup",
    "known_hosts /kh does not exist: every pull over ssh fails with 41 HOST_KEY_FAILED until it holds the servers' keys (ssh-keyscan)",
    "[[client.source]] web1: identity /key does not exist: its pulls fail with 42 STATUS_PULL_FAILED (ssh-keygen makes it)",
    "[mail] password_file /pw does not exist: reports cannot be mailed (84 MAIL_FAILED); they wait in the spool",
  ]);
  expect(configWarnings(cfg, () => true)).toEqual([]);
});
