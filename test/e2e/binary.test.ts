/**
 * The compiled binary, as users copy it: $SHOOT_BIN when set, else a binary built here for
 * this machine by scripts/build.ts. It names its version and target, and files in the
 * directory cron starts it in (.env, bunfig.toml) do not change what it does.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { build, buildVersion, hostTarget, TARGETS } from "../../scripts/build.ts";
import { SHARE_FILES } from "../../scripts/docs.ts";
import { DEFAULT_CONFIG_PATH } from "../../src/core/common/config.ts";
import { spawner } from "../../src/io/process.ts";
import { ROOT } from "../helpers/cli.ts";
import { requireTool } from "../helpers/tools.ts";

let tmp = "";
let bin = "";
/** Version the binary must report; undefined when $SHOOT_BIN came from elsewhere. */
let expectedVersion: string | undefined;

/** The environment of a cron job that sets nothing for shoot or Bun. */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("SHOOT_") && !k.startsWith("BUN_")) env[k] = v;
  }
  return env;
}

async function runIn(cwd: string, argv: string[], env = cleanEnv()) {
  const r = await spawner.run(argv, { cwd, env, captureStdout: true, timeoutMs: 20_000, stderrLines: 50 });
  if (r.timedOut) throw new Error(`${argv.join(" ")} did not finish within 20 s`);
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderrTail.join("\n") };
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-binary-"));
  if (process.env.SHOOT_BIN) {
    bin = path.resolve(process.env.SHOOT_BIN);
    if (!fs.existsSync(bin)) throw new Error(`SHOOT_BIN=${process.env.SHOOT_BIN}: no such file (build it with: bun scripts/build.ts ${hostTarget().name})`);
    fs.accessSync(bin, fs.constants.X_OK);
  } else {
    // no binary given: build one, so this file can never pass without testing a binary
    expectedVersion = await buildVersion();
    const [built] = await build({ targets: [hostTarget().name], outDir: path.join(tmp, "dist"), version: expectedVersion, smoke: false });
    bin = built!.file;
  }
}, 55_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe("compiled binary", () => {
  test("--version names the package version and the target", async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
    const r = await runIn(tmp, [bin, "--version"]);
    expect(r.code).toBe(0);
    const m = /^shoot (\S+) \(([^,)]+), bun [^)]+\)$/.exec(r.stdout.trim());
    expect(m, `unexpected --version output: ${r.stdout}`).not.toBeNull();
    const [, version, target] = m!;
    if (expectedVersion) expect(version).toBe(expectedVersion);
    expect(version!.startsWith(pkg.version)).toBe(true);
    expect(TARGETS.map((t) => t.name)).toContain(target!);
    // a file named after a target must say it is that target
    const named = /^shoot-(.+)$/.exec(path.basename(bin))?.[1];
    if (named && TARGETS.some((t) => t.name === named)) expect(target).toBe(named);
  }, 30_000);

  test("`file` sees an executable for this machine", async () => {
    const file = requireTool("file");
    const r = await runIn(tmp, [file, "-b", bin]);
    expect(r.code).toBe(0);
    const arch = process.arch === "x64" ? "x86-64" : "aarch64";
    expect(r.stdout).toContain(process.platform === "darwin" ? "Mach-O" : "ELF 64-bit");
    if (process.platform === "linux") expect(r.stdout).toContain(arch);
  }, 30_000);

  test("a subcommand's --help written to a pipe is plain text, colours or not in the environment", async () => {
    const { NO_COLOR: _, ...env } = cleanEnv();
    for (const e of [env, { ...env, TERM: "xterm-256color" }, cleanEnv()]) {
      const r = await runIn(tmp, [bin, "server", "--help"], e);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("USAGE");
      expect(r.stdout).toContain("--config");
      expect(JSON.stringify(r.stdout)).not.toContain("\\u001b");
    }
  }, 30_000);

  test("the build ships the man page and the completions beside the binary, all in SHA256SUMS", async () => {
    // $SHOOT_BIN too: what CI tests is dist/ as the build left it
    const dist = path.dirname(bin);
    for (const rel of Object.values(SHARE_FILES)) {
      expect(fs.existsSync(path.join(dist, rel)), `${path.join(dist, rel)} is missing: scripts/build.ts writes it`).toBe(true);
      expect(fs.readFileSync(path.join(dist, rel), "utf8")).toBe(fs.readFileSync(path.join(ROOT, rel), "utf8"));
    }
    const sums = fs.readFileSync(path.join(dist, "SHA256SUMS"), "utf8");
    for (const rel of [path.basename(bin), ...Object.values(SHARE_FILES)]) expect(sums).toContain(`  ${rel}\n`);
    const r = await runIn(dist, [requireTool("sha256sum"), "-c", "SHA256SUMS"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${SHARE_FILES.man}: OK`);
  }, 30_000);

  test("codes --json prints the code table with the golden codes", async () => {
    const r = await runIn(tmp, [bin, "codes", "--json"]);
    expect(r.code).toBe(0);
    const codes = JSON.parse(r.stdout) as { code: number; golden: boolean }[];
    expect(codes.filter((c) => c.golden).map((c) => c.code).sort((a, b) => a - b)).toEqual([4, 9, 30]);
  }, 30_000);

  test(".env and bunfig.toml in the working directory do not change which configuration is read", async () => {
    const cwd = path.join(tmp, "cron-cwd");
    fs.mkdirSync(cwd, { recursive: true });
    const evil = path.join(tmp, "evil.toml");
    fs.writeFileSync(evil, `[server]\nsources = [${JSON.stringify(cwd)}]\nbackup_dir = ${JSON.stringify(tmp)}\n`);
    const marker = path.join(tmp, "preload-ran");
    fs.writeFileSync(path.join(cwd, ".env"), `SHOOT_CONFIG=${evil}\nSHOOT_DOTENV_PROBE=loaded\n`);
    fs.writeFileSync(path.join(cwd, "preload.ts"), `require("node:fs").writeFileSync(${JSON.stringify(marker)}, "x");\nprocess.env.SHOOT_CONFIG = ${JSON.stringify(evil)};\n`);
    fs.writeFileSync(path.join(cwd, "bunfig.toml"), `preload = ["./preload.ts"]\n`);

    // control: plain bun in that directory does load both, so the trap is real
    fs.writeFileSync(path.join(cwd, "probe.ts"), `console.log(process.env.SHOOT_DOTENV_PROBE ?? "none");\n`);
    const probe = await runIn(cwd, [process.execPath, "probe.ts"]);
    expect(probe.stdout.trim()).toBe("loaded");
    expect(fs.existsSync(marker)).toBe(true);
    fs.rmSync(marker);

    const r = await runIn(cwd, [bin, "check-config"]);
    const said = `${r.stdout}\n${r.stderr}`;
    expect(said).toContain(DEFAULT_CONFIG_PATH);
    expect(said).not.toContain(evil);
    expect(fs.existsSync(marker)).toBe(false);
    // with no file at the default path the run fails as a missing configuration, not as success
    if (!fs.existsSync(DEFAULT_CONFIG_PATH)) expect(r.code).not.toBe(0);
  }, 30_000);
});
