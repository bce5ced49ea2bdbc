/**
 * The suite leaves nothing in the system's temporary directory: its preload
 * (test/helpers/temp-root.ts) gives it, and every process it starts, a directory of its own,
 * removed at its end. Shown by a suite of one probe that leaves what killed clients and demos
 * leave (test/helpers/temp-root.probe.ts), run with a scratch directory as the system's.
 */
import { expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawner } from "../../src/io/process.ts";

const ROOT = path.resolve(import.meta.dir, "../..");

test("a suite's temporary files, and its children's, are gone when it ends; so is the directory of a suite that was killed", async () => {
  expect(os.tmpdir()).toBe(process.env.SHOOT_SUITE_TMPDIR!);
  const system = fs.mkdtempSync(path.join(os.tmpdir(), "system-tmp-"));
  const abandoned = path.join(system, "shoot-suite-999999999-AbCdEf");
  fs.mkdirSync(path.join(abandoned, "shoot-ssh-x"), { recursive: true });
  const { SHOOT_SUITE_TMPDIR: _, ...env } = process.env;
  const r = await spawner.run([process.execPath, "test", "./test/helpers/temp-root.probe.ts"], {
    cwd: ROOT, env: { ...env, TMPDIR: system, SHOOT_SYSTEM_TMPDIR: system }, captureStdout: true, stderrLines: 40, timeoutMs: 60_000,
  });
  expect(r.exitCode).toBe(0);
  const used = /probe tmp: (\S+)/.exec(r.stdout + r.stderrTail.join("\n"))?.[1];
  expect(used).toStartWith(path.join(system, "shoot-suite-"));
  expect(fs.readdirSync(system)).toEqual([]);
});
