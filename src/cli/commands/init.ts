import { defineCommand } from "citty";
import os from "node:os";
import path from "node:path";
import { resolveConfigPath } from "../../core/common/config.ts";
import { UsageError } from "../../core/common/errors.ts";
import { runInit, type InitRole } from "../../core/setup/init.ts";
import { configArgs } from "../args.ts";
import { selfArgv } from "../self.ts";

/** Where the binary is meant to live when shoot runs from source and has no path of its own. */
const INSTALLED_BIN = "/usr/local/bin/shoot";

const SERVER_ONLY = ["name", "sources"] as const;
const CLIENT_ONLY = ["remote", "source-name", "port", "identity", "known-hosts"] as const;

function cronUser(): string {
  if (process.getuid?.() === 0) return "root";
  try {
    return os.userInfo().username;
  } catch {
    return "root";
  }
}

export default defineCommand({
  meta: { name: "init", description: "Write a commented configuration for a server or a backup host, create its directory, print the next steps" },
  args: {
    ...configArgs,
    role: { type: "positional", required: false, description: "server (backups are made here) or client (the backup host that pulls them)", valueHint: "server|client" },
    force: { type: "boolean", description: "Overwrite the configuration file and unit files if they exist" },
    systemd: { type: "string", description: "Also write the systemd service and timer into DIR (e.g. /etc/systemd/system)", valueHint: "DIR" },
    dir: { type: "string", description: "backup_dir (server; default /var/backups/shoot) or dest_dir (client; default /srv/shoot)", valueHint: "DIR" },
    name: { type: "string", description: "server: the name its archives go by (default: the host name)", valueHint: "NAME" },
    sources: { type: "string", description: "server: paths to back up, comma-separated (default: /etc)", valueHint: "PATH,…" },
    remote: { type: "string", description: "client: the server's user@host:backup_dir, or a local path", valueHint: "REMOTE" },
    "source-name": { type: "string", description: "client: the source's name (default: the server's host name)", valueHint: "NAME" },
    port: { type: "string", description: "client: the server's ssh port (default 22)", valueHint: "PORT" },
    identity: { type: "string", description: "client: the ssh key file (default: id_ed25519 beside the configuration)", valueHint: "FILE" },
    "known-hosts": { type: "string", description: "client: known_hosts for the servers' keys (default: known_hosts beside the configuration)", valueHint: "FILE" },
    bin: { type: "string", description: "shoot's path in the printed lines and units (default: this binary; from source /usr/local/bin/shoot)", valueHint: "PATH" },
  },
  run({ args }) {
    const role = args.role;
    if (role !== "server" && role !== "client") {
      throw new UsageError(role ? `unknown role ${JSON.stringify(role)}: shoot init server or shoot init client` : "init needs the role: shoot init server (backups made here) or shoot init client (the backup host)");
    }
    const wrong = (role === "server" ? CLIENT_ONLY : SERVER_ONLY).filter((f) => args[f] !== undefined);
    if (wrong.length) throw new UsageError(`${wrong.map((f) => `--${f}`).join(", ")} ${wrong.length === 1 ? "is" : "are"} not for shoot init ${role}`);
    const port = args.port === undefined ? undefined : Number(args.port);
    if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) throw new UsageError(`--port ${args.port}: expected a port number from 1 to 65535`);
    const abs = (p: string | undefined) => (p === undefined ? undefined : path.resolve(p));
    const compiled = selfArgv().length === 1;
    const result = runInit({
      role: role as InitRole,
      config: path.resolve(resolveConfigPath(args.config, process.env)),
      force: Boolean(args.force),
      systemdDir: abs(args.systemd),
      bin: args.bin ?? (compiled ? process.execPath : INSTALLED_BIN),
      binIsPlaceholder: args.bin === undefined && !compiled,
      hostname: os.hostname(),
      user: cronUser(),
      dir: abs(args.dir),
      name: args.name,
      sources: args.sources?.split(",").filter((s) => s !== "").map((s) => path.resolve(s)),
      remote: args.remote,
      sourceName: args["source-name"],
      port,
      identity: abs(args.identity),
      knownHosts: abs(args["known-hosts"]),
    });
    process.stdout.write(result.steps);
    return 0;
  },
});
