/** Renderings of the code table: `shoot codes`, its JSON, and the tables of docs/troubleshooting.md. */
import { CODES, type CodeKind, type CodeName } from "./codes.ts";
import { WHAT_TO_DO } from "./codes-help.ts";

export function codesJson(): string {
  const final = (c: (typeof CODES)[number]) => c.kind === "golden" || c.kind === "failure";
  return JSON.stringify(CODES.map((c) => ({ ...c, golden: c.kind === "golden", final: final(c) })), null, 2);
}

export function codesText(): string {
  const w = Math.max(...CODES.map((c) => c.name.length));
  const line = (c: (typeof CODES)[number]) =>
    `${String(c.code).padStart(3)}  ${c.name.padEnd(w)}  ${c.kind.padEnd(7)}  ${c.role.padEnd(7)}  ${c.meaning}`;
  return CODES.map(line).join("\n");
}

const cell = (s: string) => s.replace(/\|/g, "\\|");

/** A markdown table of the codes of these kinds; with `help`, a last column says what to do. */
export function codesMarkdown(kinds: readonly CodeKind[], help = false): string {
  const chosen = CODES.filter((c) => kinds.includes(c.kind)).sort((a, b) => a.code - b.code);
  const rows = chosen.map((c) => {
    const todo = help ? ` ${cell(WHAT_TO_DO[c.name as CodeName] ?? "")} |` : "";
    return `| ${c.code} | \`${c.name}\` | ${c.role} | ${cell(c.meaning)} |${todo}`;
  });
  const head = help
    ? ["| code | name | role | meaning | what to do |", "| ---: | --- | --- | --- | --- |"]
    : ["| code | name | role | meaning |", "| ---: | --- | --- | --- |"];
  return [...head, ...rows].join("\n");
}
