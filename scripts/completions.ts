/**
 * bash, zsh and fish completions for shoot, generated from the command definitions
 * (command-tree.ts) by `bun scripts/docs.ts` into share/ and shipped beside the binaries.
 * Each offers the commands, each command's flags (and --no-FLAG for a flag that is on by
 * default), files or directories where a flag or argument takes one, and the roles of `init`.
 */
import { valueKind, type CommandInfo, type FlagInfo } from "./command-tree.ts";

const HEADER = "shoot's completions, generated from its command definitions by scripts/docs.ts: do not edit";

function flagWords(f: FlagInfo): string[] {
  return [`--${f.name}`, ...(f.negatable ? [`--no-${f.name}`] : []), ...f.short.map((s) => `-${s}`)];
}

/** What --no-FLAG does, as the command says it. */
function negative(f: FlagInfo): string {
  return f.negativeDescription ?? `Not: ${f.description}`;
}

function firstLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}

// --- bash --------------------------------------------------------------------------------------

export function bashCompletion(commands: readonly CommandInfo[]): string {
  const valueCases: string[] = [];
  for (const c of commands) {
    for (const f of c.flags.filter((x) => !x.boolean)) {
      const kind = valueKind(f.valueHint);
      const words = flagWords(f).filter((w) => !w.startsWith("--no-"));
      const pattern = words.map((w) => `${c.name}:${w}`).join("|");
      const reply = kind === "file" ? "compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- \"$cur\"))"
        : kind === "dir" ? "compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- \"$cur\"))"
        : Array.isArray(kind) ? `COMPREPLY=($(compgen -W "${kind.join(" ")}" -- "$cur"))`
        : "COMPREPLY=()";
      valueCases.push(`    ${pattern}) ${reply}; return ;;`);
    }
  }
  const flagCases = commands.map((c) => `    ${c.name}) flags="${[...c.flags.flatMap(flagWords), "--help"].join(" ")}" ;;`);
  const argCases = commands.flatMap((c) => {
    const p = c.positionals[0];
    const kind = valueKind(p?.valueHint);
    if (Array.isArray(kind)) return [`    ${c.name}) COMPREPLY=($(compgen -W "${kind.join(" ")}" -- "$cur")) ;;`];
    if (kind === "file") return [`    ${c.name}) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;`];
    return [];
  });
  return [
    `# ${HEADER}`,
    "# Install: copy to /usr/share/bash-completion/completions/shoot (or source it from ~/.bashrc).",
    "_shoot() {",
    '  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}',
    "  COMPREPLY=()",
    "  if [[ $COMP_CWORD -eq 1 ]]; then",
    `    COMPREPLY=($(compgen -W "${commands.map((c) => c.name).join(" ")} --help --version" -- "$cur"))`,
    "    return",
    "  fi",
    "  local cmd=${COMP_WORDS[1]} flags=",
    '  case "$cmd:$prev" in',
    ...valueCases,
    "  esac",
    '  case "$cmd" in',
    ...flagCases,
    "    *) return ;;",
    "  esac",
    '  if [[ $cur == -* ]]; then',
    '    COMPREPLY=($(compgen -W "$flags" -- "$cur"))',
    "    return",
    "  fi",
    '  case "$cmd" in',
    ...argCases,
    "  esac",
    "}",
    "complete -F _shoot shoot",
    "",
  ].join("\n");
}

// --- zsh ---------------------------------------------------------------------------------------

