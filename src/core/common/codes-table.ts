/** Renderings of the code table: `shoot codes`, its JSON, and the README's markdown table. */
import { CODES } from "./codes.ts";

export function codesJson(): string {
  return JSON.stringify(CODES.map((c) => ({ ...c, golden: c.kind === "golden", final: c.kind === "golden" || c.kind === "failure" })), null, 2);
}

export function codesText(): string {
  const w = Math.max(...CODES.map((c) => c.name.length));
  return CODES.map((c) => `${String(c.code).padStart(3)}  ${c.name.padEnd(w)}  ${c.kind.padEnd(7)}  ${c.role.padEnd(7)}  ${c.meaning}`).join("\n");
}

export function codesMarkdown(): string {
  const rows = CODES.map((c) => `| ${c.code} | \`${c.name}\` | ${c.kind} | ${c.role} | ${c.meaning.replace(/\|/g, "\\|")} |`);
  return ["| code | name | kind | role | meaning |", "| ---: | --- | --- | --- | --- |", ...rows].join("\n");
}
