/**
 * Compile shoot into one self-contained executable per platform, with the man page and the
 * shell completions beside them (dist/share/, laid out as under /usr/local/share):
 *
 *   bun run build                      every target into dist/, then dist/share/ and dist/SHA256SUMS
 *   bun scripts/build.ts linux-x64     one target (or several; also --target NAME)
 *   bun scripts/build.ts --list        the target names
 *
 * The version (package.json plus the git commit) and the target are baked in with `define`,
 * so `shoot --version` names exactly what was copied to a host. Each binary that can run on
 * this machine is started once (`--version`, `codes --json`) before the build counts as done.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { spawner } from "../src/io/process.ts";
import { shareFiles } from "./docs.ts";

export const ROOT = path.resolve(import.meta.dir, "..");

/**
 * Everything compiled into the binary. The first entry is the program; a Worker script that
 * imports project modules is an entry of its own. Inside the binary a worker is found by its
 * path relative to the entries' common folder (src/), e.g. `new Worker("./core/scan/scan.worker.ts")`;
 * `new URL(…, import.meta.url)` works only from source (common/worker-file.ts chooses).
 * Moving an entry changes that path: test/e2e/server.test.ts notices (the unchanged check then
 * reports one thread).
 */
export const ENTRYPOINTS: readonly string[] = [
  "src/main.ts",
  "src/core/scan/scan.worker.ts",
  "src/core/archive/compress.worker.ts",
  "src/core/archive/sink.worker.ts",
  "src/core/transfer/follow.worker.ts",
  "src/core/restore/inflate.worker.ts",
  "src/core/restore/writers.worker.ts",
  "src/core/restore/sha256.worker.ts",
  "src/core/restore/frames-aside.worker.ts",
];

export interface Target {
  /** Our name, also the file name suffix: dist/shoot-<name>. */
  name: string;
  /** Bun's name for the runtime it embeds (downloaded from the npm registry when cross-compiling). */
  bun: Bun.Build.CompileTarget;
  os: "linux" | "darwin";
  arch: "x64" | "arm64";
  musl: boolean;
  /** The ELF program interpreter a Linux binary needs; absent means it cannot start. */
  loader?: string;
}

// x64 binaries ask for Bun's "baseline" runtime, which needs no AVX2: backups run on old
// servers and on VMs given a conservative CPU model, where an AVX2 build dies with "Illegal
// instruction". (For bun 1.4.4 it is byte for byte the default x64 runtime; naming it keeps
// the promise should the two part again.)
export const TARGETS: readonly Target[] = [
  { name: "linux-x64", bun: "bun-linux-x64-baseline", os: "linux", arch: "x64", musl: false, loader: "/lib64/ld-linux-x86-64.so.2" },
  { name: "linux-x64-musl", bun: "bun-linux-x64-baseline-musl", os: "linux", arch: "x64", musl: true, loader: "/lib/ld-musl-x86_64.so.1" },
  { name: "linux-arm64", bun: "bun-linux-arm64", os: "linux", arch: "arm64", musl: false, loader: "/lib/ld-linux-aarch64.so.1" },
  { name: "linux-arm64-musl", bun: "bun-linux-arm64-musl", os: "linux", arch: "arm64", musl: true, loader: "/lib/ld-musl-aarch64.so.1" },
  { name: "darwin-x64", bun: "bun-darwin-x64-baseline", os: "darwin", arch: "x64", musl: false },
  { name: "darwin-arm64", bun: "bun-darwin-arm64", os: "darwin", arch: "arm64", musl: false },
];

export const SUMS_FILE = "SHA256SUMS";

export interface BuildOptions {
  /** Target names; default: all. */
  targets?: string[];
  /** Default: <repo>/dist. */
  outDir?: string;
  /** Default: buildVersion(). */
  version?: string;
  /** Start each binary that can run here (default true). */
  smoke?: boolean;
  log?: (line: string) => void;
}

export interface Built {
  target: Target;
  file: string;
  bytes: number;
  sha256: string;
  /** What `file` says about the binary (its platform), or why it could not be asked. */
  platform: string;
  /** "passed", or why the binary was not started here. */
  smoke: string;
}

export class BuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BuildError";
  }
}

export function findTarget(name: string): Target {
  const t = TARGETS.find((x) => x.name === name || x.bun === name);
  if (!t) throw new BuildError(`unknown target ${JSON.stringify(name)}; known targets: ${TARGETS.map((x) => x.name).join(", ")}`);
  return t;
}

