/**
 * The fault tally itself: every fault file reports to it (so the summary line counts the
 * whole directory), and the line reads as the suite promises.
 */
import { expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { faultFile, summaryLine } from "../helpers/faults.ts";

faultFile(import.meta.path);

/** crash-server.test.ts aims its kills at each step and keeps its own count. */
const OWN_COUNT = new Set(["crash-server.test.ts"]);

test("every fault file reports to the tally", () => {
  const dir = import.meta.dir;
  const silent = fs.readdirSync(dir)
    .filter((n) => n.endsWith(".test.ts") && !OWN_COUNT.has(n))
    .filter((n) => !fs.readFileSync(path.join(dir, n), "utf8").includes("faultFile(import.meta.path)"));
  expect(silent).toEqual([]);
});

test("the summary line", () => {
  expect(summaryLine({ injected: 312, goodLost: 0, corruptAccepted: 0, hangs: 0, byKind: {} }))
    .toBe("faults: 312 injected, 0 good backups lost, 0 corrupt copies accepted, 0 hangs");
});
