/** A server, a backup host and offsite stores, for the offsite tests: real runs of shoot. */
import fs from "node:fs";
import path from "node:path";
import { spawner } from "../../src/io/process.ts";
import { runShoot, type ShootResult } from "../helpers/cli.ts";
import { tempDir, writeTree } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";
import type { S3Endpoint } from "../helpers/ceph.ts";

export interface StoreSpec {
  name: string;
  bucket: string;
  prefix?: string;
  lock?: string;
  encrypt_to?: string[];
  part_size?: string;
  keep?: number;
  /** A wrong secret, another endpoint. */
  secret?: string;
  endpoint?: string;
  timeout?: string;
}

export interface Setup {
  root: string;
  src: string;
  backup: string;
  dest: string;
  config: string;
  creds: string;
  shoot(args: string[], timeoutMs?: number): Promise<ShootResult>;
  /** A server run then a client run (--json); returns the client's outcome. */
  run(): Promise<{ client: ShootResult; outcome: any }>;
  cleanup(): void;
}

const q = JSON.stringify;

export function setup(store: S3Endpoint, stores: StoreSpec[], files?: Record<string, string | Uint8Array | null>, extraClient = "", sections = ""): Setup {
  const root = tempDir("shoot-offsite-");
  const src = path.join(root, "src");
  const backup = path.join(root, "backup");
  const dest = path.join(root, "dest");
  fs.mkdirSync(backup, { mode: 0o700 });
  writeTree(src, files ?? {
    "etc/app.conf": "answer = 42\n",
    "home/ann/notes.txt": "notes\n".repeat(500),
    "home/ann/empty/": null,
    "var/data.bin": crypto.getRandomValues(new Uint8Array(60_000)),
  });
  settleTimes(src);
  const creds = path.join(root, "creds");
  fs.writeFileSync(creds, `[default]\naws_access_key_id = ${store.accessKeyId}\naws_secret_access_key = ${store.secretAccessKey}\n`, { mode: 0o600 });
  const lines = [
    "[server]", `name = "web1"`, `sources = [${q(src)}]`, `backup_dir = ${q(backup)}`, `reserve = "0"`, "",
    "[client]", `dest_dir = ${q(dest)}`, `reserve = "0"`, extraClient, "",
    "[[client.source]]", `name = "web1"`, `remote = ${q(backup)}`, "",
  ];
  for (const s of stores) {
    let credFile = creds;
    if (s.secret) {
      credFile = path.join(root, `creds-${s.name}`);
      fs.writeFileSync(credFile, `aws_access_key_id = ${store.accessKeyId}\naws_secret_access_key = ${s.secret}\n`, { mode: 0o600 });
    }
    lines.push("[[offsite]]", `name = ${q(s.name)}`, `endpoint = ${q(s.endpoint ?? store.endpoint)}`, `region = ${q(store.region)}`, `bucket = ${q(s.bucket)}`,
      `prefix = ${q(s.prefix ?? `t${Date.now()}${Math.floor(Math.random() * 1e6)}/`)}`, `credentials_file = ${q(credFile)}`, `timeout = ${q(s.timeout ?? "20s")}`);
    if (s.lock) lines.push(`lock = ${q(s.lock)}`);
    if (s.encrypt_to) lines.push(`encrypt_to = ${q(s.encrypt_to)}`);
    if (s.part_size) lines.push(`part_size = ${q(s.part_size)}`);
    if (s.keep) lines.push(`keep = ${s.keep}`);
    lines.push("");
  }
  const config = path.join(root, "shoot.toml");
  fs.writeFileSync(config, `${lines.join("\n")}\n${sections}\n`);
  const shoot = (args: string[], timeoutMs = 120_000) => runShoot([...args, "--config", config], { timeoutMs });
  return {
    root, src, backup, dest, config, creds, shoot,
    async run() {
      const s = await shoot(["server"]);
      if (s.code !== 0) throw new Error(`shoot server failed (${s.code}): ${s.stderr}`);
      const client = await shoot(["client", "--json"]);
      return { client, outcome: JSON.parse(client.stdout) };
    },
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

/**
 * Whole-second times on every entry: tar keeps a file's time to the second or finer by the
 * header it uses, and what the tests compare is the restore, not that choice.
 */
export function settleTimes(root: string, when = new Date("2026-01-02T03:04:05Z")): void {
  const all = fs.readdirSync(root, { recursive: true }).map((r) => path.join(root, String(r)));
  for (const p of [...all.sort().reverse(), root]) fs.utimesSync(p, when, when);
}

/** The archives held on the backup host for web1, oldest first. */
export function heldArchives(s: Setup): string[] {
  return fs.readdirSync(path.join(s.dest, "web1")).filter((n) => /\.tar(\.gz|\.zst)?$/.test(n)).sort();
}

/** Extract a tar file with GNU tar into a new directory. */
export async function gnuExtract(file: string, into: string): Promise<void> {
  fs.mkdirSync(into, { recursive: true });
  const r = await spawner.run([requireTool("tar"), "-xf", file, "-C", into], { timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new Error(`tar -xf failed: ${r.stderrTail.join(" ")}`);
}
