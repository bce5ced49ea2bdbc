/**
 * `shoot init server|client`: the first ten minutes on a new host. Writes a commented
 * configuration (every key, from the KEYS table through exampleConfig) with this host's
 * values filled in, creates the role's directory with safe permissions, optionally writes a
 * systemd service + timer pair, and returns the next steps as text a person can follow line by
 * line: the cron line, the units, and for a backup host the key pair, the restricted
 * authorized_keys line for the server and the host-key step.
 *
 * Nothing that exists is overwritten without `force`, and every refusal is decided before
 * anything is written, so a refused run leaves the host as it was.
 */
import fs from "node:fs";
import path from "node:path";
import { exampleConfig } from "../common/config-doc.ts";
import { ConfigError, isLocalRemote, parseConfig, parseRemote, sanitizeHostname, type Section } from "../common/config.ts";
import { ShootError, UsageError, errnoCode, errorMessage } from "../common/errors.ts";
import { fsyncDir } from "../state/fsutil.ts";
import { TEMP_PREFIX } from "../state/naming.ts";
import { shWord } from "../common/shell-word.ts";

export type InitRole = "server" | "client";

export interface InitOptions {
  role: InitRole;
  /** The configuration file to write (absolute). */
  config: string;
  force: boolean;
  /** Write the systemd service and timer into this directory. */
  systemdDir?: string;
  /** shoot's path in the printed commands and units. */
  bin: string;
  /** True when `bin` only stands for where the binary will be (running from source). */
  binIsPlaceholder: boolean;
  hostname: string;
  /** The user cron runs shoot as. */
  user: string;
  /** backup_dir (server) or dest_dir (client). */
  dir?: string;
  // server
  name?: string;
  sources?: string[];
  // client
  remote?: string;
  sourceName?: string;
  port?: number;
  identity?: string;
  knownHosts?: string;
}

export interface InitResult {
  config: string;
  /** Files written (the configuration first). */
  written: string[];
  /** Directories created. */
  created: string[];
  /** The next steps, as text to print. */
  steps: string;
}

export const DEFAULT_BACKUP_DIR = "/var/backups/shoot";
export const DEFAULT_DEST_DIR = "/srv/shoot";
export const DEFAULT_SOURCES = ["/etc"];
/** A server that does not exist: the written configuration says to change it. */
const PLACEHOLDER_REMOTE = `root@web1.example.com:${DEFAULT_BACKUP_DIR}`;
const PLACEHOLDER_KEY = "ssh-ed25519 AAAA…";

const CRON_TIME: Record<InitRole, { cron: string; calendar: string }> = {
  // the client comes long after the servers so that their runs have ended
  server: { cron: "15 2 * * *", calendar: "*-*-* 02:15:00" },
  client: { cron: "30 5 * * *", calendar: "*-*-* 05:30:00" },
};

const toml = (s: string) => JSON.stringify(s);

/** Commented TOML for the sections, with a header; sections in `off` are commented out whole. */
export function renderConfig(title: string, sections: readonly Section[], values: Record<string, string>, off: readonly Section[] = []): string {
  const commentOut = (text: string) => text.split("\n").map((l) => (l === "" || l.startsWith("#") ? l : `# ${l}`)).join("\n");
  const header = [
    `# ${title}`,
    "# Every key is listed with what it means; a key that is commented out shows its default.",
    "# Check the file with: shoot check-config --config FILE",
    "",
    "",
  ].join("\n");
  const on = exampleConfig(sections, values);
  const rest = off.length ? `\n# Uncomment and fill in to use:\n${commentOut(exampleConfig(off))}` : "";
  return `${header}${on}${rest}`;
}

