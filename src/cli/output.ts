import { codeName, isGolden } from "../core/common/codes.ts";
import { escapeLines } from "../core/common/escape.ts";
import type { RunOutcome } from "../core/common/outcome.ts";

/**
 * One line on stdout that a script or cron mail can read: role, OK/FAILED, code, name, message.
 * Messages quote servers and status files: control characters are escaped.
 */
export function printOutcome(o: RunOutcome): void {
  const verdict = isGolden(o.code) ? "OK" : "FAILED";
  const print = (line: string) => console.log(escapeLines(line));
  print(`shoot ${o.role}: ${verdict} ${o.code} ${codeName(o.code)}: ${o.message}`);
  for (const s of o.sources ?? []) {
    print(`  ${s.name}: ${isGolden(s.code) ? "OK" : "FAILED"} ${s.code} ${codeName(s.code)}: ${s.message}`);
  }
  for (const w of o.warnings.slice(0, 20)) print(`  warning ${w.code} ${codeName(w.code)}: ${w.msg}`);
  if (o.warnings.length > 20) print(`  … and ${o.warnings.length - 20} more warning(s)`);
}
