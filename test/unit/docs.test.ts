import { expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { parseConfig } from "../../src/core/common/config.ts";
import { exampleFile, staleFiles } from "../../scripts/docs.ts";
import { CODES, type CodeName } from "../../src/core/common/codes.ts";
import { WHAT_TO_DO } from "../../src/core/common/codes-help.ts";

const ROOT = path.resolve(import.meta.dir, "../..");
const read = (rel: string) => fs.readFileSync(path.join(ROOT, rel), "utf8");

test("the generated tables in docs/, examples/shoot.toml, the man page and the completions match the code (bun scripts/docs.ts regenerates them)", async () => {
  expect(await staleFiles()).toEqual([]);
});

test("every code has exactly one row in docs/troubleshooting.md, and every failure and warning says what to do", () => {
  const text = read("docs/troubleshooting.md");
  for (const c of CODES) {
    const rows = text.split("\n").filter((l) => l.startsWith(`| ${c.code} | \`${c.name}\` |`));
    expect(rows).toHaveLength(1);
  }
  const missing = CODES.filter((c) => (c.kind === "failure" || c.kind === "warning") && !WHAT_TO_DO[c.name as CodeName]);
  expect(missing.map((c) => `${c.code} ${c.name} (add it to src/core/common/codes-help.ts)`)).toEqual([]);
});

test("README.md stays short and every page it points to exists", () => {
  const readme = read("README.md");
  expect(readme.split("\n").length).toBeLessThanOrEqual(250);
  const links = [...readme.matchAll(/\]\(((?:docs\/)?[\w.-]+\.md)(?:#[\w-]+)?\)/g)].map((m) => m[1]!);
  expect(links.length).toBeGreaterThan(5);
  for (const l of links) expect(fs.existsSync(path.join(ROOT, l))).toBe(true);
});

test("links between the documentation pages lead to pages and headings that exist", () => {
  const pages = ["README.md", "SECURITY.md", ...fs.readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
  const broken: string[] = [];
  for (const page of pages) {
    for (const m of read(page).matchAll(/\]\(([^)\s]+)\)/g)) {
      const [file, anchor] = m[1]!.split("#") as [string, string | undefined];
      if (/^[a-z]+:/.test(file)) continue; // an address on the web
      const target = file === "" ? page : path.normalize(path.join(path.dirname(page), file));
      if (!fs.existsSync(path.join(ROOT, target))) broken.push(`${page}: ${m[1]} (no ${target})`);
      else if (anchor && target.endsWith(".md") && !anchors(read(target)).has(anchor)) broken.push(`${page}: ${m[1]} (no heading #${anchor})`);
    }
  }
  expect(broken).toEqual([]);
});

/** GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to dashes. */
function anchors(text: string): Set<string> {
  const out = new Set<string>();
  let fence = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("```")) fence = !fence;
    const m = !fence && /^#{1,6} (.*)$/.exec(line);
    if (m) out.add(m[1]!.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-"));
  }
  return out;
}

test("examples/shoot.toml is generated from the key table and is a valid configuration", () => {
  const text = read("examples/shoot.toml");
  expect(text).toBe(exampleFile());
  const cfg = parseConfig(text, "examples/shoot.toml", "web1");
  expect(cfg.server?.keep).toBe(2);
  expect(cfg.client?.sources).toHaveLength(1);
  expect(cfg.mail?.when).toBe("failure");
});

test("every code stays below 126 and has a unique number and name", () => {
  expect(new Set(CODES.map((c) => c.code)).size).toBe(CODES.length);
  expect(new Set(CODES.map((c) => c.name)).size).toBe(CODES.length);
  for (const c of CODES) expect(c.code).toBeLessThan(126);
  expect(CODES.filter((c) => c.kind === "golden").map((c) => c.code).sort((a, b) => a - b)).toEqual([4, 9, 30]);
});
