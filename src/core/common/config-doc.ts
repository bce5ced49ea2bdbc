/**
 * Documentation that follows the KEYS table: the commented example configuration (what
 * `shoot init` writes, examples/shoot.toml) and the tables of docs/configuration.md.
 */
import { KEYS, type KeyDef, type Section } from "./config.ts";

const HEADERS: Record<Section, string> = {
  server: "[server]",
  "server.dump": "[[server.dump]]",
  client: "[client]",
  "client.source": "[[client.source]]",
  mail: "[mail]",
  monitor: "[monitor]",
  offsite: "[[offsite]]",
};

function defaultIsLiteral(d: KeyDef): boolean {
  return d.default !== undefined && /^(".*"|\[.*\]|-?\d+|true|false)$/.test(d.default);
}

/** Commented TOML for the given sections: required keys set to their example, others commented out at their default. */
export function exampleConfig(sections: readonly Section[], values: Record<string, string> = {}): string {
  const out: string[] = [];
  for (const section of sections) {
    out.push(HEADERS[section]);
    for (const d of KEYS.filter((k) => k.section === section)) {
      out.push(`# ${d.doc}`);
      const given = values[`${section}.${d.key}`];
      if (given !== undefined) out.push(`${d.key} = ${given}`);
      else if (d.required) out.push(`${d.key} = ${d.example ?? '""'}`);
      else if (defaultIsLiteral(d)) out.push(`# ${d.key} = ${d.default}`);
      else out.push(`# ${d.key} = ${d.example ?? "…"}    # default: ${d.default}`);
    }
    out.push("");
  }
  return out.join("\n");
}

/** The markdown table of one section's keys. */
export function configMarkdown(section: Section): string {
  const rows = KEYS.filter((d) => d.section === section).map((d) => {
    const type = d.type === "enum" ? d.values!.map((v) => `"${v}"`).join(" \\| ") : d.type;
    const def = d.required ? "**required**" : (d.default ?? "").replace(/\|/g, "\\|");
    return `| \`${d.key}\` | ${type} | ${def} | ${d.doc.replace(/\|/g, "\\|")} |`;
  });
  return ["| key | type | default | meaning |", "| --- | --- | --- | --- |", ...rows].join("\n");
}
