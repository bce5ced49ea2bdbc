/**
 * Regenerate the parts of README.md and examples/shoot.toml that follow the code's tables
 * (codes, configuration keys). `bun scripts/docs.ts --check` fails when they are out of date;
 * a unit test runs the same check.
 */
import fs from "node:fs";
import path from "node:path";
import { codesMarkdown } from "../src/core/common/codes-table.ts";
import { configMarkdown, exampleConfig } from "../src/core/common/config-doc.ts";

const ROOT = path.resolve(import.meta.dir, "..");

export function generatedBlocks(): Record<string, string> {
  return { codes: codesMarkdown(), config: configMarkdown() };
}

export function exampleFile(): string {
  const dumps = exampleConfig(["server.dump"]).split("\n").map((l) => (l === "" || l.startsWith("#") ? l : `# ${l}`)).join("\n");
  return `# shoot configuration: every key with its default (commented out) or an example value.\n# Validate with: shoot check-config --config FILE\n\n${exampleConfig(["server", "client", "client.source", "mail", "monitor"])}\n# Database dumps streamed into the archive (docs/dumps.md): one table per dump.\n${dumps}`;
}

/** README text with every <!-- NAME:begin --> … <!-- NAME:end --> block replaced. */
export function renderReadme(text: string): string {
  let out = text;
  for (const [name, body] of Object.entries(generatedBlocks())) {
    const re = new RegExp(`(<!-- ${name}:begin -->\\n)[\\s\\S]*?(<!-- ${name}:end -->)`);
    if (!re.test(out)) throw new Error(`README.md has no <!-- ${name}:begin --> block`);
    out = out.replace(re, `$1${body}\n$2`);
  }
  return out;
}

if (import.meta.main) {
  const check = process.argv.includes("--check");
  const readmePath = path.join(ROOT, "README.md");
  const examplePath = path.join(ROOT, "examples/shoot.toml");
  const readme = fs.readFileSync(readmePath, "utf8");
  const want = renderReadme(readme);
  const example = exampleFile();
  const stale = [readme !== want && "README.md", (!fs.existsSync(examplePath) || fs.readFileSync(examplePath, "utf8") !== example) && "examples/shoot.toml"].filter(Boolean);
  if (check) {
    if (stale.length) {
      console.error(`out of date: ${stale.join(", ")} (run: bun scripts/docs.ts)`);
      process.exit(1);
    }
    console.log("docs up to date");
  } else {
    fs.writeFileSync(readmePath, want);
    fs.mkdirSync(path.dirname(examplePath), { recursive: true });
    fs.writeFileSync(examplePath, example);
    console.log(`wrote README.md blocks and examples/shoot.toml`);
  }
}
