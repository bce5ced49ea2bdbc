import { defineCommand } from "citty";
import { codesJson, codesText } from "../../core/common/codes-table.ts";

export default defineCommand({
  meta: { name: "codes", description: "Print the table of status and exit codes (golden: 4, 9, 30)" },
  args: { json: { type: "boolean", description: "Print the table as JSON" } },
  run({ args }) {
    console.log(args.json ? codesJson() : codesText());
    return 0;
  },
});
