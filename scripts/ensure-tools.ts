/**
 * Make sure the programs the test suite drives are installed: `bun scripts/ensure-tools.ts`.
 * As root on a Debian-like system it installs what is missing with apt-get; otherwise it
 * names the missing programs and prints the exact command that installs them.
 */
import { which } from "bun";
import { firstLibrary } from "../src/core/common/shared-library.ts";
import { describeResult, spawner } from "../src/io/process.ts";

export interface Tool {
  name: string;
  /** Debian package that provides it. */
  pkg: string;
  /** Where it must be when it is not looked up on PATH. */
  at?: string;
  /** A shared library (`name` is its soname): a function it holds, looked for by loading it rather than on PATH. */
  symbol?: string;
}

export const TOOLS: readonly Tool[] = [
  { name: "rsync", pkg: "rsync" },
  { name: "ssh", pkg: "openssh-client" },
  { name: "ssh-keygen", pkg: "openssh-client" },
  { name: "sshd", pkg: "openssh-server", at: "/usr/sbin/sshd" },
  { name: "tar", pkg: "tar" },
  // the differential suite reads every hostile archive with bsdtar too
  { name: "bsdtar", pkg: "libarchive-tools" },
  { name: "gzip", pkg: "gzip" },
  { name: "zstd", pkg: "zstd" },
  // gzip members are decompressed whole by it where it is installed; the tests read both ways
  { name: "libdeflate.so.0", pkg: "libdeflate0", symbol: "libdeflate_alloc_decompressor" },
  { name: "md5sum", pkg: "coreutils" },
  { name: "openssl", pkg: "openssl" },
  // the binary test asks `file` which platform a built executable is for
  { name: "file", pkg: "file" },
  // the mount-point tests mount a tmpfs in a mount namespace of their own
  { name: "unshare", pkg: "util-linux" },
  // tests that read as another user, and a FIFO in a walked tree
  { name: "setpriv", pkg: "util-linux" },
  { name: "mkfifo", pkg: "coreutils" },
  // the demo's test checks that it leaves the clone's files as they were
  { name: "git", pkg: "git" },
  // the man page is rendered, and the completions run in the shells they are for
  { name: "man", pkg: "man-db" },
  { name: "groff", pkg: "groff-base" },
  { name: "bash", pkg: "bash" },
  { name: "zsh", pkg: "zsh" },
  { name: "fish", pkg: "fish" },
  // the offsite tests start a throwaway Ceph cluster as their S3 store (test/helpers/ceph.ts)
  { name: "ceph-mon", pkg: "ceph-mon" },
  { name: "ceph-osd", pkg: "ceph-osd" },
  { name: "radosgw", pkg: "radosgw" },
  { name: "ceph", pkg: "ceph-common" },
  { name: "radosgw-admin", pkg: "ceph-common" },
  { name: "monmaptool", pkg: "ceph-base" },
  // an encrypted offsite copy must open with the age tool; the offsite benchmark runs rclone
  { name: "age", pkg: "age" },
  { name: "age-keygen", pkg: "age" },
  { name: "rclone", pkg: "rclone" },
  // the scale test puts servers behind network namespaces, links and qdiscs of its own
  { name: "ip", pkg: "iproute2" },
  { name: "tc", pkg: "iproute2" },
  // database dumps with real databases: PostgreSQL, MariaDB and SQLite, started by the tests
  { name: "pg_dump", pkg: "postgresql-client" },
  { name: "psql", pkg: "postgresql-client" },
  // the server itself (initdb, postgres) lives under /usr/lib/postgresql/VERSION/bin; this comes with it
  { name: "pg_ctlcluster", pkg: "postgresql" },
  { name: "mariadbd", pkg: "mariadb-server" },
  { name: "mariadb-install-db", pkg: "mariadb-server" },
  { name: "mariadb-dump", pkg: "mariadb-client" },
  { name: "mariadb", pkg: "mariadb-client" },
  { name: "sqlite3", pkg: "sqlite3" },
];

const SBIN = "/usr/sbin:/sbin:/usr/local/sbin";

function loads(soname: string, symbol: string): boolean {
  const loaded = firstLibrary(
    [soname],
    (T) => ({ [symbol]: { args: [], returns: T.ptr } }),
    (lib) => {
      lib.close();
      return true;
    },
  );
  return loaded ?? false;
}

function present(t: Tool): boolean {
  if (t.symbol) return loads(t.name, t.symbol);
  if (t.at) return which(t.at) !== null;
  return (which(t.name) ?? which(t.name, { PATH: SBIN })) !== null;
}

export function missingTools(tools: readonly Tool[] = TOOLS): Tool[] {
  return tools.filter((t) => !present(t));
}

function packagesFor(tools: Tool[]): string[] {
  return [...new Set(tools.map((t) => t.pkg))];
}

export function installCommand(tools: Tool[], sudo: boolean): string {
  const s = sudo ? "sudo " : "";
  return `${s}apt-get update && ${s}apt-get install -y ${packagesFor(tools).join(" ")}`;
}

async function apt(args: string[]): Promise<void> {
  const argv = ["apt-get", ...args];
  console.log(`ensure-tools: running ${argv.join(" ")}`);
  const r = await spawner.run(argv, {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    timeoutMs: 20 * 60_000,
    onStdoutLine: (l) => console.log(`  ${l}`),
    onStderrLine: (l) => console.error(`  ${l}`),
    installHint: "this needs a Debian-like system with apt-get",
  });
  if (r.exitCode !== 0) throw new Error(describeResult(r));
}

/** Returns a process exit code: 0 when every tool is there (afterwards). */
export async function ensureTools(tools: readonly Tool[] = TOOLS): Promise<number> {
  const missing = missingTools(tools);
  if (missing.length === 0) {
    console.log(`ensure-tools: all present (${tools.map((t) => t.name).join(", ")})`);
    return 0;
  }
  const names = missing.map((t) => t.name).join(", ");
  if (process.getuid?.() !== 0) {
    console.error(`ensure-tools: missing ${names}; the tests need them. Install them with:\n  ${installCommand(missing, true)}`);
    return 1;
  }
  console.log(`ensure-tools: missing ${names}; installing ${packagesFor(missing).join(" ")}`);
  try {
    await apt(["update"]);
    await apt(["install", "-y", "--no-install-recommends", ...packagesFor(missing)]);
  } catch (e) {
    console.error(`ensure-tools: installing failed: ${(e as Error).message}\n  install by hand with: ${installCommand(missing, false)}`);
    return 1;
  }
  const still = missingTools(tools);
  if (still.length > 0) {
    console.error(`ensure-tools: still missing after apt-get install: ${still.map((t) => t.name).join(", ")}`);
    return 1;
  }
  console.log("ensure-tools: all present now");
  return 0;
}

if (import.meta.main) process.exitCode = await ensureTools();
