/**
 * Loaded before every test file (bunfig.toml [test] preload): the suite's temporary files,
 * and those of every process it starts (TMPDIR is inherited), go into one directory of its own
 * under the system's, removed when the suite's process exits. A run killed by a test (a client
 * killed before it removed its ssh socket directory, a demo stopped half-way) leaves nothing in
 * /tmp; a suite that was itself killed is cleaned up by the next one.
 *
 * Bun.spawn without an `env` gives a child the environment the suite started with, not
 * process.env: a test that starts a process which makes temporary files passes `env`.
 */
import { afterAll } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const PREFIX = "shoot-suite-";
const system = process.env.SHOOT_SYSTEM_TMPDIR ?? os.tmpdir();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}

/** Directories of earlier suites whose process is gone. */
function removeAbandoned(): void {
  for (const name of fs.readdirSync(system)) {
    const pid = Number(new RegExp(`^${PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (pid && pid !== process.pid && !alive(pid)) fs.rmSync(path.join(system, name), { recursive: true, force: true });
  }
}

if (!process.env.SHOOT_SUITE_TMPDIR) {
  removeAbandoned();
  const dir = fs.mkdtempSync(path.join(system, `${PREFIX}${process.pid}-`));
  // as /tmp is: anyone may make files here and only their owner remove them (tests run shoot and
  // database servers as unprivileged users, which make their own temporary files in TMPDIR)
  fs.chmodSync(dir, 0o1777);
  process.env.SHOOT_SYSTEM_TMPDIR = system;
  process.env.SHOOT_SUITE_TMPDIR = dir;
  process.env.TMPDIR = dir;
  // an afterAll of a preload runs once, after the last test file
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
}
