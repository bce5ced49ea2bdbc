import { expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { parseConfig } from "../../src/core/common/config.ts";
import { exampleFile, renderReadme } from "../../scripts/docs.ts";
import { CODES } from "../../src/core/common/codes.ts";

const ROOT = path.resolve(import.meta.dir, "../..");

test("README's code and configuration tables match the code (bun scripts/docs.ts regenerates them)", () => {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  expect(renderReadme(readme)).toBe(readme);
  for (const c of CODES) expect(readme).toContain(`| ${c.code} | \`${c.name}\` |`);
});

test("examples/shoot.toml is generated from the key table and is a valid configuration", () => {
  const text = fs.readFileSync(path.join(ROOT, "examples/shoot.toml"), "utf8");
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