/** The key/value pairs `shoot init` fills in, as TOML literals for exampleConfig. */
function configValues(o: Required<Pick<InitOptions, "dir">> & InitOptions, source: SourcePlan | undefined): Record<string, string> {
  if (o.role === "server") {
    return {
      "server.name": toml(o.name ?? sanitizeHostname(o.hostname)),
      "server.sources": `[${(o.sources ?? DEFAULT_SOURCES).map(toml).join(", ")}]`,
      "server.backup_dir": toml(o.dir),
    };
  }
  const v: Record<string, string> = {
    "client.dest_dir": toml(o.dir),
    "client.source.name": toml(source!.name),
    "client.source.remote": toml(source!.remote),
  };
  if (source!.ssh) {
    v["client.known_hosts"] = toml(source!.ssh.knownHosts);
    v["client.source.port"] = String(source!.ssh.port);
    v["client.source.identity"] = toml(source!.ssh.identity);
  }
  return v;
}

interface SourcePlan {
  name: string;
  remote: string;
  placeholder: boolean;
  /** Absent for a local path. */
  ssh?: { user: string; host: string; path: string; port: number; identity: string; knownHosts: string };
}

function planSource(o: InitOptions): SourcePlan {
  const remote = o.remote ?? PLACEHOLDER_REMOTE;
  const confDir = path.dirname(o.config);
  if (isLocalRemote(remote)) {
    return { name: o.sourceName ?? "self", remote: path.normalize(remote), placeholder: false };
  }
  const r = parseRemote(remote);
  const flag = `--remote ${JSON.stringify(remote)}`;
  if (!r) {
    const want = "user@host:/absolute/path (the server's backup_dir) or an absolute local path";
    throw new UsageError(`${flag}: expected ${want}`);
  }
  // the authorized_keys line goes into that user's file on the server: it must be named, not guessed
  if (!r.user) {
    const example = `root@${remote}`;
    throw new UsageError(`${flag}: name the user the key logs in as, e.g. ${example} (the archives belong to root)`);
  }
  return {
    // an address keeps its dots; a host name gives its first label, as the server's name does
    name: o.sourceName ?? (/^[0-9.]+$|:/.test(r.host) ? r.host.replace(/[^A-Za-z0-9.]/g, "-") : sanitizeHostname(r.host)),
    remote,
    placeholder: o.remote === undefined,
    ssh: {
      user: r.user,
      host: r.host,
      path: r.path,
      port: o.port ?? 22,
      identity: o.identity ?? path.join(confDir, "id_ed25519"),
      knownHosts: o.knownHosts ?? path.join(confDir, "known_hosts"),
    },
  };
}

/** Which flag set a configuration key, to name it when a value is refused. */
const FLAG_OF: Record<string, string> = {
  "[server] name": "--name", "[server] sources": "--sources", "[server] backup_dir": "--dir",
  "[client] dest_dir": "--dir", "[client] known_hosts": "--known-hosts",
  "[[client.source]] #1 name": "--source-name", "[[client.source]] #1 remote": "--remote",
  "[[client.source]] #1 port": "--port", "[[client.source]] #1 identity": "--identity",
};

function validate(text: string, o: InitOptions): void {
  try {
    parseConfig(text, o.config, o.hostname);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const flag = e.key ? FLAG_OF[e.key] : undefined;
    throw new UsageError(`${flag ? `${flag}: ` : ""}${e.key ? `${e.key}: ` : ""}${e.problem}`);
  }
}

// --- systemd ---------------------------------------------------------------------------------

export interface UnitFile {
  name: string;
  text: string;
}

/** The command cron and systemd run for a role. */
export function runCommand(o: Pick<InitOptions, "role" | "bin" | "config">, quiet: boolean): string {
  return [o.bin, o.role === "server" ? "wrapper" : "client", "--config", o.config, ...(quiet ? ["--quiet"] : [])].map(shWord).join(" ");
}

