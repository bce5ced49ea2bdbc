/**
 * Database dumps: the command lines (pure, tested by table), and running one so that its
 * output streams into the archive (or only through a hash, to tell whether it changed) with
 * its exit status checked. A dump that failed, hung or could not start is a DumpError with its
 * own code: the archive it was going into is never counted.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { DumpConfig } from "../common/config.ts";
import { ShootError, errnoCode, errorMessage } from "../common/errors.ts";
import { formatDuration } from "../common/units.ts";
import type { StreamedEntry } from "../archive/streamed.ts";
import { ToolMissingError, type Child, type RunResult, type Spawner } from "../../io/process.ts";

const PROGRAM: Record<Exclude<DumpConfig["kind"], "command">, string> = {
  postgresql: "pg_dump", mariadb: "mariadb-dump", mysql: "mysqldump", sqlite: "sqlite3",
};
const INSTALL: Record<string, string> = {
  pg_dump: "apt-get install postgresql-client", "mariadb-dump": "apt-get install mariadb-client",
  mysqldump: "apt-get install default-mysql-client", sqlite3: "apt-get install sqlite3",
};

/**
 * The argv that dumps `d` to standard output. `restrictKey` (PostgreSQL): the key pg_dump puts
 * in its \restrict line; pg_dump picks a random one otherwise, and an unchanged database would
 * never give the same dump twice.
 */
export function dumpArgv(d: DumpConfig, restrictKey?: string): string[] {
  if (d.kind === "command") return [...d.command!];
  const target = d.target!;
  switch (d.kind) {
    case "postgresql":
      return [
        PROGRAM.postgresql, "--no-password",
        ...(d.host ? ["--host", d.host] : []), ...(d.port ? ["--port", String(d.port)] : []), ...(d.user ? ["--username", d.user] : []),
        ...(restrictKey ? [`--restrict-key=${restrictKey}`] : []), ...d.options, "--dbname", target,
      ];
    case "mariadb":
    case "mysql": {
      const conn = d.host?.startsWith("/") ? [`--socket=${d.host}`] : d.host ? [`--host=${d.host}`] : [];
      return [
        PROGRAM[d.kind], "--single-transaction", "--skip-dump-date", "--routines", "--events",
        ...conn, ...(d.port ? [`--port=${d.port}`] : []), ...(d.user ? [`--user=${d.user}`] : []), ...d.options, "--databases", target,
      ];
    }
    case "sqlite":
      return [PROGRAM.sqlite, "-readonly", "-bail", ...d.options, target, ".dump"];
  }
}

/** What a dump must end with to be whole, where its exit status does not say (sqlite3 exits 0 after an error in .dump). */
function wholeEnding(d: DumpConfig): string | undefined {
  return d.kind === "sqlite" ? "COMMIT;\n" : undefined;
}

/**
 * A key for pg_dump's \restrict line that stays the same from run to run but cannot be
 * guessed from outside: derived from a secret kept in backup_dir (mode 0600, made once).
 */
export function restrictKey(backupDir: string, name: string): string {
  const file = path.join(backupDir, ".shoot-dump-secret");
  let secret: Buffer;
  try {
    secret = fs.readFileSync(file);
  } catch (e) {
    if (errnoCode(e) !== "ENOENT") throw e;
    try {
      fs.writeFileSync(file, crypto.randomBytes(32), { flag: "wx", mode: 0o600 });
    } catch (w) {
      if (errnoCode(w) !== "EEXIST") throw w;
    }
    secret = fs.readFileSync(file);
  }
  return crypto.createHmac("sha256", secret).update(name).digest("hex");
}

export class DumpError extends ShootError {}

/** The argv of every dump, with PostgreSQL's key where pg_dump takes one. */
export async function dumpCommands(dumps: readonly DumpConfig[], backupDir: string, spawner: Spawner): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  let takesKey: boolean | undefined;
  for (const d of dumps) {
    if (d.kind === "postgresql" && takesKey === undefined) takesKey = await pgDumpTakesRestrictKey(spawner);
    out.set(d.entry, dumpArgv(d, d.kind === "postgresql" && takesKey ? restrictKey(backupDir, d.name) : undefined));
  }
  return out;
}

/** pg_dump from before \restrict (before 17.6, 16.10, 15.14, …) has no --restrict-key and needs none. */
async function pgDumpTakesRestrictKey(spawner: Spawner): Promise<boolean> {
  try {
    const r = await spawner.run([PROGRAM.postgresql, "--help"], { timeoutMs: 30_000, captureStdout: true });
    return r.stdout.includes("--restrict-key");
  } catch {
    return false; // not installed: the dump itself will say so, with its own code
  }
}

