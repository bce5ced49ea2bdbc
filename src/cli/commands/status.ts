import { defineCommand } from "citty";
import { loadConfig, resolveConfigPath } from "../../core/common/config.ts";
import { systemClock, systemDisk } from "../../core/common/deps.ts";
import { errorMessage } from "../../core/common/errors.ts";
import { escapeText } from "../../core/common/escape.ts";
import { checkHealth, renderHealth, renderNagios } from "../../core/report/health.ts";
import { configArgs } from "../args.ts";

/** Nagios' own code for "cannot tell" (configuration unreadable, status files unreadable). */
const NAGIOS_UNKNOWN = 3;

export default defineCommand({
  meta: { name: "status", description: "Is the backup healthy? Last run, code, age, last golden run, archive, each source; exit 0 when healthy" },
  args: {
    ...configArgs,
    json: { type: "boolean", description: "Print the health report as JSON" },
    nagios: { type: "boolean", description: "Print one Nagios/Icinga plugin line; exit 0 OK, 1 WARNING, 2 CRITICAL (3 UNKNOWN)" },
  },
  run({ args }) {
    if (args.nagios) {
      try {
        const report = checkHealth(loadConfig(resolveConfigPath(args.config, process.env)), { clock: systemClock, disk: systemDisk });
        console.log(renderNagios(report));
        return report.nagios;
      } catch (e) {
        console.log(escapeText(`SHOOT UNKNOWN - ${errorMessage(e).replace(/\n/g, " ")}`));
        return NAGIOS_UNKNOWN;
      }
    }
    const report = checkHealth(loadConfig(resolveConfigPath(args.config, process.env)), { clock: systemClock, disk: systemDisk });
    console.log(args.json ? JSON.stringify(report, null, 2) : renderHealth(report));
    return report.exitCode;
  },
});