export function systemdUnits(o: Pick<InitOptions, "role" | "bin" | "config">, dir: string): [UnitFile, UnitFile] {
  const base = `shoot-${o.role}`;
  const what = o.role === "server" ? "make this host's backup archive (shoot wrapper)" : "pull, verify and keep the servers' archives (shoot client)";
  const service = [
    "[Unit]",
    `Description=shoot: ${what}`,
    o.role === "client" ? "Wants=network-online.target\nAfter=network-online.target" : "After=local-fs.target",
    "",
    "[Service]",
    "Type=oneshot",
    // systemd's ExecStart takes C-style quoting, which a bare or single-quoted word satisfies
    `ExecStart=${runCommand(o, true)}`,
    "# The run limits itself (max_runtime for the server, timeout for each transfer).",
    "TimeoutStartSec=infinity",
    "# On stop, SIGTERM goes to shoot alone: it ends its children itself and records INTERRUPTED.",
    "KillMode=mixed",
    "TimeoutStopSec=120",
    "Nice=10",
    "IOSchedulingClass=best-effort",
    "IOSchedulingPriority=7",
    "# Hardening that leaves backups working: the system is read-only except the directory",
    `# shoot writes (${o.role === "server" ? "backup_dir" : "dest_dir"}); home directories stay readable.`,
    "# MemoryDenyWriteExecute= would break the JavaScript runtime's JIT: leave it out.",
    "NoNewPrivileges=true",
    "PrivateTmp=true",
    "PrivateDevices=true",
    "ProtectSystem=full",
    "ProtectHome=read-only",
    `ReadWritePaths=-${dir}`,
    ...(o.role === "client"
      ? ["# With accept_new_host_key = true, ssh writes known_hosts: add its directory above."]
      : ["# A [mail] spool_dir or [monitor] metrics_file outside backup_dir: add it above."]),
    "ProtectKernelTunables=true",
    "ProtectKernelModules=true",
    "ProtectControlGroups=true",
    "RestrictSUIDSGID=true",
    "RestrictRealtime=true",
    "LockPersonality=true",
    "",
  ].join("\n");
  const timer = [
    "[Unit]",
    `Description=Run ${base}.service every night`,
    "",
    "[Timer]",
    `OnCalendar=${CRON_TIME[o.role].calendar}`,
    "RandomizedDelaySec=10m",
    "# A run missed while the machine was off is made up at the next boot.",
    "Persistent=true",
    "",
    "[Install]",
    "WantedBy=timers.target",
    "",
  ].join("\n");
  return [{ name: `${base}.service`, text: service }, { name: `${base}.timer`, text: timer }];
}

// --- writing ---------------------------------------------------------------------------------

/**
 * Write a file through a temporary name. Without `replace`, the final step is link(2), which
 * fails when the name exists: even a file that appeared since the check is never overwritten.
 */
function writeNew(file: string, text: string, mode: number, replace: boolean): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `${TEMP_PREFIX}${path.basename(file)}.${process.pid}`);
  const fd = fs.openSync(tmp, "wx", mode);
  try {
    fs.writeSync(fd, text);
    fs.fchmodSync(fd, mode); // the umask may have taken bits away
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    if (replace) fs.renameSync(tmp, file);
    else {
      fs.linkSync(tmp, file);
      fs.rmSync(tmp);
    }
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    if (errnoCode(e) === "EEXIST") throw new UsageError(`${file} appeared while shoot init ran; nothing was overwritten`);
    throw e;
  }
  fsyncDir(dir);
}

/** Create `dir` (and missing parents) with mode 0700; the directories created, outermost first. */
function makeDir(dir: string): string[] {
  const missing: string[] = [];
  for (let d = dir; !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) {
    fs.mkdirSync(d, { mode: 0o700 });
    fs.chmodSync(d, 0o700);
  }
  return missing;
}

// --- the steps -------------------------------------------------------------------------------

const indent = (lines: readonly string[], n = 5) => lines.map((l) => (l ? `${" ".repeat(n)}${l}` : l));