/** Text inside a single-quoted zsh word. */
function zq(s: string): string {
  return s.replace(/'/g, "'\\''");
}

/** A description inside an _arguments spec's [...]. */
function zdesc(s: string): string {
  return zq(firstLine(s).replace(/([[\]:\\])/g, "\\$1"));
}

function zshAction(hint: string | undefined): string {
  const kind = valueKind(hint);
  if (kind === "file") return "_files";
  if (kind === "dir") return "_files -/";
  if (Array.isArray(kind)) return `(${kind.join(" ")})`;
  return " ";
}

function zshSpecs(c: CommandInfo): string[] {
  const specs: string[] = [];
  for (const f of c.flags) {
    const all = [`--${f.name}`, ...f.short.map((s) => `-${s}`)];
    const hint = zq(f.valueHint ?? "VALUE").replace(/:/g, "\\:");
    const spec = f.boolean ? `[${zdesc(f.description)}]` : `=[${zdesc(f.description)}]:${hint}:${zshAction(f.valueHint)}`;
    // several names: zsh's brace expansion makes one spec of each, exclusive of the others
    specs.push(all.length > 1 ? `'(${all.join(" ")})'{${all.join(",")}}'${spec}'` : `'${all[0]}${spec}'`);
    if (f.negatable) specs.push(`'--no-${f.name}[${zdesc(negative(f))}]'`);
  }
  specs.push("'(- *)--help[Show the usage of this command]'");
  c.positionals.forEach((p, i) => {
    const last = i === c.positionals.length - 1;
    const star = last && c.variadic ? "*" : p.required ? "" : ":";
    specs.push(`'${star}:${zq(p.valueHint).replace(/:/g, "\\:")}:${zshAction(p.valueHint)}'`);
  });
  return specs;
}

export function zshCompletion(commands: readonly CommandInfo[]): string {
  const list = commands.map((c) => `    '${c.name}:${zq(firstLine(c.summary))}'`);
  const cases = commands.map((c) => [`    ${c.name})`, `      _arguments -s -S \\`, ...zshSpecs(c).map((s, i, a) => `        ${s}${i < a.length - 1 ? " \\" : ""}`), "      ;;"].join("\n"));
  return [
    "#compdef shoot",
    `# ${HEADER}`,
    "# Install: copy to a directory in $fpath (e.g. /usr/local/share/zsh/site-functions) as _shoot.",
    "",
    "_shoot() {",
    "  local -a commands",
    "  commands=(",
    ...list,
    "  )",
    "  if (( CURRENT == 2 )); then",
    "    _describe -t commands 'shoot command' commands",
    "    _arguments '--help[Show the commands]' '--version[Show the version and platform]'",
    "    return",
    "  fi",
    "  local cmd=$words[2]",
    "  shift words",
    "  (( CURRENT-- ))",
    "  case $cmd in",
    ...cases,
    "  esac",
    "}",
    "",
    '_shoot "$@"',
    "",
  ].join("\n");
}

// --- fish --------------------------------------------------------------------------------------

function fq(s: string): string {
  return `'${firstLine(s).replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function fishValue(hint: string | undefined): string {
  const kind = valueKind(hint);
  if (kind === "file") return " -r -F";
  if (kind === "dir") return " -x -a '(__fish_complete_directories)'";
  if (Array.isArray(kind)) return ` -x -a ${fq(kind.join(" "))}`;
  return " -x";
}

export function fishCompletion(commands: readonly CommandInfo[]): string {
  const out = [
    `# ${HEADER}`,
    "# Install: copy to /usr/share/fish/vendor_completions.d/shoot.fish (or ~/.config/fish/completions/).",
    "complete -c shoot -f",
    "complete -c shoot -n __fish_use_subcommand -l help -d 'Show the commands'",
    "complete -c shoot -n __fish_use_subcommand -l version -d 'Show the version and platform'",
  ];
  for (const c of commands) out.push(`complete -c shoot -n __fish_use_subcommand -a ${c.name} -d ${fq(c.summary)}`);
  for (const c of commands) {
    const when = `-n '__fish_seen_subcommand_from ${c.name}'`;
    for (const f of c.flags) {
      const short = f.short.map((s) => ` -s ${s}`).join("");
      out.push(`complete -c shoot ${when}${short} -l ${f.name}${f.boolean ? "" : fishValue(f.valueHint)} -d ${fq(f.description)}`);
      if (f.negatable) out.push(`complete -c shoot ${when} -l no-${f.name} -d ${fq(negative(f))}`);
    }
    out.push(`complete -c shoot ${when} -l help -d 'Show the usage of this command'`);
    const p = c.positionals[0];
    const kind = valueKind(p?.valueHint);
    if (Array.isArray(kind)) out.push(`complete -c shoot ${when} -a ${fq(kind.join(" "))}`);
    else if (kind === "file") out.push(`complete -c shoot ${when} -F`);
  }
  return `${out.join("\n")}\n`;
}
