/**
 * The sshd_config of a throwaway sshd on 127.0.0.1 (the demo's `--ssh`, and the test suite's):
 * its own host key, pid file and authorized_keys, keys only, no PAM.
 */
export interface LoopbackSshd {
  port: number;
  hostKey: string;
  pidFile: string;
  authorizedKeys: string;
  /** "forced-commands-only" for a key that may only run `shoot serve`. */
  permitRootLogin: "forced-commands-only" | "prohibit-password";
  /** Further lines, each with its reason beside it where it is set. */
  extra?: readonly string[];
}

export function loopbackSshdConfig(o: LoopbackSshd): string {
  return [
    `Port ${o.port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${o.hostKey}`,
    `PidFile ${o.pidFile}`,
    `AuthorizedKeysFile ${o.authorizedKeys}`,
    // its files lie under /tmp, which StrictModes would reject as group-writable
    "StrictModes no",
    "UsePAM no",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    `PermitRootLogin ${o.permitRootLogin}`,
    "PrintMotd no",
    ...(o.extra ?? []),
    "",
  ].join("\n");
}

/** The known_hosts line for that sshd: `[127.0.0.1]:PORT TYPE KEY`. */
export function loopbackKnownHostsLine(port: number, hostPublicLine: string): string {
  return `[127.0.0.1]:${port} ${hostPublicLine.split(" ").slice(0, 2).join(" ")}\n`;
}
