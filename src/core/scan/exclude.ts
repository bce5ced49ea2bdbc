/**
 * Exclusion patterns, as administrators know them from tar and rsync:
 * - a pattern with no "/" matches a name at any depth ("*.tmp", ".cache");
 * - a pattern starting with "/" matches from the root ("/home/*\/.cache");
 * - any other pattern matches a trailing part of the path ("logs/*.gz");
 * - "*" and "?" stay within one path segment, "**" crosses segments;
 * - a trailing "/" matches directories only.
 * An excluded directory is left out with everything below it.
 */
export interface Matcher {
  excluded(absPath: string, isDir: boolean): boolean;
}

function globToRegex(glob: string): string {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") {
      if (glob[i + 1] === "*") {
        re += ".*";
        i++;
        if (glob[i + 1] === "/") i++, (re += "(?:/|)");
      } else re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        let body = glob.slice(i + 1, end);
        if (body.startsWith("!")) body = `^${body.slice(1)}`;
        re += `[${body.replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return re;
}

export function compileExcludes(patterns: readonly string[]): Matcher {
  const rules = patterns.map((p) => {
    const dirOnly = p.length > 1 && p.endsWith("/");
    const body = dirOnly ? p.slice(0, -1) : p;
    let source: string;
    if (body.startsWith("/")) source = `^${globToRegex(body)}$`;
    else if (!body.includes("/")) source = `(?:^|/)${globToRegex(body)}$`;
    else source = `(?:^|/)${globToRegex(body)}$`;
    return { re: new RegExp(source, "s"), dirOnly };
  });
  return {
    excluded(absPath, isDir) {
      for (const r of rules) if ((!r.dirOnly || isDir) && r.re.test(absPath)) return true;
      return false;
    },
  };
}
