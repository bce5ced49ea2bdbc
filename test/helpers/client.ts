/** Client configurations and runs for end-to-end tests. */
import { expect } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { sortArchives } from "../../src/core/state/naming.ts";
import { heldCopies } from "../../src/core/state/copies.ts";
import { runShoot, type ShootResult } from "./cli.ts";
import { statusRecords } from "./fixture.ts";
import type { SshServer } from "./sshd.ts";
import { requireTool } from "./tools.ts";

export interface SourceSpec {
  name: string;
  remote: string;
  port?: number;
  identity?: string;
  bwlimit?: string;
}

export interface ClientSpec {
  dest: string;
  sources: SourceSpec[];
  keep?: number;
  max_age?: string;
  concurrency?: number;
  reserve?: string;
  timeout?: string;
  connect_timeout?: string;
  known_hosts?: string;
  accept_new_host_key?: boolean;
  verify?: "deep" | "checksum";
}

const q = (s: string) => JSON.stringify(s);

export function writeClientConfig(file: string, c: ClientSpec): string {
  const lines = ["[client]", `dest_dir = ${q(c.dest)}`, `reserve = ${q(c.reserve ?? "0")}`];
  if (c.keep !== undefined) lines.push(`keep = ${c.keep}`);
  if (c.max_age) lines.push(`max_age = ${q(c.max_age)}`);
  if (c.concurrency !== undefined) lines.push(`concurrency = ${c.concurrency}`);
  lines.push(`timeout = ${q(c.timeout ?? "30s")}`, `connect_timeout = ${q(c.connect_timeout ?? "10s")}`);
  if (c.known_hosts) lines.push(`known_hosts = ${q(c.known_hosts)}`);
  if (c.accept_new_host_key !== undefined) lines.push(`accept_new_host_key = ${c.accept_new_host_key}`);
  if (c.verify) lines.push(`verify = ${q(c.verify)}`);
  for (const s of c.sources) {
    lines.push("", "[[client.source]]", `name = ${q(s.name)}`, `remote = ${q(s.remote)}`);
    if (s.port !== undefined) lines.push(`port = ${s.port}`);
    if (s.identity) lines.push(`identity = ${q(s.identity)}`);
    if (s.bwlimit) lines.push(`bwlimit = ${q(s.bwlimit)}`);
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

/** A source reached through the test sshd with its full-access key. */
export function sshSource(sshd: SshServer, name: string, dir: string, extra: Partial<SourceSpec> = {}): SourceSpec {
  return { name, remote: `${sshd.user}@127.0.0.1:${dir}`, port: sshd.port, identity: sshd.userKey.key, ...extra };
}

export interface ClientRun extends ShootResult {
  /** The outcome printed with --json. */
  outcome: { code: number; message: string; sources: Array<{ name: string; code: number; message: string; archive?: { file: string; size: number; md5: string } }> };
  /** Per-source code, by name. */
  codes: Record<string, number>;
  records: Array<Record<string, any>>;
}

export async function runClient(config: string, dest: string, names: string[] = [], timeoutMs = 90_000): Promise<ClientRun> {
  const r = await runShoot(["client", "--config", config, "--json", ...names], { timeoutMs });
  let outcome: ClientRun["outcome"];
  try {
    outcome = JSON.parse(r.stdout);
  } catch {
    throw new Error(`shoot client printed no JSON outcome (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  const codes = Object.fromEntries((outcome.sources ?? []).map((s) => [s.name, s.code]));
  const statusFile = path.join(dest, "client.status");
  const records = fs.existsSync(statusFile) ? statusRecords(statusFile) : [];
  return { ...r, outcome, codes, records };
}

/** Every file under `root`, relative, sorted (what a run left behind). */
export function listTree(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(path.relative(root, p));
    }
  };
  if (fs.existsSync(root)) walk(root);
  return out.sort();
}

/** `md5sum -c` passes for every archive in `dir`; returns the copies, oldest first in the product's order (when verified). */
export function md5sumCheck(dir: string): string[] {
  const held = heldCopies(dir);
  const copies = [...held, ...sortArchives(fs.readdirSync(dir)).filter((n) => !held.includes(n))];
  for (const a of copies) {
    const r = Bun.spawnSync([requireTool("md5sum"), "-c", `${a}.md5`], { cwd: dir });
    expect({ archive: a, code: r.exitCode, out: r.stdout.toString() }).toEqual({ archive: a, code: 0, out: `${a}: OK\n` });
  }
  return copies;
}
