/** A tiny tmpfs mounted for one test (needs root, as CI runs), to fill a file system for real. */
import fs from "node:fs";
import { tempDir } from "./fixture.ts";

export interface Mount {
  dir: string;
  unmount(): void;
}

export function mountTmpfs(size: string): Mount {
  if (process.getuid?.() !== 0) throw new Error("this test mounts a tmpfs and must run as root (CI runs as root)");
  const dir = tempDir("shoot-tmpfs-");
  const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir]);
  if (r.exitCode !== 0) throw new Error(`mount tmpfs failed: ${r.stderr.toString()}`);
  return {
    dir,
    unmount() {
      Bun.spawnSync(["umount", "-l", dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