/** `<package.json version>+<commit>` (with `.dirty` for uncommitted changes), or the bare version outside git. */
export async function buildVersion(root = ROOT): Promise<string> {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { version?: string };
  if (!pkg.version) throw new BuildError(`${path.join(root, "package.json")} has no "version"`);
  const git = async (args: string[]): Promise<string | undefined> => {
    try {
      const r = await spawner.run(["git", ...args], { cwd: root, captureStdout: true, timeoutMs: 10_000 });
      return r.exitCode === 0 ? r.stdout.trim() : undefined;
    } catch {
      return undefined; // git not installed: a source tarball still builds
    }
  };
  const commit = await git(["rev-parse", "--short=12", "HEAD"]);
  if (!commit) return pkg.version;
  const changes = await git(["status", "--porcelain", "--untracked-files=no"]);
  return `${pkg.version}+${commit}${changes ? ".dirty" : ""}`;
}

async function sha256(file: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(file).stream()) h.update(chunk);
  return h.digest("hex");
}

async function compile(target: Target, outfile: string, version: string): Promise<void> {
  const result = await Bun.build({
    entrypoints: ENTRYPOINTS.map((e) => path.join(ROOT, e)),
    // said, not left to the bundler: the paths workers are found by start here (with one more
    // worker entry, all of them in src/, it chose the project's folder, and no worker started)
    root: path.join(ROOT, "src"),
    target: "bun",
    format: "esm",
    // parsing ahead of time takes about a third off start-up (measured: 55 ms -> 40 ms)
    bytecode: true,
    // each lazily imported subcommand becomes a chunk of its own inside the binary, so a run
    // loads only the code it uses: `shoot --version` went from 51 ms to 30 ms (hello world: 38 ms)
    splitting: true,
    minify: { whitespace: true, syntax: true, identifiers: false },
    sourcemap: "linked",
    define: {
      SHOOT_BUILD_VERSION: JSON.stringify(version),
      SHOOT_BUILD_TARGET: JSON.stringify(`${target.name}, bun ${Bun.version}`),
    },
    compile: {
      target: target.bun,
      outfile,
      // A binary run by cron must behave the same whatever directory it starts in: files
      // there (.env, bunfig.toml, tsconfig.json, package.json) must not change it.
      autoloadDotenv: false,
      autoloadBunfig: false,
      autoloadTsconfig: false,
      autoloadPackageJson: false,
    },
    throw: false,
  });
  if (!result.success) {
    const why = result.logs.map((l) => String(l)).join("\n  ");
    throw new BuildError(`building ${target.name} failed:\n  ${why}`);
  }
  // the source map is embedded in the binary (stack traces name src/ files); the copy Bun
  // also writes beside it is not shipped
  fs.rmSync(`${outfile}.map`, { force: true });
  // so are the maps of the chunks and the workers (splitting), which would pile up in dist/
  const dir = path.dirname(outfile);
  const maps = new Set(ENTRYPOINTS.slice(1).map((e) => `${path.basename(e, ".ts")}.js.map`));
  for (const f of fs.readdirSync(dir)) if (/^chunk-[a-z0-9]+\.js\.map$/.test(f) || maps.has(f)) fs.rmSync(path.join(dir, f), { force: true });
  if (!fs.existsSync(outfile)) throw new BuildError(`building ${target.name} reported success but wrote no ${outfile}`);
}

