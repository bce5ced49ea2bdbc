/** Tests need real tools; a missing one fails loudly with the command that installs it. */
import { which } from "bun";

const INSTALL: Record<string, string> = {
  rsync: "apt-get update && apt-get install -y rsync",
  ssh: "apt-get update && apt-get install -y openssh-client",
  "ssh-keygen": "apt-get update && apt-get install -y openssh-client",
  sshd: "apt-get update && apt-get install -y openssh-server",
  tar: "apt-get update && apt-get install -y tar",
  gzip: "apt-get update && apt-get install -y gzip",
  zstd: "apt-get update && apt-get install -y zstd",
  md5sum: "apt-get update && apt-get install -y coreutils",
  unshare: "apt-get update && apt-get install -y util-linux",
};

const SBIN = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

/** Absolute path of a tool, or an Error naming the install command. */
export function requireTool(name: string): string {
  const found = which(name) ?? which(name, { PATH: SBIN.join(":") });
  if (!found) {
    throw new Error(`${name} is required by the test suite but is not installed; install it with: ${INSTALL[name] ?? `apt-get install -y ${name}`}`);
  }
  return found;
}