/** The forced command on the server: the backup host's key may only read `dir`. */
export function authorizedKeysLine(shoot: readonly string[], dir: string, publicKey: string): string {
  const command = [...shoot, "serve", "--read-only", dir].map(shWord).join(" ").replace(/["\\]/g, "\\$&");
  return `command="${command}",restrict ${publicKey}`;
}

/** The public key beside an identity file, when it is there and is one key line. */
function readPublicKey(identity: string): string | undefined {
  try {
    const line = fs.readFileSync(`${identity}.pub`, "utf8").trim();
    return /^(ssh-|ecdsa-|sk-)\S+ \S+/.test(line) && !line.includes("\n") ? line : undefined;
  } catch {
    return undefined;
  }
}

/** Inside double quotes in a POSIX shell, only these four are special. */
const dq = (s: string) => s.replace(/["\\$`]/g, "\\$&");

function cronAndSystemd(o: InitOptions, dir: string, units: UnitFile[], unitsWritten: boolean, n: number): string[] {
  const out = [
    `${n}. Run it every night with cron, from a file such as /etc/cron.d/shoot (cron mails what a run prints;`,
    "   with [mail] set, shoot mails its own report, by default only on failure):",
    ...indent([`${CRON_TIME[o.role].cron}  ${o.user}  ${runCommand(o, true)}`]),
    "",
  ];
  if (unitsWritten) {
    const files = units.map((u) => path.join(o.systemdDir!, u.name));
    out.push(
      "   or with systemd, from the service and timer written to",
      ...indent(files),
      `   (Type=oneshot, hardened; ${dir} stays writable):`,
      ...indent([`systemctl daemon-reload && systemctl enable --now ${units[1]!.name}`]),
    );
    if (path.resolve(o.systemdDir!) !== "/etc/systemd/system") out.push(`   (systemd reads units from /etc/systemd/system: copy them there first.)`);
  } else {
    out.push("   or with systemd: these two files in /etc/systemd/system (`--systemd DIR` writes them),");
    for (const u of units) out.push("", `   ${u.name}:`, ...indent(u.text.trimEnd().split("\n"), 7));
    out.push("", "   then:", ...indent([`systemctl daemon-reload && systemctl enable --now ${units[1]!.name}`]));
  }
  return out;
}

function serverSteps(o: InitOptions, dir: string, units: UnitFile[], unitsWritten: boolean): string[] {
  const bin = shWord(o.bin);
  const cfg = shWord(o.config);
  const host = sanitizeHostname(o.hostname);
  return [
    `Next steps on ${host}:`,
    "",
    "1. Set the sources and exclusions in the file, then check it:",
    ...indent([`${bin} check-config --config ${cfg}`]),
    "",
    "2. Make the first backup by hand (exit code 0; its report ends with 30 FIRST_ARCHIVE):",
    ...indent([runCommand(o, false)]),
    "",
    ...cronAndSystemd(o, dir, units, unitsWritten, 3),
    "",
    "4. On the backup host, set up the pull from here; it prints the key line for root's",
    "   authorized_keys here, which lets its key read only this directory:",
    ...indent([`shoot init client --remote root@${o.hostname}:${shWord(dir)}`]),
    ...indent([authorizedKeysLine([o.bin], dir, `${PLACEHOLDER_KEY} shoot@backup-host`)]),
    "   and in /etc/ssh/sshd_config here (then reload sshd), so that root logs in only with",
    "   keys that carry a forced command:",
    ...indent(["PermitRootLogin forced-commands-only"]),
  ];
}

function clientSteps(o: InitOptions, dir: string, src: SourcePlan, units: UnitFile[], unitsWritten: boolean): string[] {
  const bin = shWord(o.bin);
  const cfg = shWord(o.config);
  const host = sanitizeHostname(o.hostname);
  const out = [`Next steps on ${host}:`, ""];
  let n = 1;
  if (src.placeholder) {
    out.push(`${n++}. Set remote in [[client.source]] to the server's user@host:backup_dir (it says ${src.remote},`, "   a server that does not exist), or run shoot init client again with --remote and --force.", "");
  }
  const ssh = src.ssh;
  if (ssh) {
    const server = ssh.host;
    const pub = readPublicKey(ssh.identity);
    if (pub) out.push(`${n++}. The key pair this host logs in to ${server} with exists: ${ssh.identity} (.pub).`, "");
    else {
      out.push(
        `${n++}. Make the key pair this host logs in to ${server} with (no passphrase: cron has nobody to type it):`,
        ...indent([["ssh-keygen", "-t", "ed25519", "-N", "", "-C", `shoot@${host}`, "-f", ssh.identity].map((w) => (w === "" ? "''" : shWord(w))).join(" ")]),
        "",
      );
    }
    const home = ssh.user === "root" ? "/root" : `~${ssh.user}`;
    out.push(
      `${n++}. On ${server}, add this line to ${home}/.ssh/authorized_keys: the key may then only read`,
      `   ${ssh.path} through \`shoot serve --read-only\` (rsync reads; no shell, no forwarding):`,
      ...indent([authorizedKeysLine([o.bin], ssh.path, pub ?? `${PLACEHOLDER_KEY} shoot@${host}`)]),
    );
    if (!pub) {
      const line = authorizedKeysLine([o.bin], ssh.path, "KEY");
      const [before] = line.split("KEY");
      out.push(
        `   where "${PLACEHOLDER_KEY} shoot@${host}" stands for the contents of ${ssh.identity}.pub; once the key`,
        "   exists, this prints the whole line:",
        ...indent([`echo "${dq(before!)}$(cat ${shWord(`${ssh.identity}.pub`)})"`]),
      );
    }
    out.push(`   (${o.bin} is shoot's path on ${server}: change it if shoot is installed elsewhere there.)`);
    if (ssh.user === "root") {
      out.push(
        `   In /etc/ssh/sshd_config on ${server} (then reload sshd), let root log in only with keys that`,
        "   carry a forced command:",
        ...indent(["PermitRootLogin forced-commands-only"]),
      );
    } else {
      out.push(`   The user ${ssh.user} must be able to read ${ssh.path} on ${server} (the archives are root's, mode 0600, by default).`);
    }
    const scanned = path.join(path.dirname(ssh.knownHosts), `${src.name}.hostkey`);
    out.push(
      "",
      `${n++}. Record ${server}'s host key here; shoot refuses unknown and changed host keys:`,
      ...indent([
        `ssh-keyscan -p ${ssh.port} -t ed25519 ${shWord(server)} > ${shWord(scanned)}`,
        `ssh-keygen -lf ${shWord(scanned)}`,
      ]),
      `   Check that this fingerprint is the one ${server} shows for`,
      "   `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` (run there), and only then:",
      ...indent([`cat ${shWord(scanned)} >> ${shWord(ssh.knownHosts)}`]),
      "",
    );
  }
  out.push(
    `${n++}. Check the file and make the first pull by hand (exit code 0; 30 FIRST_ARCHIVE for the first copy):`,
    ...indent([`${bin} check-config --config ${cfg}`, runCommand(o, false)]),
    `   md5sum -c passes for every copy in ${path.join(dir, src.name)}/.`,
    "",
    ...cronAndSystemd(o, dir, units, unitsWritten, n++),
  );
  return out;
}

// --- the run ---------------------------------------------------------------------------------

export function runInit(opts: InitOptions): InitResult {
  const o = { ...opts, dir: path.resolve(opts.dir ?? (opts.role === "server" ? DEFAULT_BACKUP_DIR : DEFAULT_DEST_DIR)) };
  const src = o.role === "client" ? planSource(o) : undefined;
  const host = sanitizeHostname(o.hostname);
  const title = o.role === "server"
    ? `shoot configuration for ${host} as a server (its backups are made here, in backup_dir).`
    : `shoot configuration for ${host} as a backup host (it pulls the servers' archives into dest_dir).`;
  const sections: Section[] = o.role === "server" ? ["server", "monitor"] : ["client", "client.source", "monitor"];
  const text = renderConfig(title, sections, configValues(o, src), o.role === "server" ? ["mail", "server.dump"] : ["mail"]);
  validate(text, o);

  const units = systemdUnits(o, o.dir);
  const unitFiles = o.systemdDir ? units.map((u) => path.join(path.resolve(o.systemdDir!), u.name)) : [];
  if (!o.force) {
    const there = [o.config, ...unitFiles].filter((f) => fs.existsSync(f));
    if (there.length) throw new UsageError(`${there.join(", ")} ${there.length === 1 ? "exists" : "exist"} already; shoot init never overwrites a file without --force`);
  }
  const dirCode = o.role === "server" ? "BACKUP_DIR_UNUSABLE" : "DEST_UNUSABLE";
  if (fs.existsSync(o.dir) && !fs.statSync(o.dir).isDirectory()) throw new ShootError(dirCode, `${o.dir} exists and is not a directory`);

  const created: string[] = [];
  const written: string[] = [];
  try {
    created.push(...makeDir(path.dirname(o.config)));
    writeNew(o.config, text, 0o600, o.force);
    written.push(o.config);
  } catch (e) {
    if (e instanceof ShootError) throw e;
    throw new ShootError("CONFIG_MISSING", `cannot write ${o.config}: ${errorMessage(e)}${errnoCode(e) === "EACCES" ? " (run as root, or give --config FILE)" : ""}`);
  }
  try {
    created.push(...makeDir(o.dir));
  } catch (e) {
    throw new ShootError(dirCode, `wrote ${o.config}, but cannot create ${o.dir}: ${errorMessage(e)}`);
  }
  if (o.systemdDir) {
    try {
      created.push(...makeDir(path.resolve(o.systemdDir)));
      units.forEach((u, i) => {
        writeNew(unitFiles[i]!, u.text, 0o644, o.force);
        written.push(unitFiles[i]!);
      });
    } catch (e) {
      if (e instanceof ShootError) throw e;
      throw new ShootError("CONFIG_MISSING", `wrote ${o.config}, but cannot write the systemd units into ${o.systemdDir}: ${errorMessage(e)}`);
    }
  }

  const mode = (p: string) => `0${(fs.statSync(p).mode & 0o777).toString(8)}`;
  const head = [`Wrote ${o.config} (mode ${mode(o.config)}): ${o.role === "server" ? `[server] ${o.name ?? host}, backing up ${(o.sources ?? DEFAULT_SOURCES).join(", ")} into ${o.dir}` : `[client] keeping copies in ${o.dir}, one source: ${src!.name} from ${src!.remote}`}.`];
  for (const s of o.role === "server" ? o.sources ?? DEFAULT_SOURCES : []) {
    if (!fs.existsSync(s)) head.push(`Note: the source ${s} does not exist (yet); a run fails with SOURCE_MISSING until it does.`);
  }
  if (created.includes(o.dir)) head.push(`Created ${o.dir} (mode 0700).`);
  else head.push(`${o.dir} exists already (mode ${mode(o.dir)}); left as it is.`);
  for (const f of written.slice(1)) head.push(`Wrote ${f}.`);
  const steps = o.role === "server" ? serverSteps(o, o.dir, units, Boolean(o.systemdDir)) : clientSteps(o, o.dir, src!, units, Boolean(o.systemdDir));
  const tail = o.binIsPlaceholder ? ["", `Note: shoot runs from source here, so ${o.bin} in these lines stands for wherever the shoot binary is installed.`] : [];
  return { config: o.config, written, created, steps: [...head, "", ...steps, ...tail, ""].join("\n") };
}
