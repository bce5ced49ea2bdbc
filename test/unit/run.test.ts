/**
 * One run's life (state/run.ts), on real files: the lock taken and always released, RUN_START
 * first, an unexpected error turned into a final record, a run refused before it began named
 * by its id and recording nothing in the status file of the run that holds the lock.
 */
import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ShootError } from "../../src/core/common/errors.ts";
import { systemClock } from "../../src/core/common/deps.ts";
import { acquireLock, currentLock } from "../../src/core/state/lock.ts";
import { readStatusFile } from "../../src/core/state/status.ts";
import { unusableDir, withRun, type RunSpec } from "../../src/core/state/run.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-run-"));
  dirs.push(d);
  return d;
}

const RUN_ID = /^\d{8}T\d{6}Z-\d+-[0-9a-f]{4}$/;

function spec(d: string, extra: Partial<RunSpec> = {}): RunSpec {
  return {
    role: "client", dir: d, statusName: "client.status", clock: systemClock, hostname: "backup1", unusable: "DEST_UNUSABLE",
    runStart: { detail: "web1", data: { sources: ["web1"] } },
    failure: (e) => ({ name: e instanceof ShootError ? "PULL_FAILED" : "INTERNAL_ERROR", message: `failed: ${(e as Error).message}`, step: "end" }),
    ...extra,
  };
}

describe("withRun", () => {
  test("a run: the lock held while it works, RUN_START first, its own final record last, the lock released", async () => {
    const d = dir();
    const o = await withRun(spec(d), async (f) => {
      expect(currentLock(d)?.token).toBe(f.lock!.info.token);
      f.status.write("NEW_ARCHIVE", "done", { step: "end" });
      return { role: "client", host: "backup1", run: f.run, started: f.started, ended: new Date(), code: 4, message: "done", warnings: [], statusFile: f.statusFile };
    });
    expect(o.run).toMatch(RUN_ID);
    expect(currentLock(d)).toBeUndefined();
    const recs = readStatusFile(path.join(d, "client.status"))!.records;
    expect(recs.map((r) => r.name)).toEqual(["RUN_START", "NEW_ARCHIVE"]);
    expect(recs[0]).toMatchObject({ role: "client", run: o.run, host: "backup1", format: "shoot-status", msg: expect.stringMatching(/ client run on backup1: web1$/) });
    expect((recs[0]!.data as { sources: string[] }).sources).toEqual(["web1"]);
  });

  test("an error the run did not expect becomes its final record; the status file is closed and the lock released", async () => {
    const d = dir();
    const o = await withRun(spec(d), async () => {
      throw new Error("disk on fire");
    });
    expect(o).toMatchObject({ code: 1, message: "failed: disk on fire", statusFile: path.join(d, "client.status") });
    expect(readStatusFile(path.join(d, "client.status"))!.records.at(-1)).toMatchObject({ name: "INTERNAL_ERROR", step: "end", run: o.run });
    expect(currentLock(d)).toBeUndefined();
  });

  test("a run refused because another holds the lock: ALREADY_RUNNING with its own id, nothing written to the holder's status file", async () => {
    const d = dir();
    const holder = acquireLock(d, "client");
    fs.writeFileSync(path.join(d, "client.status"), "the holder's records\n");
    try {
      let worked = false;
      const o = await withRun(spec(d), async () => {
        worked = true;
        throw new Error("not reached");
      });
      expect(worked).toBe(false);
      expect(o.code).toBe(12);
      expect(o.run).toMatch(RUN_ID);
      expect(o.statusFile).toBeUndefined();
      expect(fs.readFileSync(path.join(d, "client.status"), "utf8")).toBe("the holder's records\n");
      expect(currentLock(d)?.token).toBe(holder.info.token);
    } finally {
      holder.release();
    }
  });

  test("under the wrapper: its lock checked, not taken; its run id kept; the status file appended to", async () => {
    const d = dir();
    const wrapper = acquireLock(d, "wrapper");
    fs.writeFileSync(path.join(d, "server.status"), "");
    try {
      const parent = { run: "20261126T021500Z-1-abcd", lockToken: wrapper.info.token };
      const s = spec(d, { role: "server", statusName: "server.status", unusable: "BACKUP_DIR_UNUSABLE", parent });
      const o = await withRun(s, async (f) => {
        expect(f.lock).toBeUndefined();
        f.status.write("STEP", "working");
        return { role: "server", host: "web1", run: f.run, started: f.started, ended: new Date(), code: 9, message: "", warnings: [] };
      });
      expect(o.run).toBe(parent.run);
      expect(readStatusFile(path.join(d, "server.status"))!.records.map((r) => r.name)).toEqual(["STEP"]);
      expect(currentLock(d)?.token).toBe(wrapper.info.token);
      const stranger = await withRun({ ...s, parent: { ...parent, lockToken: "not-the-wrappers" } }, async () => {
        throw new Error("not reached");
      });
      expect(stranger.code).toBe(12);
      expect(stranger.message).toContain("the wrapper's lock");
    } finally {
      wrapper.release();
    }
  });
});

test("unusableDir names what is wrong with a run's directory", () => {
  const d = dir();
  expect(unusableDir(d, "backup_dir")).toBeUndefined();
  expect(unusableDir(path.join(d, "gone"), "backup_dir")).toBe(`backup_dir ${path.join(d, "gone")} does not exist (create it, mode 0700)`);
  fs.writeFileSync(path.join(d, "file"), "");
  expect(unusableDir(path.join(d, "file"), "dest_dir")).toBe(`dest_dir ${path.join(d, "file")} is not a directory`);
});
