import { codeName, isGolden } from "../core/common/codes.ts";
import type { RunOutcome } from "../core/common/outcome.ts";

/** One line on stdout that a script or cron mail can read: role, OK/FAILED, code, name, message. */
export function printOutcome(o: RunOutcome): void {
  const verdict = isGolden(o.code) ? "OK" : "FAILED";
  console.log(`shoot ${o.role}: ${verdict} ${o.code} ${codeName(o.code)}: ${o.message}`);
  for (const s of o.sources ?? []) {
    console.log(`  ${s.name}: ${isGolden(s.code) ? "OK" : "FAILED"} ${s.code} ${codeName(s.code)}: ${s.message}`);
  }
  for (const w of o.warnings.slice(0, 20)) console.log(`  warning ${w.code} ${codeName(w.code)}: ${w.msg}`);
  if (o.warnings.length > 20) console.log(`  … and ${o.warnings.length - 20} more warning(s)`);
}
