/**
 * `shoot list ARCHIVE` on real archives: its lines name what GNU tar lists, --json gives the same
 * entries, a truncated archive is refused before anything is printed, and a reader that stops
 * early (`| head`) ends the listing quietly.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot, shootArgv } from "../helpers/cli.ts";
import { archivesIn, serverFixture, type ServerFixture } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";

const T = 60_000;
let fx: ServerFixture;
let archive: string;

beforeAll(async () => {
  // enough entries that the listing is larger than a pipe holds (64 KiB)
  const files: Record<string, string | null> = { "etc/hosts": "127.0.0.1 localhost\n", "home/ann/empty/": null };
  for (let i = 0; i < 3000; i++) files[`var/many/file-${String(i).padStart(5, "0")}.txt`] = `${i}\n`;
  fx = serverFixture("", files);
  fs.symlinkSync("../etc/hosts", path.join(fx.src, "var/hosts-link"));
  const r = await runShoot(["wrapper", "--config", fx.config]);
  expect(r.code).toBe(0);
  archive = path.join(fx.backup, archivesIn(fx.backup).at(-1)!);
}, T);
afterAll(() => fx?.cleanup());

test("each entry as GNU tar lists it, in ls -l form; --json gives the same entries", async () => {
  const tar = Bun.spawnSync([requireTool("tar"), "-tzf", archive]);
  expect(tar.exitCode).toBe(0);
  const names = tar.stdout.toString().trim().split("\n").map((n) => n.replace(/\/$/, ""));
  const r = await runShoot(["list", "--config", fx.config, archive]);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
  const lines = r.stdout.trimEnd().split("\n");
  expect(lines.length).toBe(names.length);
  expect(lines.map((l) => l.split(/ +/).slice(5).join(" ").replace(/\/$/, "").replace(/ -> .*$/, ""))).toEqual(names);
  expect(lines.find((l) => l.includes("var/hosts-link"))).toMatch(/^l.* -> \.\.\/etc\/hosts$/);
  expect(lines.find((l) => l.endsWith("etc/hosts"))).toMatch(/^-rw-r--r-- +\S+ +20 /);

  const j = await runShoot(["list", "--json", "--config", fx.config, archive]);
  expect(j.code).toBe(0);
  const entries = JSON.parse(j.stdout) as Array<{ name: string; size: number }>;
  expect(entries.map((e) => e.name)).toEqual(names);
}, T);

test("a truncated archive is refused before anything is printed", async () => {
  const cut = path.join(fx.root, "cut.tar.gz");
  const bytes = fs.readFileSync(archive);
  fs.writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
  const r = await runShoot(["list", cut]);
  expect(r.code).toBe(95);
  expect(r.stdout).toBe("");
  expect(r.stderr).toMatch(/cannot be read whole: the archive is truncated: the gzip stream ends early, at byte \d+ of the file/);
}, T);

test("a reader that stops early (| head -1) ends the listing quietly, with exit 0", async () => {
  const bash = requireTool("bash");
  const p = Bun.spawn([bash, "-c", 'set -o pipefail; "$@" | head -1', "bash", ...shootArgv(), "list", archive], {
    stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" },
  });
  const [out, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  expect({ code, stderr, lines: out.trimEnd().split("\n").length }).toEqual({ code: 0, stderr: "", lines: 1 });
}, T);