async function describePlatform(file: string): Promise<string> {
  try {
    const r = await spawner.run(["file", "-b", file], { captureStdout: true, timeoutMs: 20_000, installHint: "apt-get install -y file" });
    return r.exitCode === 0 ? r.stdout.trim() : `file exited with ${r.exitCode}`;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The C library version of this Linux system when it is glibc; undefined on musl (or not Linux). */
function hostGlibc(): string | undefined {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime;
}

/** Why this machine cannot start the target's binary, or undefined when it can. */
export function cannotRunHere(t: Target): string | undefined {
  if (t.os !== process.platform) return `a ${t.os} binary does not run on ${process.platform}`;
  if (t.arch !== process.arch) return `an ${t.arch} binary does not run on this ${process.arch} machine`;
  const glibc = t.os === "linux" ? hostGlibc() : undefined;
  // the musl runtime also needs musl's libstdc++ (Alpine: apk add libstdc++), which a glibc
  // system does not have even with Debian's musl package installed
  if (t.musl && glibc) return `a musl binary needs a musl system such as Alpine; this one has glibc ${glibc}`;
  if (t.os === "linux" && !t.musl && !glibc) return "a glibc binary does not run on this musl system";
  if (t.loader && !fs.existsSync(t.loader)) return `its program loader ${t.loader} is missing here`;
  return undefined;
}

/** The target whose binary this machine runs (what tests and .ci/run build). */
export function hostTarget(): Target {
  const t = TARGETS.find((x) => !cannotRunHere(x));
  if (!t) throw new BuildError(`no target runs on this ${process.platform}-${process.arch} machine; known targets: ${TARGETS.map((x) => x.name).join(", ")}`);
  return t;
}

/** Start the binary from an empty directory and check what it says about itself. */
async function smokeTest(t: Target, file: string, version: string): Promise<void> {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-smoke-"));
  try {
    const run = async (args: string[]) => {
      const r = await spawner.run([file, ...args], { cwd, captureStdout: true, timeoutMs: 20_000 });
      if (r.exitCode !== 0) throw new BuildError(`${path.basename(file)} ${args.join(" ")} exited with ${r.exitCode ?? r.signal}: ${r.stderrTail.join(" | ")}`);
      return r.stdout;
    };
    const v = (await run(["--version"])).trim();
    if (!v.includes(version) || !v.includes(t.name)) throw new BuildError(`${path.basename(file)} --version says ${JSON.stringify(v)}, expected version ${version} and target ${t.name}`);
    const codes: unknown = JSON.parse(await run(["codes", "--json"]));
    if (!Array.isArray(codes) || codes.length === 0) throw new BuildError(`${path.basename(file)} codes --json printed no code table`);
  } finally {
    fs.rmSync(cwd, { recursive: true, force: true });
  }
}

/** Write the man page and the completions under outDir/share/, each through a temporary name. */
async function writeShare(outDir: string): Promise<string[]> {
  const written: string[] = [];
  for (const [rel, text] of await shareFiles()) {
    const file = path.join(outDir, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(`${file}.tmp`, text, { mode: 0o644 });
    fs.renameSync(`${file}.tmp`, file);
    written.push(rel);
  }
  return written;
}

/** Rewrite SHA256SUMS (readable by `sha256sum -c`) for every binary now in outDir, and the files under share/. */
async function writeSums(outDir: string, share: readonly string[]): Promise<string> {
  const binaries = new Set(TARGETS.map((t) => `shoot-${t.name}`));
  const names = [...fs.readdirSync(outDir).filter((n) => binaries.has(n)).sort(), ...share];
  const lines: string[] = [];
  for (const n of names) lines.push(`${await sha256(path.join(outDir, n))}  ${n}`);
  const file = path.join(outDir, SUMS_FILE);
  fs.writeFileSync(`${file}.tmp`, lines.map((l) => `${l}\n`).join(""));
  fs.renameSync(`${file}.tmp`, file);
  return file;
}

export async function build(opts: BuildOptions = {}): Promise<Built[]> {
  const log = opts.log ?? (() => {});
  const targets = (opts.targets?.length ? opts.targets : TARGETS.map((t) => t.name)).map(findTarget);
  const outDir = path.resolve(opts.outDir ?? path.join(ROOT, "dist"));
  const version = opts.version ?? (await buildVersion());
  fs.mkdirSync(outDir, { recursive: true });
  const built: Built[] = [];
  for (const t of targets) {
    const file = path.join(outDir, `shoot-${t.name}`);
    const began = performance.now();
    // build beside the final name and rename, so a failed build never leaves half a binary
    const partial = `${file}.partial`;
    fs.rmSync(partial, { force: true });
    try {
      await compile(t, partial, version);
      fs.chmodSync(partial, 0o755);
      fs.renameSync(partial, file);
    } finally {
      fs.rmSync(partial, { force: true });
    }
    const why = cannotRunHere(t);
    if (opts.smoke !== false && !why) await smokeTest(t, file, version);
    const b: Built = {
      target: t,
      file,
      bytes: fs.statSync(file).size,
      sha256: await sha256(file),
      platform: await describePlatform(file),
      smoke: opts.smoke === false ? "not asked for" : why ? `not run: ${why}` : "passed",
    };
    built.push(b);
    log(`${path.relative(process.cwd(), file) || file}  ${(b.bytes / 2 ** 20).toFixed(1)} MiB  ${((performance.now() - began) / 1000).toFixed(1)} s  smoke test ${b.smoke}`);
    log(`  ${b.platform}`);
  }
  const share = await writeShare(outDir);
  log(`${path.relative(process.cwd(), path.join(outDir, "share")) || "share"}/  ${share.length} files: the man page, bash, zsh and fish completions`);
  const sums = await writeSums(outDir, share);
  log(`${path.relative(process.cwd(), sums) || sums}  (${version})`);
  return built;
}

const USAGE = `Usage: bun scripts/build.ts [TARGET...] [--target TARGET]... [--outdir DIR] [--no-smoke] [--list]
Targets: ${TARGETS.map((t) => t.name).join(", ")} (default: all)`;

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        target: { type: "string", multiple: true },
        outdir: { type: "string" },
        "no-smoke": { type: "boolean" },
        list: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    console.error(`build: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.list) {
    for (const t of TARGETS) console.log(t.name);
    return 0;
  }
  const targets = [...positionals, ...(values.target ?? [])].filter((n) => n !== "all");
  try {
    targets.forEach(findTarget); // an unknown name fails before anything is built
    await build({ targets, outDir: values.outdir, smoke: !values["no-smoke"], log: (l) => console.log(l) });
    return 0;
  } catch (e) {
    console.error(`build: ${e instanceof BuildError ? e.message : ((e as Error)?.stack ?? String(e))}`);
    return 1;
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
