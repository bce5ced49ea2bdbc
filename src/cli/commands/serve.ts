import { defineCommand } from "citty";
import { UsageError } from "../../core/common/errors.ts";
import { CommandRefused } from "../../core/transfer/rsync.ts";
import { serveReadOnly } from "../../core/server/forced-command.ts";
import { spawner } from "../../io/process.ts";

export default defineCommand({
  meta: {
    name: "serve",
    description: "Forced command for the backup host's key on a server: serve rsync reads of DIR, refuse everything else",
  },
  args: {
    "read-only": { type: "boolean", description: "Serve reads only (required: the only mode there is)" },
    dir: { type: "positional", description: "The backup directory to serve (backup_dir)", valueHint: "DIR" },
  },
  async run({ args }) {
    if (!args["read-only"]) throw new UsageError("serve needs --read-only: the backup host's key may only read");
    if (!args.dir) throw new UsageError("serve needs the directory to serve: shoot serve --read-only DIR");
    try {
      return await serveReadOnly(args.dir, process.env.SSH_ORIGINAL_COMMAND, {
        spawner,
        env: process.env,
        stderr: (line) => process.stderr.write(`${line}\n`),
      });
    } catch (e) {
      if (e instanceof CommandRefused) throw new UsageError(`refused: ${e.message} (this key may only read ${args.dir} with rsync)`);
      throw e;
    }
  },
});