export interface DumpRun {
  entry: string;
  /** SHA-256 of everything the command wrote, and its size. */
  sha256: string;
  size: number;
}

interface Running {
  child: Child;
}

/** Why a dump did not end whole, or nothing. */
function failure(d: DumpConfig, argv: string[], r: RunResult, tail: string): DumpError | undefined {
  const stderr = r.stderrTail.filter((l) => l.trim()).slice(-3).join(" | ");
  const what = `dump ${d.name} (${JSON.stringify(argv)})`;
  if (r.timedOut) return new DumpError("DUMP_TIMEOUT", `${what} ran past its timeout of ${formatDuration(d.timeout)} and was stopped${stderr ? `: ${stderr}` : ""}`);
  if (r.signal) return new DumpError("DUMP_FAILED", `${what} was killed by ${r.signal} after ${formatDuration(r.durationMs)}${stderr ? `: ${stderr}` : ""}`);
  if (r.exitCode !== 0) return new DumpError("DUMP_FAILED", `${what} exited with ${r.exitCode}${stderr ? `: ${stderr}` : ""}`);
  const end = wholeEnding(d);
  if (end && !tail.endsWith(end)) return new DumpError("DUMP_FAILED", `${what} exited with 0 but its output does not end with ${JSON.stringify(end)}: it did not finish${stderr ? ` (${stderr})` : ""}`);
  return undefined;
}

/** Children of dumps that run now: stopped together when the run is interrupted or fails. */
/** Start a dump; a program that is not there, or an SQLite file that is not there, is DUMP_MISSING. */
function startDump(spawner: Spawner, d: DumpConfig, argv: string[], env: Record<string, string | undefined>, live?: Set<Child>): Running {
  if (d.kind === "sqlite" && !fs.existsSync(d.target!)) throw new DumpError("DUMP_MISSING", `dump ${d.name}: the SQLite database ${d.target} does not exist`);
  try {
    const child = spawner.start(argv, { env, timeoutMs: d.timeout, killSignal: "SIGTERM", killGraceMs: 5000, stdoutStream: true, stderrLines: 20, installHint: INSTALL[argv[0]!] });
    if (live) {
      live.add(child);
      void child.done.finally(() => live.delete(child));
    }
    return { child };
  } catch (e) {
    if (e instanceof ToolMissingError) throw new DumpError("DUMP_MISSING", `dump ${d.name}: ${e.message}`);
    throw new DumpError("DUMP_FAILED", `dump ${d.name}: ${JSON.stringify(argv)} could not start: ${errorMessage(e)}`);
  }
}

/** Reads a dump's output as it comes, hashing it and keeping its last bytes. */
class DumpReader {
  readonly hash = crypto.createHash("sha256");
  size = 0;
  tail = "";

  take(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    const end = Buffer.from(chunk.subarray(Math.max(0, chunk.length - 64))).toString("latin1");
    this.tail = (this.tail + end).slice(-64);
  }
}

/**
 * A dump as a streamed archive entry: started when the writer reaches it (so no database is
 * held open while the files are archived), read only as fast as the archive is written.
 * `onDone` gets its hash and size once it ended whole; `live` holds its process while it runs.
 */
export function dumpEntry(
  spawner: Spawner, d: DumpConfig, argv: string[], env: Record<string, string | undefined>, when: Date, onDone: (r: DumpRun) => void, live?: Set<Child>,
): StreamedEntry {
  let running: Running | undefined;
  const reader = new DumpReader();
  return {
    name: d.entry, mode: 0o600, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0,
    uname: process.getuid?.() === 0 ? "root" : undefined, gname: process.getgid?.() === 0 ? "root" : undefined,
    mtimeMs: when.getTime(),
    content: (async function* () {
      running = startDump(spawner, d, argv, env, live);
      const r = running.child.stdout!.getReader();
      for (let x = await r.read(); !x.done; x = await r.read()) {
        reader.take(x.value);
        yield x.value;
      }
    })(),
    async ended() {
      const result = await running!.child.done;
      const bad = failure(d, argv, result, reader.tail);
      if (bad) throw bad;
      onDone({ entry: d.entry, sha256: reader.hash.digest("hex"), size: reader.size });
    },
  };
}

