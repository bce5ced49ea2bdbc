/**
 * The command line as a person meets it: every subcommand's --help is headed with the command
 * as it is typed (`shoot restore`), every flag has a description, and --version says what it is.
 */
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { SUBCOMMANDS } from "../../src/cli/root.ts";
import { ROOT, runShoot } from "../helpers/cli.ts";

describe("shoot COMMAND --help", () => {
  for (const name of Object.keys(SUBCOMMANDS)) {
    test(`${name}: headed "USAGE shoot ${name}", every flag described`, async () => {
      const r = await runShoot([name, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`(shoot ${name})\n`);
      expect(r.stdout).toMatch(new RegExp(`^USAGE shoot ${name}( |$)`, "m"));
      // an option line is "  --flag    what it does": none may stand without its description
      const options = r.stdout.slice(r.stdout.indexOf("OPTIONS")).split("\n").filter((l) => /^\s+-/.test(l));
      expect(options.length).toBeGreaterThan(0);
      expect(options.filter((l) => !/^\s+\S.*\s{2,}\S/.test(l.trimEnd()))).toEqual([]);
    });
  }

  test("restore: --no-checksum says what it does", async () => {
    const r = await runShoot(["restore", "--help"]);
    expect(r.stdout).toMatch(/--no-checksum\s+Restore an archive that has no \.md5 file \(one made by hand\) without that check/);
  });
});

test("--version from source: the package's version marked -dev, and where it runs from", async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
  const r = await runShoot(["--version"]);
  expect(r.code).toBe(0);
  if (process.env.SHOOT_BIN) expect(r.stdout).toMatch(/^shoot \S+ \([a-z0-9-]+, bun \d+\.\d+\.\d+\)\n$/);
  else expect(r.stdout).toBe(`shoot ${pkg.version}-dev (source, bun ${Bun.version})\n`);
});
