/**
 * Run by test/unit/temp-root.test.ts as a suite of its own: leaves behind what a killed client
 * and an interrupted demo leave, itself and through a child process, in the temporary directory.
 */
import { expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

test("leave what killed runs leave", () => {
  fs.mkdtempSync(path.join(os.tmpdir(), "shoot-ssh-"));
  fs.writeFileSync(path.join(fs.mkdtempSync(path.join(os.tmpdir(), "shoot-demo-")), "shoot.toml"), "");
  // as shoot's spawner and the test helpers start processes: with the environment as it is now
  const child = Bun.spawnSync(["sh", "-c", 'mkdir "$TMPDIR/shoot-ssh-child" && echo "$TMPDIR"'], { env: process.env });
  expect(child.exitCode).toBe(0);
  console.log(`probe tmp: ${child.stdout.toString().trim()}`);
});
