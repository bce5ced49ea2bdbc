/**
 * Regenerate what follows the code's tables and command definitions: the blocks of docs/
 * between `<!-- NAME:begin -->` and `<!-- NAME:end -->` (configuration keys, codes),
 * examples/shoot.toml, the man page and the shell completions under share/ (laid out as they
 * install under /usr/local/share; scripts/build.ts ships them beside the binaries).
 * `bun scripts/docs.ts --check` fails when any of them is out of date; a unit test runs the
 * same check.
 */
import fs from "node:fs";
import path from "node:path";
import { codesMarkdown } from "../src/core/common/codes-table.ts";
import { configMarkdown, exampleConfig } from "../src/core/common/config-doc.ts";
import type { Section } from "../src/core/common/config.ts";
import { commandTree } from "./command-tree.ts";
import { bashCompletion, fishCompletion, zshCompletion } from "./completions.ts";
import { manPage } from "./man.ts";

const ROOT = path.resolve(import.meta.dir, "..");
/** Every section, in the order docs/configuration.md lists them. */
const SECTIONS: readonly Section[] = ["server", "server.dump", "client", "client.source", "mail", "monitor", "offsite"];
/** The sections examples/shoot.toml sets out in full (dumps follow, commented out). */
const EXAMPLE_SECTIONS: readonly Section[] = ["server", "client", "client.source", "mail", "monitor"];

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
  const dumps = exampleConfig(["server.dump"]).split("\n").map((l) => (l === "" || l.startsWith("#") ? l : `# ${l}`)).join("\n");
  const head = "# shoot configuration: every key with its default (commented out) or an example value.\n# Validate with: shoot check-config --config FILE\n\n";
  return `${head}${exampleConfig(EXAMPLE_SECTIONS)}\n# Database dumps streamed into the archive (docs/dumps.md): one table per dump.\n${dumps}`;
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

/** Where the man page and the completions are, under share/ in the repository and in dist/. */
export const SHARE_FILES = {
  man: "share/man/man1/shoot.1",
  bash: "share/bash-completion/completions/shoot",
  zsh: "share/zsh/site-functions/_shoot",
  fish: "share/fish/vendor_completions.d/shoot.fish",
} as const;

/** The man page and the completions, by their path under share/. */
export async function shareFiles(root = ROOT): Promise<Map<string, string>> {
  const commands = await commandTree();
  const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { version: string };
  return new Map([
    [SHARE_FILES.man, manPage(commands, pkg.version)],
    [SHARE_FILES.bash, bashCompletion(commands)],
    [SHARE_FILES.zsh, zshCompletion(commands)],
    [SHARE_FILES.fish, fishCompletion(commands)],
  ]);
}

/** Every generated file (relative path) with the contents it should have now. */
export async function wantedFiles(root = ROOT): Promise<Map<string, string>> {
  const want = new Map<string, string>();
  for (const [file, blocks] of Object.entries(generatedBlocks())) {
    want.set(file, renderBlocks(file, fs.readFileSync(path.join(root, file), "utf8"), blocks));
  }
  want.set("examples/shoot.toml", exampleFile());
  for (const [file, text] of await shareFiles(root)) want.set(file, text);
  return want;
}

/** The generated files whose contents differ from what they should be. */
export async function staleFiles(root = ROOT): Promise<string[]> {
  const stale: string[] = [];
  for (const [file, text] of await wantedFiles(root)) {
    const p = path.join(root, file);
    if (!fs.existsSync(p) || fs.readFileSync(p, "utf8") !== text) stale.push(file);
  }
  return stale;
}

if (import.meta.main) {
  if (process.argv.includes("--check")) {
    const stale = await staleFiles();
    if (stale.length) {
      console.error(`out of date: ${stale.join(", ")} (run: bun scripts/docs.ts)`);
      process.exitCode = 1;
    } else console.log("docs up to date");
  } else {
    const want = await wantedFiles();
    for (const [file, text] of want) {
      fs.mkdirSync(path.dirname(path.join(ROOT, file)), { recursive: true });
      fs.writeFileSync(path.join(ROOT, file), text);
    }
    console.log(`wrote ${[...want.keys()].join(", ")}`);
  }
}
