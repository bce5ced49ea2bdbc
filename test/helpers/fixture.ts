/** Temporary trees and configurations for tests: real files on disk, removed afterwards. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { sortArchives } from "../../src/core/state/naming.ts";

export function tempDir(prefix = "shoot-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Write files: { "a/b.txt": "content", "dir/": null } (a trailing slash makes a directory). */
export function writeTree(root: string, files: Record<string, string | Uint8Array | null>): void {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    if (rel.endsWith("/")) {
      fs.mkdirSync(p, { recursive: true });
      continue;
    }
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content ?? "");
  }
}

export interface ServerFixture {
  root: string;
  src: string;
  backup: string;
  config: string;
  /** Rewrite the config with extra [server] lines. */
  setServer(extra: string): void;
  cleanup(): void;
}

export function serverFixture(extra = "", files?: Record<string, string | null>): ServerFixture {
  const root = tempDir();
  const src = path.join(root, "src");
  const backup = path.join(root, "backup");
  fs.mkdirSync(src, { recursive: true });
  fs.mkdirSync(backup, { mode: 0o700 });
  writeTree(src, files ?? {
    "etc/hosts": "127.0.0.1 localhost\n",
    "etc/app/app.conf": "answer = 42\n",
    "home/ann/notes.txt": "hello\n".repeat(100),
    "home/ann/empty/": null,
    "var/www/index.html": "<h1>hi</h1>\n",
  });
  const config = path.join(root, "shoot.toml");
  const fx: ServerFixture = {
    root, src, backup, config,
    setServer(more: string) {
      fs.writeFileSync(config, `[server]\nname = "test"\nsources = [${JSON.stringify(src)}]\nbackup_dir = ${JSON.stringify(backup)}\nreserve = "0"\n${more}\n`);
    },
    cleanup() {
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  fx.setServer(extra);
  return fx;
}

export function statusRecords(file: string): Array<Record<string, any>> {
  return fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/** The archives in a server's backup_dir, oldest first in the product's own order. */
export function archivesIn(dir: string): string[] {
  return sortArchives(fs.readdirSync(dir));
}
