/**
 * Regenerate what follows the code's tables: the blocks of docs/ between `<!-- NAME:begin -->`
 * and `<!-- NAME:end -->` (configuration keys, codes) and examples/shoot.toml.
 * `bun scripts/docs.ts --check` fails when any of them is out of date; a unit test runs the
 * same check.
 */
import fs from "node:fs";
import path from "node:path";
import { codesMarkdown } from "../src/core/common/codes-table.ts";
import { configMarkdown, exampleConfig } from "../src/core/common/config-doc.ts";
import type { Section } from "../src/core/common/config.ts";

const ROOT = path.resolve(import.meta.dir, "..");
const SECTIONS: readonly Section[] = ["server", "client", "client.source", "mail", "monitor"];

/** The generated blocks, by the file (relative to the repository) that holds them. */
export function generatedBlocks(): Record<string, Record<string, string>> {
  return {
    "docs/configuration.md": Object.fromEntries(SECTIONS.map((s) => [`config-${s}`, configMarkdown(s)])),
    "docs/troubleshooting.md": {
      failures: codesMarkdown(["failure"], true),
      warnings: codesMarkdown(["warning"], true),
      records: codesMarkdown(["golden", "info"]),
    },
  };
}

export function exampleFile(): string {
  return `# shoot configuration: every key with its default (commented out) or an example value.\n# Validate with: shoot check-config --config FILE\n\n${exampleConfig(SECTIONS)}`;
}

/** `text` with every block of `blocks` replaced; a block the text lacks is an error naming `file`. */
export function renderBlocks(file: string, text: string, blocks: Record<string, string>): string {
  let out = text;
  for (const [name, body] of Object.entries(blocks)) {
    const re = new RegExp(`(<!-- ${name.replace(/[.]/g, "\\.")}:begin -->\\n)[\\s\\S]*?(<!-- ${name.replace(/[.]/g, "\\.")}:end -->)`);
    if (!re.test(out)) throw new Error(`${file} has no <!-- ${name}:begin --> block`);
    out = out.replace(re, (_m, begin: string, end: string) => `${begin}${body}\n${end}`);
  }
  return out;
}

/** Every generated file (relative path) with the contents it should have now. */
export function wantedFiles(root = ROOT): Map<string, string> {
  const want = new Map<string, string>();
  for (const [file, blocks] of Object.entries(generatedBlocks())) {
    want.set(file, renderBlocks(file, fs.readFileSync(path.join(root, file), "utf8"), blocks));
  }
  want.set("examples/shoot.toml", exampleFile());
  return want;
}

/** The generated files whose contents differ from what they should be. */
export function staleFiles(root = ROOT): string[] {
  const stale: string[] = [];
  for (const [file, text] of wantedFiles(root)) {
    const p = path.join(root, file);
    if (!fs.existsSync(p) || fs.readFileSync(p, "utf8") !== text) stale.push(file);
  }
  return stale;
}

if (import.meta.main) {
  if (process.argv.includes("--check")) {
    const stale = staleFiles();
    if (stale.length) {
      console.error(`out of date: ${stale.join(", ")} (run: bun scripts/docs.ts)`);
      process.exitCode = 1;
    } else console.log("docs up to date");
  } else {
    for (const [file, text] of wantedFiles()) {
      fs.mkdirSync(path.dirname(path.join(ROOT, file)), { recursive: true });
      fs.writeFileSync(path.join(ROOT, file), text);
    }
    console.log(`wrote ${[...wantedFiles().keys()].join(", ")}`);
  }
}
