import { afterEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileDigest } from "../../src/core/transfer/digest.ts";
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

describe("fileDigest", () => {
  test("MD5 and SHA-256 agree with md5sum and sha256sum, for sizes around the read size", async () => {
    root = tempDir();
    for (const size of [0, 1, (1 << 20) - 1, 1 << 20, (3 << 20) + 17]) {
      const file = path.join(root, `f${size}`);
      fs.writeFileSync(file, randomBytes(size));
      const got = { md5: await fileDigest(file, "md5"), sha256: await fileDigest(file, "sha256") };
      expect({ size, ...got }).toEqual({ size, md5: coreutils("md5sum", file), sha256: coreutils("sha256sum", file) });
    }
  }, T);

  test("a file that cannot be read rejects with the reason", async () => {
    root = tempDir();
    const missing = path.join(root, "missing");
    await expect(fileDigest(missing, "sha256")).rejects.toThrow(/ENOENT|no such file/);
    await expect(fileDigest(missing, "md5")).rejects.toThrow(/ENOENT|no such file/);
  }, T);
});
