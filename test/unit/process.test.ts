/**
 * The one helper every child process goes through, with real children: a missing program is
 * named, standard input is closed, the time-out ends the child, the tail of standard error is
 * kept, and a grandchild that keeps the pipes open does not keep the caller waiting.
 */
import { describe, expect, test } from "bun:test";
import { ToolMissingError, describeResult, spawner } from "../../src/io/process.ts";

const T = 30_000;

describe("spawner", () => {
  test("a program that is not installed is named, with the package that installs it", () => {
    expect(() => spawner.start(["rsync-not-here-at-all"])).toThrow(ToolMissingError);
    const e = (() => {
      try {
        spawner.start(["/nonexistent/rsync"]);
      } catch (err) {
        return err as Error;
      }
      return undefined;
    })();
    expect(e?.message).toBe("rsync is not installed (or not on PATH); install it with: apt-get install rsync");
  });

  test("standard input is closed: a child that reads it gets end-of-file at once", async () => {
    const r = await spawner.run(["sh", "-c", "cat; echo read-done"], { captureStdout: true, timeoutMs: 10_000 });
    expect({ code: r.exitCode, out: r.stdout, timedOut: r.timedOut }).toEqual({ code: 0, out: "read-done\n", timedOut: false });
  }, T);

  test("the time-out ends the child and says so; the last lines of standard error are kept", async () => {
    const began = performance.now();
    const r = await spawner.run(["sh", "-c", "for i in 1 2 3 4 5; do echo line$i >&2; done; exec sleep 30"], { timeoutMs: 300, stderrLines: 2 });
    expect(performance.now() - began).toBeLessThan(5_000);
    expect({ timedOut: r.timedOut, signal: r.signal, tail: r.stderrTail }).toEqual({ timedOut: true, signal: "SIGTERM", tail: ["line4", "line5"] });
    expect(describeResult(r)).toBe("sh timed out: line4 | line5");
  }, T);

  test("a grandchild that keeps the pipes open does not hold the caller once the child has exited", async () => {
    // the background sleep inherits stdout and stderr and outlives its parent by 20 s
    const began = performance.now();
    const r = await spawner.run(["sh", "-c", "echo warn >&2; sleep 20 & echo $!; exit 3"], { captureStdout: true, timeoutMs: 60_000 });
    const waited = performance.now() - began;
    const grandchild = Number(r.stdout.trim());
    try {
      expect({ code: r.exitCode, tail: r.stderrTail }).toEqual({ code: 3, tail: ["warn"] });
      expect(grandchild).toBeGreaterThan(1);
      expect(waited).toBeGreaterThanOrEqual(1_900); // the pipes were given their grace
      expect(waited).toBeLessThan(10_000);
    } finally {
      if (grandchild > 1) process.kill(grandchild, "SIGTERM");
    }
  }, T);
});