/** Run a dump only to hash what it writes (is it the same as last time?), with the same checks. */
export async function hashDump(spawner: Spawner, d: DumpConfig, argv: string[], env: Record<string, string | undefined>, live?: Set<Child>): Promise<DumpRun> {
  const { child } = startDump(spawner, d, argv, env, live);
  const reader = new DumpReader();
  try {
    const r = child.stdout!.getReader();
    for (let x = await r.read(); !x.done; x = await r.read()) reader.take(x.value);
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  const bad = failure(d, argv, await child.done, reader.tail);
  if (bad) throw bad;
  return { entry: d.entry, sha256: reader.hash.digest("hex"), size: reader.size };
}

/** A dump as the newest archive's file list records it. */
export interface RecordedDump {
  name: string;
  size: number;
  sha256: string;
}

/**
 * The dumps of one server run: whether they give what the newest archive holds (each run once
 * through a hash, at most once a run), and then the streamed entries of the new archive,
 * which run each dump again. `record` writes a DUMPED record.
 */
export class DumpPlan {
  private argvs: Map<string, string[]> | undefined;
  private verdict: Promise<{ same: boolean; summary: string }> | undefined;
  /** Dump processes running now. */
  private readonly live = new Set<Child>();
  /** The dumps the new archive holds, as they ended. */
  readonly done: DumpRun[] = [];

  constructor(
    private readonly dumps: readonly DumpConfig[],
    private readonly backupDir: string,
    private readonly spawner: Spawner,
    private readonly env: Record<string, string | undefined>,
    private readonly record: (msg: string, data: Record<string, unknown>) => void,
    /** An interrupted run stops its dumps at once, even one that writes nothing (waiting on a lock). */
    signal?: AbortSignal,
  ) {
    signal?.addEventListener("abort", () => this.stop(), { once: true });
  }

  get count(): number {
    return this.dumps.length;
  }

  /** The archive names the dumps take (a walked file of one of these names is a conflict). */
  names(): Set<string> {
    return new Set(this.dumps.map((d) => d.entry));
  }

  private async commands(): Promise<Map<string, string[]>> {
    this.argvs ??= await dumpCommands(this.dumps, this.backupDir, this.spawner);
    return this.argvs;
  }

  /** Whether every dump gives, byte for byte, what the newest archive holds (true with no dumps). */
  unchanged(recorded: readonly RecordedDump[] | undefined): Promise<{ same: boolean; summary: string }> {
    this.verdict ??= this.compare(recorded ?? []);
    return this.verdict;
  }

  private async compare(recorded: readonly RecordedDump[]): Promise<{ same: boolean; summary: string }> {
    if (this.dumps.length === 0) return { same: true, summary: "" };
    const argvs = await this.commands();
    const before = new Map(recorded.map((r) => [r.name, r.sha256]));
    const changed: string[] = [];
    for (const d of this.dumps) {
      const r = await hashDump(this.spawner, d, argvs.get(d.entry)!, this.env, this.live);
      const same = before.get(d.entry) === r.sha256;
      if (!same) changed.push(d.name);
      this.record(`dump ${d.name}: ${r.size} bytes, sha256 ${r.sha256}: ${same ? "the same as in the newest archive" : before.has(d.entry) ? "changed since the newest archive" : "not in the newest archive"}`, { entry: d.entry, size: r.size, sha256: r.sha256, changed: !same, archived: false });
    }
    const gone = recorded.filter((r) => !this.dumps.some((d) => d.entry === r.name)).map((r) => r.name);
    const parts = [...(changed.length ? [`dump${changed.length > 1 ? "s" : ""} ${changed.join(", ")} changed`] : []), ...(gone.length ? [`${gone.join(", ")} no longer configured`] : [])];
    return parts.length ? { same: false, summary: parts.join("; ") } : { same: true, summary: `${this.dumps.length} dump(s) unchanged` };
  }

  /** The dumps as entries of the archive being written; each starts when the writer reaches it. */
  async streams(when: Date): Promise<StreamedEntry[]> {
    const argvs = await this.commands();
    return this.dumps.map((d) =>
      dumpEntry(this.spawner, d, argvs.get(d.entry)!, this.env, when, (r) => {
        this.done.push(r);
        this.record(`dump ${d.name} streamed into the archive as ${d.entry}: ${r.size} bytes, sha256 ${r.sha256}`, { entry: d.entry, size: r.size, sha256: r.sha256, archived: true });
      }, this.live));
  }

  /** Stop every dump still running (the archive failed or was interrupted). */
  stop(): void {
    for (const c of this.live) c.kill("SIGTERM");
  }
}
