import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { escapeLines, escapeText } from "../../src/core/common/escape.ts";
import { labelValue } from "../../src/core/report/metrics.ts";
import { tempDir } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";

// [what, input, printed]: the printed forms are GNU tar 1.34's (`tar -tf` in C.UTF-8) except where marked
const TABLE: ReadonlyArray<readonly [string, string, string]> = [
  ["plain text", "etc/hosts", "etc/hosts"],
  ["empty", "", ""],
  ["ESC and a colour sequence", "a\u001b[31mred", "a\\033[31mred"],
  ["newline", "nl\nx", "nl\\nx"],
  ["backslash", "back\\slash", "back\\\\slash"],
  ["an escape-looking text stays apart from an escape", "\\033", "\\\\033"],
  ["tab", "tab\tx", "tab\\tx"],
  ["BEL", "bell\u0007", "bell\\a"],
  ["BS", "bs\b", "bs\\b"],
  ["FF", "ff\f", "ff\\f"],
  ["CR", "cr\rx", "cr\\rx"],
  ["VT", "vt\u000b", "vt\\v"],
  ["NUL", "n\u0000ul", "n\\000ul"],
  ["other C0", "\u0001\u001f", "\\001\\037"],
  ["DEL", "del\u007f", "del\\177"],
  ["C1 CSI, as its UTF-8 bytes", "c1\u009b", "c1\\302\\233"],
  ["NEL", "\u0085", "\\302\\205"],
  ["line separator", "ls\u2028x", "ls\\342\\200\\250x"],
  ["paragraph separator", "\u2029", "\\342\\200\\251"],
  ["a noncharacter", "nc\uffffx", "nc\\357\\277\\277x"],
  ["an unassigned code point", "un\u0378x", "un\\315\\270x"],
  ["a lone surrogate", "s\ud800x", "s\\355\\240\\200x"],
  ["accented letters pass", "utf8é", "utf8é"],
  ["other scripts and emoji pass", "日本語 😀", "日本語 😀"],
  ["no-break and ideographic spaces pass", "a\u00a0b\u3000c", "a\u00a0b\u3000c"],
  ["combining marks pass", "e\u0301", "e\u0301"],
  ["private use passes", "p\ue000", "p\ue000"],
  ["punctuation and quotes pass", "q?x \"'$`;|&*", "q?x \"'$`;|&*"],
  ["the replacement character passes", "\ufffd", "\ufffd"],
  // beyond GNU tar, which prints these as they are: invisible characters that disguise a line
  ["bidi override (GNU tar passes it)", "bidi\u202eevil", "bidi\\342\\200\\256evil"],
  ["bidi isolate (GNU tar passes it)", "\u2068x\u2069", "\\342\\201\\250x\\342\\201\\251"],
  ["left-to-right mark (GNU tar passes it)", "\u200e", "\\342\\200\\216"],
  ["zero-width space (GNU tar passes it)", "zw\u200bx", "zw\\342\\200\\213x"],
  ["BOM (GNU tar passes it)", "\ufeff", "\\357\\273\\277"],
  ["a tag character (GNU tar passes it)", "t\u{e0041}", "t\\363\\240\\201\\201"],
];

describe("escapeText", () => {
  test.each(TABLE)("%s", (_what, input, printed) => {
    expect(escapeText(input)).toBe(printed);
  });

  test("the output is printable: no control or invisible character survives, whatever the input", () => {
    let all = "";
    for (let cp = 0; cp < 0x3000; cp++) all += String.fromCodePoint(cp);
    for (const cp of [0xd800, 0x78, 0xdfff, 0xfeff, 0xfff9, 0xfffe, 0xffff, 0xe0001, 0xe007f, 0x10ffff]) all += String.fromCodePoint(cp);
    const out = escapeText(all);
    expect(out).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\p{Cf}\p{Cn}\p{Cs}]/u);
    // and it reads back: every backslash begins an escape, so the input is recoverable
    const back = out.replace(/\\(\\|[abtnvfr]|[0-7]{3}(?:\\[0-7]{3})*)/g, (_m, e: string) => {
      const named: Record<string, string> = { "\\": "\\", a: "\u0007", b: "\b", t: "\t", n: "\n", v: "\v", f: "\f", r: "\r" };
      if (named[e]) return named[e]!;
      const bytes = e.match(/[0-7]{3}/g)!.map((o) => parseInt(o, 8));
      return new TextDecoder().decode(new Uint8Array(bytes));
    });
    // (a lone surrogate has no UTF-8 form: it reads back as replacement characters)
    const same = back === all.replace(/\p{Cs}/gu, "\ufffd\ufffd\ufffd");
    expect(same).toBe(true);
  });

  test("escapeLines keeps line breaks and escapes each line", () => {
    expect(escapeLines("first\u001b[2J\nsecond\\\n")).toBe("first\\033[2J\nsecond\\\\\n");
  });
});

test("the same names as GNU tar prints them (tar -tf of an archive GNU tar made)", () => {
  const tar = requireTool("tar");
  const dir = tempDir();
  try {
    // every name of the table a file can have (no `/`, no NUL, no lone surrogate), except the
    // invisible format characters that shoot escapes beyond GNU tar
    const names = TABLE.map(([, input]) => input).filter((n) => n !== "" && !/[/\u0000\p{Cs}\p{Cf}]/u.test(n));
    const files = path.join(dir, "files");
    fs.mkdirSync(files);
    for (const n of names) fs.writeFileSync(path.join(files, n), "");
    const archive = path.join(dir, "names.tar");
    const made = Bun.spawnSync([tar, "-cf", archive, "-C", files, "--null", "-T", "-"], { stdin: Buffer.from(names.map((n) => `${n}\0`).join("")) });
    expect(made.exitCode).toBe(0);
    const listed = Bun.spawnSync([tar, "-tf", archive], { env: { ...process.env, LC_ALL: "C.UTF-8" } });
    expect(listed.exitCode).toBe(0);
    const printed = listed.stdout.toString().split("\n").filter(Boolean);
    expect(printed).toEqual(names.map(escapeText));
    expect(printed.length).toBeGreaterThanOrEqual(25);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a Prometheus label value holds the text as shoot prints it, and parses back to it", () => {
  const parse = require("parse-prometheus-text-format") as (text: string) => Array<{ metrics: Array<{ labels?: Record<string, string> }> }>;
  for (const v of ["web1", "a\"b\\c", "nl\nx\u001b[2J", "\u202eevil"]) {
    const text = `# TYPE m gauge\nm{name="${labelValue(v)}"} 1\n`;
    expect(text.split("\n")).toHaveLength(3);
    expect(parse(text)[0]!.metrics[0]!.labels!.name).toBe(escapeText(v));
  }
});
