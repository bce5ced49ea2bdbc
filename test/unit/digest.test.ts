import { afterEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileDigests } from "../../src/core/digest.ts";
import { tempDir } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";

const T = 30_000;
let root: string;
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

function coreutils(tool: "md5sum" | "sha256sum", file: string): string {
  const r = Bun.spawnSync([requireTool(tool), file]);
  expect(r.exitCode).toBe(0);
  return r.stdout.toString().split(" ")[0]!;
}

describe("fileDigests", () => {
  test("MD5 and SHA-256 agree with md5sum and sha256sum, for sizes around the read size", async () => {
    root = tempDir();
    for (const size of [0, 1, (1 << 20) - 1, 1 << 20, (3 << 20) + 17]) {
      const file = path.join(root, `f${size}`);
      fs.writeFileSync(file, randomBytes(size));
      const both = await fileDigests(file, true);
      expect({ size, ...both }).toEqual({ size, md5: coreutils("md5sum", file), sha256: coreutils("sha256sum", file) });
      expect(await fileDigests(file, false)).toEqual({ md5: both.md5 });
    }
  }, T);

  test("a file that cannot be read rejects with the reason, on either thread", async () => {
    root = tempDir();
    const missing = path.join(root, "missing");
    await expect(fileDigests(missing, true)).rejects.toThrow(/ENOENT|no such file/);
    await expect(fileDigests(missing, false)).rejects.toThrow(/ENOENT|no such file/);
  }, T);
});
