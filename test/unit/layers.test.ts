/**
 * The arrows of src/ run downward only (docs/architecture.md): main → cli → core roles →
 * core pieces → io. This reads every import of every file under src/ (type imports and
 * dynamic ones included) and fails on one that runs back up.
 */
import { expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { ENTRYPOINTS } from "../../scripts/build.ts";

const ROOT = path.resolve(import.meta.dir, "../..");
const SRC = path.join(ROOT, "src");

/** What a command does. */
const ROLES = ["server", "client", "restore", "report", "setup", "offsite"] as const;
/** What the roles are made of. */
const PIECES = ["common", "state", "archive", "scan", "transfer"] as const;

type Place = { layer: "main" | "cli" | "role" | "piece" | "io" | "version"; folder: string };

/** Where a file of src/ stands, from its folder alone. */
function placeOf(rel: string): Place {
  const parts = rel.split("/");
  if (rel === "main.ts") return { layer: "main", folder: "main" };
  if (rel === "version.ts") return { layer: "version", folder: "version" };
  if (parts[0] === "cli") return { layer: "cli", folder: "cli" };
  if (parts[0] === "io") return { layer: "io", folder: "io" };
  if (parts[0] === "core") {
    const folder = parts[1]!;
    if ((ROLES as readonly string[]).includes(folder)) return { layer: "role", folder };
    if ((PIECES as readonly string[]).includes(folder)) return { layer: "piece", folder };
  }
  throw new Error(`src/${rel} is in no known folder: name it a role or a piece in test/unit/layers.test.ts and docs/architecture.md`);
}

/** Why an import from `from` to `to` (paths under src/) runs back up, or undefined when it does not. */
function backUp(from: string, to: string): string | undefined {
  const a = placeOf(from);
  const b = placeOf(to);
  if (b.layer === "main") return "nothing imports the entry point";
  if (a.layer === "io" && b.layer !== "io" && b.layer !== "version") return "io knows nothing of backups: it imports neither core nor cli";
  if ((a.layer === "role" || a.layer === "piece") && b.layer === "cli") return "core never imports cli";
  if (a.layer === "piece" && b.layer === "role") return `a piece (${a.folder}) never imports a role (${b.folder})`;
  return undefined;
}

/** Every module path a TypeScript file imports: static, type-only, re-exports and dynamic `import()`. */
function importsOf(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/gm,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) found.push(m[1]!);
  return found;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith(".ts") ? [p] : [];
  });
}

test("importsOf finds static, type-only, multi-line, re-exported and dynamic imports", () => {
  const src = [
    'import fs from "node:fs";',
    'import type { A } from "./a.ts";',
    "import {",
    "  b,",
    "  type C,",
    '} from "../b.ts";',
    'export { d } from "./d.ts";',
    'export type { E } from "./e.ts";',
    'import "./side.ts";',
    'const f = await import("./f.ts");',
    'const text = "not an import from \\"./g.ts\\"";',
  ].join("\n");
  expect(importsOf(src)).toEqual(["node:fs", "./a.ts", "../b.ts", "./d.ts", "./e.ts", "./side.ts", "./f.ts"]);
});

test.each([
  ["io/process.ts", "core/common/codes.ts", "io knows"],
  ["io/mailer.ts", "cli/log.ts", "io knows"],
  ["core/state/status.ts", "cli/run.ts", "core never imports cli"],
  ["core/server/server.ts", "cli/self.ts", "core never imports cli"],
  ["core/state/lock.ts", "core/server/wrapper.ts", "a piece (state) never imports a role (server)"],
  ["core/scan/scan.ts", "core/report/progress.ts", "a piece (scan) never imports a role (report)"],
  ["cli/run.ts", "main.ts", "nothing imports the entry point"],
  ["cli/run.ts", "core/common/codes.ts", "fine: it runs downward"],
  ["core/client/client.ts", "core/transfer/rsync.ts", "fine: it runs downward"],
  ["core/restore/verify.ts", "core/archive/tar.ts", "fine: it runs downward"],
  ["core/state/status.ts", "core/common/codes.ts", "fine: it runs downward"],
  ["core/common/deps.ts", "io/process.ts", "fine: it runs downward"],
  ["io/process.ts", "version.ts", "fine: it runs downward"],
] as const)("an import from src/%s to src/%s: %s", (from, to, why) => {
  const said = backUp(from, to);
  if (why.startsWith("fine")) expect(said).toBeUndefined();
  else expect(said).toStartWith(why);
});

test("no import in src/ runs back up: main → cli → core roles → core pieces → io", () => {
  const files = sourceFiles(SRC);
  expect(files.length).toBeGreaterThan(40);
  const wrong: string[] = [];
  let arrows = 0;
  for (const file of files) {
    const from = path.relative(SRC, file);
    for (const spec of importsOf(fs.readFileSync(file, "utf8"))) {
      if (!spec.startsWith(".")) continue; // a package or a runtime module
      const target = path.resolve(path.dirname(file), spec);
      const to = path.relative(SRC, target);
      if (to.startsWith("..")) {
        // the package's own version is the one file outside src/ the program reads
        if (target !== path.join(ROOT, "package.json")) wrong.push(`src/${from} imports ${spec}, outside src/`);
        continue;
      }
      arrows++;
      const why = backUp(from, to);
      if (why) wrong.push(`src/${from} → src/${to}: ${why}`);
    }
  }
  expect(arrows).toBeGreaterThan(100);
  expect(wrong).toEqual([]);
});

test("every worker is a typed *.worker.ts file the build carries, started by the path the binary knows it by", () => {
  const workers = sourceFiles(SRC).filter((f) => f.endsWith(".worker.ts")).map((f) => path.relative(ROOT, f)).sort();
  expect(workers.length).toBeGreaterThan(3);
  expect([...ENTRYPOINTS].filter((e) => e.endsWith(".worker.ts")).sort()).toEqual(workers);
  const started: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const text = fs.readFileSync(file, "utf8");
    for (const m of text.matchAll(/startWorkerFile\(\s*"\.\/([^"]+)",\s*new URL\("\.\/([^"]+)", import\.meta\.url\)\)/g)) {
      // inside the binary the first path is used, from source the second: both must name one file
      expect(path.join("src", m[1]!)).toBe(path.relative(ROOT, path.join(path.dirname(file), m[2]!)));
      started.push(path.join("src", m[1]!));
    }
    // no worker made from a string of code (a blob URL), which neither tsc nor a reader can check
    expect({ file, blobUrl: /createObjectURL/.test(text) }).toEqual({ file, blobUrl: false });
  }
  expect([...new Set(started)].sort()).toEqual(workers);
});
