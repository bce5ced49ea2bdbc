/**
 * The man page and the shell completions under share/, generated from the command definitions
 * (scripts/docs.ts keeps them current; docs.test.ts checks that): the page renders with man(1)
 * without a warning, and each completion, loaded into its real shell, completes commands,
 * flags, --no-FLAG and the roles of `init`.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { SHARE_FILES } from "../../scripts/docs.ts";
import { commandTree } from "../../scripts/command-tree.ts";
import { spawner } from "../../src/io/process.ts";
import { CODES } from "../../src/core/common/codes.ts";
import { requireTool } from "../helpers/tools.ts";

const ROOT = path.resolve(import.meta.dir, "../..");
const at = (rel: string) => path.join(ROOT, rel);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-complete-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function run(argv: string[], env: Record<string, string> = {}) {
  const r = await spawner.run(argv, { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: tmp, ...env }, captureStdout: true, timeoutMs: 20_000, stderrLines: 50 });
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderrTail.join("\n") };
}

describe("man page", () => {
  test("man -l renders share/man/man1/shoot.1 without a warning: every command, its flags, every failure code", async () => {
    const r = await run([requireTool("man"), "--warnings=all", "-l", at(SHARE_FILES.man)], { MANWIDTH: "100", LANG: "C.UTF-8" });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    for (const c of await commandTree()) {
      expect(r.stdout).toContain(`shoot ${c.name} [`);
      for (const f of c.flags) expect(r.stdout).toContain(`--${f.negatable ? "[no-]" : ""}${f.name}`);
    }
    for (const c of CODES.filter((x) => x.kind === "failure")) expect(r.stdout).toMatch(new RegExp(`\\n {7}${c.code} ${c.name}\\n`));
  });
});

describe("completions", () => {
  const cases: { typed: string; want: string }[] = [
    { typed: "shoot rest", want: "shoot restore" },
    { typed: "shoot restore --no-", want: "shoot restore --no-checksum" },
    { typed: "shoot init s", want: "shoot init server" },
    { typed: "shoot status --nag", want: "shoot status --nagios" },
    { typed: "shoot wrapper --qu", want: "shoot wrapper --quiet" },
  ];

  test("bash: the completion function offers commands, flags, --no-FLAG, roles and directories", async () => {
    fs.mkdirSync(path.join(tmp, "only-dir"), { recursive: true });
    const script = [
      `source ${JSON.stringify(at(SHARE_FILES.bash))}`,
      'ask() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _shoot; echo "${COMP_WORDS[*]} => ${COMPREPLY[*]}"; }',
      "ask shoot rest",
      "ask shoot restore --no",
      "ask shoot init ''",
      "ask shoot wrapper -",
      `ask shoot init --dir ${JSON.stringify(path.join(tmp, "only-d"))}`,
      "complete -p shoot",
    ].join("\n");
    const r = await run([requireTool("bash"), "--norc", "-c", script]);
    expect(r.stderr).toBe("");
    expect(r.stdout.split("\n")).toEqual([
      "shoot rest => restore",
      "shoot restore --no => --no-checksum",
      "shoot init  => server client",
      "shoot wrapper - => --config --quiet -q --help",
      `shoot init --dir ${path.join(tmp, "only-d")} => ${path.join(tmp, "only-dir")}`,
      "complete -F _shoot shoot",
      "",
    ]);
  });

  test("zsh: typed words completed by TAB in an interactive zsh with compinit", async () => {
    const fpath = path.join(tmp, "zfunc");
    fs.mkdirSync(fpath, { recursive: true });
    fs.copyFileSync(at(SHARE_FILES.zsh), path.join(fpath, "_shoot"));
    // a zsh on a pseudo-terminal: type the words and TAB, then turn the line into a print of itself
    const driver = [
      "zmodload zsh/zpty",
      "zpty z zsh -f -i",
      'zpty -w z "PS1=\'> \'; fpath=(${(q)1} \\$fpath); autoload -U compinit; compinit -u -D; shoot() {}"',
      "zpty -w -n z \"$2\"$'\\t\\C-aprint -r -- RESULT:\\n'",
      "zpty -r z out $'*\\nRESULT:*\\n*'",
      "print -r -- ${${(M)${(f)out//$'\\r'/}:#RESULT:*}#RESULT:}",
      "zpty -d z",
    ].join("\n");
    fs.writeFileSync(path.join(tmp, "drive.zsh"), `${driver}\n`);
    for (const c of cases) {
      const r = await run([requireTool("zsh"), "-f", path.join(tmp, "drive.zsh"), fpath, c.typed]);
      expect(`${c.typed} => ${r.stdout.trim()}`).toBe(`${c.typed} => ${c.want}`);
    }
  }, 60_000);

  test("fish: complete -C offers commands, flags, --no-FLAG and roles", async () => {
    const fish = requireTool("fish");
    const script = [`source ${JSON.stringify(at(SHARE_FILES.fish))}`, ...cases.map((c) => `echo "${c.typed} =>" (complete -C "${c.typed}" | string split -f1 \\t)`)].join("\n");
    const r = await run([fish, "--no-config", "-c", script]);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim().split("\n")).toEqual(cases.map((c) => `${c.typed} => ${c.want.split(" ").at(-1)}`));
  });
});
