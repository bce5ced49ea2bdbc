import { describe, expect, test } from "bun:test";
import {
  CommandRefused, classifyFailure, compressDelta, deltaBlockSize, parseSenderCommand, parseStats, remoteFile, rshQuote, rshString, rsyncEnv, rsyncPullArgv, seconds, TRANSFER_MALLOC_TUNABLES,
  SHARED_PERSIST_S, splitRsyncCommand, sshArgv, sshSharedExitArgv, sshSharedStartArgv, type PullSpec,
} from "../../src/core/transfer/rsync.ts";
import type { SourceConfig } from "../../src/core/common/config.ts";

const T = 5_000;
const client = { timeout: 600_000, connect_timeout: 30_000, accept_new_host_key: false, known_hosts: undefined as string | undefined };
const src = (over: Partial<SourceConfig> = {}): SourceConfig => ({ name: "web1", remote: "backup@web1.example.com:/var/backups/shoot", port: 22, ...over });

describe("rshQuote / rshString", () => {
  const cases: Array<[string, string]> = [
    ["ssh", "ssh"],
    ["BatchMode=yes", "BatchMode=yes"],
    ["/etc/shoot/id_ed25519", "/etc/shoot/id_ed25519"],
    ["/a b/key", "'/a b/key'"],
    ["it's", "'it''s'"],
    ['UserKnownHostsFile="/x y/kh"', `'UserKnownHostsFile="/x y/kh"'`],
    ["", "''"],
    ["$HOME", "'$HOME'"],
  ];
  for (const [word, quoted] of cases) {
    test(`${JSON.stringify(word)} → ${quoted}`, () => expect(rshQuote(word)).toBe(quoted), T);
  }
  test("joins words with single spaces", () => expect(rshString(["ssh", "-p", "22", "/a b"])).toBe("ssh -p 22 '/a b'"), T);
});

describe("sshArgv", () => {
  const cases: Array<[string, Parameters<typeof sshArgv>[0], Parameters<typeof sshArgv>[1], string[], string[]]> = [
    // name, client, source, must contain (in order, as adjacent pairs), must not contain
    ["defaults: strict host keys, batch mode, time-outs", client, { port: 22 },
      ["-o BatchMode=yes", "-o ConnectTimeout=30", "-o ServerAliveInterval=15", "-o ServerAliveCountMax=4", "-o StrictHostKeyChecking=yes", "-p 22"],
      ["-i", "IdentitiesOnly=yes", "StrictHostKeyChecking=accept-new"]],
    ["opt-in to accept a new host key", { ...client, accept_new_host_key: true }, { port: 2222 },
      ["-o StrictHostKeyChecking=accept-new", "-p 2222"], ["StrictHostKeyChecking=yes"]],
    ["identity and known_hosts", { ...client, known_hosts: "/etc/shoot/known hosts" }, { port: 22, identity: "/etc/shoot/id_ed25519" },
      ['-o UserKnownHostsFile="/etc/shoot/known hosts"', "-i /etc/shoot/id_ed25519", "-o IdentitiesOnly=yes"], []],
    ["a time-out below a second still waits a second", { ...client, connect_timeout: 200 }, { port: 22 }, ["-o ConnectTimeout=1"], []],
  ];
  for (const [name, c, s, must, mustNot] of cases) {
    test(name, () => {
      const argv = sshArgv(c, s);
      expect(argv[0]).toBe("ssh");
      const pairs = argv.slice(1).map((a, i, all) => `${a} ${all[i + 1]}`);
      for (const m of must) expect(pairs).toContain(m);
      for (const m of mustNot) expect(argv.join(" ")).not.toContain(m);
    }, T);
  }
  const refused: Array<[string, string]> = [["identity", "/k%h"], ["identity", "/it's"], ["known_hosts", '/a"b'], ["known_hosts", "/a\nb"]];
  for (const [key, p] of refused) {
    test(`${key} ${JSON.stringify(p)} is refused with a message naming the key`, () => {
      const c = key === "known_hosts" ? { ...client, known_hosts: p } : client;
      const s = key === "identity" ? { port: 22, identity: p } : { port: 22 };
      expect(() => sshArgv(c, s)).toThrow(key);
    }, T);
  }
});

describe("the shared ssh connection", () => {
  test("start: ssh's messages go to a log file when one is given (standard error would be held open by the background process)", () => {
    const argv = sshSharedStartArgv(client, src(), sock, "/tmp/shoot-ssh-42-AbC123/log");
    expect(argv.slice(-6)).toEqual(["-E", "/tmp/shoot-ssh-42-AbC123/log", "-N", "-f", "--", "backup@web1.example.com"]);
    expect(() => sshSharedStartArgv(client, src(), sock, "/tmp/it's/log")).toThrow("log");
  }, T);
  const sock = "/tmp/shoot-ssh-AbC123/s";
  test("a transfer goes through the socket when there is one, and connects on its own when not (ControlMaster=no)", () => {
    const argv = sshArgv(client, { port: 22 }, sock);
    expect(argv.slice(-4)).toEqual(["-o", "ControlMaster=no", "-o", `ControlPath=${sock}`]);
    expect(sshArgv(client, { port: 22 }).join(" ")).not.toContain("Control");
  }, T);
  test("rsync's -e carries it", () => {
    const argv = rsyncPullArgv({ client, source: src(), files: ["a.tar.gz"], into: "/d", maxSize: 10, controlPath: sock });
    expect(argv[argv.indexOf("-e") + 1]).toContain(`-o ControlMaster=no -o ControlPath=${sock}`);
  }, T);
  const starts: Array<[string, SourceConfig, string]> = [
    ["user and host", src(), "backup@web1.example.com"],
    ["no user", src({ remote: "web1:/b" }), "web1"],
    ["IPv6 without brackets", src({ remote: "root@[fd00::1]:/b" }), "root@fd00::1"],
  ];
  for (const [name, s, dest] of starts) {
    test(`start: same login options, master in the background running no command, closing itself ${SHARED_PERSIST_S} s after its last transfer (${name})`, () => {
      const argv = sshSharedStartArgv(client, s, sock);
      expect(argv.slice(0, sshArgv(client, s).length)).toEqual(sshArgv(client, s));
      expect(argv.slice(sshArgv(client, s).length)).toEqual([
        "-o", "ControlMaster=yes", "-o", `ControlPath=${sock}`, "-o", `ControlPersist=${SHARED_PERSIST_S}`, "-N", "-f", "--", dest,
      ]);
      expect(sshSharedExitArgv(client, s, sock).slice(-6)).toEqual(["-o", `ControlPath=${sock}`, "-O", "exit", "--", dest]);
    }, T);
  }
  for (const bad of ["relative/s", "/tmp/a b/s", "/tmp/%h/s", "/tmp/a'b/s", "/tmp/a\\b/s", "/tmp/a\nb/s"]) {
    test(`refuses the socket path ${JSON.stringify(bad)}`, () => {
      expect(() => sshArgv(client, { port: 22 }, bad)).toThrow("ControlPath");
      expect(() => sshSharedStartArgv(client, src(), bad)).toThrow("ControlPath");
    }, T);
  }
  test("a local remote has no ssh connection to share", () => {
    expect(() => sshSharedStartArgv(client, src({ remote: "/var/backups" }), sock)).toThrow("not an ssh remote");
  }, T);
});

describe("remoteFile", () => {
  const cases: Array<[string, string, string]> = [
    ["backup@web1:/var/backups/shoot", "server.status", "backup@web1:/var/backups/shoot/server.status"],
    ["web1:/var/backups/shoot/", "a-20260101-000000.tar.gz", "web1:/var/backups/shoot/a-20260101-000000.tar.gz"],
    ["backup@[2001:db8::1]:/b", "server.status", "backup@[2001:db8::1]:/b/server.status"],
    ["/var/backups/shoot", "server.status", "/var/backups/shoot/server.status"],
  ];
  for (const [remote, name, want] of cases) test(`${remote} + ${name}`, () => expect(remoteFile(remote, name)).toBe(want), T);
  for (const bad of ["../x", "-e sh", "a/b", "", "..", "."]) {
    test(`refuses the name ${JSON.stringify(bad)}`, () => expect(() => remoteFile("h:/b", bad)).toThrow("plain file name"), T);
  }
});

describe("rsyncPullArgv", () => {
  const base: PullSpec = { client, source: src(), files: ["server.status"], into: "/srv/shoot/web1/.shoot-tmp-pull", maxSize: 1000 };
  test("status pull: times, stats, time-out, size cap, ssh, then -- and the paths last", () => {
    const argv = rsyncPullArgv(base);
    expect(argv.slice(0, 6)).toEqual(["rsync", "--times", "--no-human-readable", "--stats", "--timeout=600", "--max-size=1000"]);
    expect(argv).not.toContain("--partial-dir=.shoot-partial");
    const e = argv.indexOf("-e");
    expect(argv[e + 1]).toStartWith("ssh -o BatchMode=yes");
    expect(argv.slice(-3)).toEqual(["--", "backup@web1.example.com:/var/backups/shoot/server.status", "/srv/shoot/web1/.shoot-tmp-pull/"]);
  }, T);
  test("archive pull: resumable with a basis, bandwidth limit in KiB/s", () => {
    const argv = rsyncPullArgv({ ...base, source: src({ bwlimit: 10 * 1024 * 1024 }), files: ["a-20260101-000000.tar.gz", "a-20260101-000000.tar.gz.md5"], resumable: { basisDir: ".." } });
    for (const o of ["--partial-dir=.shoot-partial", "--copy-dest=..", "--bwlimit=10240"]) expect(argv).toContain(o);
    expect(argv.filter((a) => a === "--fuzzy")).toHaveLength(2);
    expect(argv.slice(-3, -1)).toEqual(["backup@web1.example.com:/var/backups/shoot/a-20260101-000000.tar.gz", "backup@web1.example.com:/var/backups/shoot/a-20260101-000000.tar.gz.md5"]);
  }, T);
  test("file list pull: a basis and compression; never compression unless asked (archives are compressed already)", () => {
    const argv = rsyncPullArgv({ ...base, files: ["a-20260101-000000.tar.gz.list"], resumable: { basisDir: ".." }, compress: true });
    for (const o of ["--copy-dest=..", "--compress"]) expect(argv).toContain(o);
    expect(argv.indexOf("--compress")).toBeLessThan(argv.indexOf("--"));
    expect(rsyncPullArgv({ ...base, resumable: { basisDir: ".." } })).not.toContain("--compress");
  }, T);
  test("archive pull with a delta block size: --block-size, which the forced command accepts as the sender's -B", () => {
    const argv = rsyncPullArgv({ ...base, files: ["a-20260101-000000.tar.gz"], resumable: { basisDir: ".." }, blockSize: 4096 });
    expect(argv).toContain("--block-size=4096");
    expect(argv.indexOf("--block-size=4096")).toBeLessThan(argv.indexOf("--"));
    expect(rsyncPullArgv({ ...base, resumable: { basisDir: ".." } }).some((a) => a.startsWith("--block-size"))).toBe(false);
  }, T);
  test("a bandwidth limit under 1 KiB/s becomes the smallest rsync allows", () => {
    expect(rsyncPullArgv({ ...base, source: src({ bwlimit: 100 }) })).toContain("--bwlimit=1");
  }, T);
  test("a local remote needs no ssh", () => {
    const argv = rsyncPullArgv({ ...base, source: src({ remote: "/var/backups/shoot" }) });
    expect(argv).not.toContain("-e");
    expect(argv.slice(-2)).toEqual(["/var/backups/shoot/server.status", "/srv/shoot/web1/.shoot-tmp-pull/"]);
  }, T);
  test("every path follows --", () => {
    const argv = rsyncPullArgv({ ...base, files: ["a-20260101-000000.tar.gz"] });
    const dd = argv.indexOf("--");
    expect(argv.slice(dd + 1).every((a) => !a.startsWith("-"))).toBe(true);
  }, T);
  test("seconds rounds up and never gives 0", () => {
    expect([seconds(0), seconds(1), seconds(1000), seconds(1001)]).toEqual([1, 1, 1, 2]);
  }, T);
});

test("rsyncEnv drops variables that change how rsync talks to the server and speaks C", () => {
  const env = rsyncEnv({ PATH: "/usr/bin", RSYNC_PROTECT_ARGS: "1", RSYNC_OLD_ARGS: "1", RSYNC_RSH: "evil", HOME: "/root" });
  expect(env).toEqual({ PATH: "/usr/bin", HOME: "/root", LC_ALL: "C", GLIBC_TUNABLES: TRANSFER_MALLOC_TUNABLES });
}, T);

test("rsyncEnv keeps glibc tunables the administrator set", () => {
  expect(rsyncEnv({ GLIBC_TUNABLES: "glibc.malloc.arena_max=2" }).GLIBC_TUNABLES).toBe("glibc.malloc.arena_max=2");
  expect(rsyncEnv({ GLIBC_TUNABLES: "" }).GLIBC_TUNABLES).toBe("");
}, T);

describe("parseStats", () => {
  const plain = "Number of files: 1\nLiteral data: 4194752 bytes\nMatched data: 2096704 bytes\nTotal bytes sent: 8756\nTotal bytes received: 4201674\n";
  const grouped = "Literal data: 3,145,790 bytes\nMatched data: 0 bytes\nTotal bytes sent: 80\nTotal bytes received: 3,146,717\n";
  test("plain numbers", () => expect(parseStats(plain)).toEqual({ literal: 4194752, matched: 2096704, received: 4201674, sent: 8756 }), T);
  test("thousands separators", () => expect(parseStats(grouped)).toEqual({ literal: 3145790, matched: 0, received: 3146717, sent: 80 }), T);
  test("no stats", () => expect(parseStats("")).toEqual({ literal: undefined, matched: undefined, received: undefined, sent: undefined }), T);
});

describe("classifyFailure", () => {
  const r = (exitCode: number | null, stderr: string[], extra: { signal?: string; timedOut?: boolean } = {}) => ({ exitCode, stderrTail: stderr, signal: extra.signal ?? null, timedOut: extra.timedOut ?? false });
  const closed = ["rsync: connection unexpectedly closed (0 bytes received so far) [Receiver]", "rsync error: unexplained error (code 255) at io.c(232) [Receiver=3.2.7]"];
  // name, result, code, words in the reason, transient (tried again in the same run) or not
  const cases: Array<[string, ReturnType<typeof r>, string, string, boolean]> = [
    ["connection refused", r(255, ["ssh: connect to host 127.0.0.1 port 1: Connection refused", ...closed]), "UNREACHABLE", "Connection refused", false],
    ["connect time-out", r(255, ["ssh: connect to host 10.0.0.1 port 22: Connection timed out", ...closed]), "UNREACHABLE", "timed out", true],
    ["banner time-out (a server that accepts and never answers)", r(255, ["Connection timed out during banner exchange", "Connection to 10.0.0.1 port 22 timed out", ...closed]), "UNREACHABLE", "port 22 timed out", true],
    ["unknown host name", r(255, ["ssh: Could not resolve hostname nowhere: Name or service not known", ...closed]), "UNREACHABLE", "resolve", false],
    ["a name server that did not answer", r(255, ["ssh: Could not resolve hostname web1: Temporary failure in name resolution", ...closed]), "UNREACHABLE", "Temporary failure", true],
    ["no route", r(255, ["ssh: connect to host 10.9.9.9 port 22: No route to host", ...closed]), "UNREACHABLE", "No route", false],
    ["sshd's MaxStartups: closed during the key exchange", r(255, ["kex_exchange_identification: Connection closed by remote host", "Connection closed by 127.0.0.1 port 2222", ...closed]), "THROTTLED", "MaxStartups", true],
    ["reset during the key exchange", r(255, ["kex_exchange_identification: read: Connection reset by peer", "Connection reset by 127.0.0.1 port 2222", ...closed]), "THROTTLED", "key exchange", true],
    ["OpenSSH before 8.3 says ssh_exchange_identification", r(255, ["ssh_exchange_identification: Connection closed by remote host", ...closed]), "THROTTLED", "ssh_exchange_identification", true],
    ["reset in the middle of a transfer", r(255, ["client_loop: send disconnect: Connection reset by peer", ...closed]), "PULL_FAILED", "reset", true],
    ["unknown host key", r(255, ["Host key verification failed.", ...closed]), "HOST_KEY_FAILED", "Host key verification failed", false],
    ["changed host key", r(255, ["@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @", "Host key verification failed."]), "HOST_KEY_FAILED", "host key", false],
    ["changed host key, and then the connection reset", r(255, ["@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @", "Host key verification failed.", "Connection reset by peer"]), "HOST_KEY_FAILED", "host key", false],
    ["ssh not installed", r(14, ["rsync: [Receiver] Failed to exec ssh: No such file or directory (2)"]), "TOOL_MISSING", "openssh-client", false],
    ["key not authorized", r(255, ["backup@web1: Permission denied (publickey).", ...closed]), "PULL_FAILED", "authorized_keys", false],
    ["key refused, then the connection reset", r(255, ["backup@web1: Permission denied (publickey).", "Connection reset by peer", ...closed]), "PULL_FAILED", "authorized_keys", false],
    ["file missing on the server", r(23, ['rsync: [sender] link_stat "/b/web1-20261126-021502.tar.gz" failed: No such file or directory (2)', "rsync error: some files/attrs were not transferred (see previous errors) (code 23)"]), "PULL_FAILED", "not found on the server", false],
    ["stalled transfer", r(30, ["[receiver] io timeout after 30 seconds -- exiting"]), "PULL_FAILED", "stalled", false],
    ["killed", r(null, [], { signal: "SIGTERM" }), "PULL_FAILED", "SIGTERM", false],
    ["our own time limit", r(null, [], { signal: "SIGTERM", timedOut: true }), "UNREACHABLE", "time limit", false],
    ["a refusal by the forced command", r(12, ["shoot serve: refused: writing is not allowed", ...closed]), "PULL_FAILED", "refused", false],
    ["the connection closed after login (sshd killed)", r(255, ["Connection to 127.0.0.1 closed by remote host.", ...closed]), "PULL_FAILED", "closed by remote host", false],
  ];
  for (const [name, res, want, mention, transient] of cases) {
    test(`${name}: ${want}${transient ? ", tried again" : ""}`, () => {
      const c = classifyFailure(res, "PULL_FAILED");
      expect(c.code).toBe(want as never);
      expect(c.why).toContain(mention);
      expect({ name, transient: c.transient !== undefined }).toEqual({ name, transient });
    }, T);
  }

  // what ssh prints for each (OpenSSH 9.2, LogLevel=ERROR), and the source it was pulling
  const target = {
    client: { timeout: 600_000, connect_timeout: 30_000, accept_new_host_key: false, known_hosts: "/etc/shoot/known_hosts" },
    source: { name: "web1", remote: "root@web1.example.com:/var/backups/shoot", port: 2222 },
  };
  const unknownKey = ["No ED25519 host key is known for [web1.example.com]:2222 and you have requested strict checking.", "Host key verification failed.", ...closed];
  const changedKey = [
    "Add correct host key in /etc/shoot/known_hosts to get rid of this message.",
    "Offending ED25519 key in /etc/shoot/known_hosts:3",
    "  remove with:",
    '  ssh-keygen -f "/etc/shoot/known_hosts" -R "[web1.example.com]:2222"',
    "Host key for [web1.example.com]:2222 has changed and you have requested strict checking.",
    "Host key verification failed.",
    ...closed,
  ];
  test("an unknown host key: named as unknown, with the known_hosts file and the ssh-keyscan to run", () => {
    const c = classifyFailure(r(255, unknownKey), "STATUS_PULL_FAILED", target as never);
    expect(c.code).toBe("HOST_KEY_FAILED");
    expect(c.why).toStartWith("the server's host key is unknown: no ED25519 key for [web1.example.com]:2222 is in /etc/shoot/known_hosts.");
    expect(c.why).toContain("`ssh-keyscan -p 2222 -t ed25519 web1.example.com > server.key`");
    expect(c.why).toContain("append server.key to /etc/shoot/known_hosts");
    const dflt = classifyFailure(r(255, unknownKey), "STATUS_PULL_FAILED", { ...target, client: { ...target.client, known_hosts: undefined } } as never);
    expect(dflt.why).toContain("is in ~/.ssh/known_hosts (ssh's default; [client] known_hosts names another)");
  }, T);
  test("a changed host key: named as changed, with the file and line, how to forget it and how to fetch the new one", () => {
    const c = classifyFailure(r(255, changedKey), "STATUS_PULL_FAILED", target as never);
    expect(c.code).toBe("HOST_KEY_FAILED");
    expect(c.why).toStartWith("the server's host key has CHANGED: it is not the key recorded for [web1.example.com]:2222 in /etc/shoot/known_hosts, line 3.");
    expect(c.why).toContain("`ssh-keygen -f /etc/shoot/known_hosts -R '[web1.example.com]:2222'`");
    expect(c.why).toContain("`ssh-keyscan -p 2222 -t ed25519 web1.example.com`");
    expect(c.why).not.toContain("unknown");
  }, T);
  test("no server.status on the server yet: asks whether the wrapper has run there, not 'Broken pipe'", () => {
    const overSsh = ['rsync: [sender] link_stat "/var/backups/shoot/server.status" failed: No such file or directory (2)', "rsync: [Receiver] write error: Broken pipe (32)", ...closed];
    const c = classifyFailure(r(23, overSsh), "STATUS_PULL_FAILED", target as never);
    expect(c).toEqual({
      code: "STATUS_PULL_FAILED",
      why: "the server has no status file yet (/var/backups/shoot/server.status does not exist there): has `shoot wrapper` run there, and is remote its backup_dir?",
    });
    const other = classifyFailure(r(23, ['rsync: [sender] link_stat "/b/web1-20261126-021502.tar.gz" failed: No such file or directory (2)', "rsync: [Receiver] write error: Broken pipe (32)"]), "PULL_FAILED");
    expect(other.why).toBe('not found on the server: rsync: [sender] link_stat "/b/web1-20261126-021502.tar.gz" failed: No such file or directory (2)');
  }, T);
});

describe("splitRsyncCommand", () => {
  const cases: Array<[string, string[]]> = [
    ["rsync --server --sender -te.LsfxCIvu . /b/x", ["rsync", "--server", "--sender", "-te.LsfxCIvu", ".", "/b/x"]],
    ["rsync  --server   .  /a\\ b/c", ["rsync", "--server", ".", "/a b/c"]],
    ["rsync . /a\\'b\\;c", ["rsync", ".", "/a'b;c"]],
  ];
  for (const [cmd, want] of cases) test(cmd, () => expect(splitRsyncCommand(cmd)).toEqual(want), T);
  for (const bad of ["rsync . /x; rm -rf /", "rsync . $(id)", "rsync . /x|sh", "rsync . /x*", "rsync . /x\\"]) {
    test(`refuses ${JSON.stringify(bad)}`, () => expect(() => splitRsyncCommand(bad)).toThrow(CommandRefused), T);
  }
});

describe("deltaBlockSize", () => {
  const MB = 1e6;
  const cases: Array<[string, number, number | undefined, number | undefined]> = [
    ["no count: rsync's own choice", 600 * MB, undefined, undefined],
    ["nothing counted: rsync's own choice", 600 * MB, 0, undefined],
    ["a count that is not a number: rsync's own choice", 600 * MB, NaN, undefined],
    ["260 places in 600 MB: about 4 KiB", 600 * MB, 260, 4096],
    ["3 places in 600 MB: rsync's own choice (one changed entry may be a file changed in many places)", 600 * MB, 3, undefined],
    ["20 places in 50 GB: no more than rsync takes (128 KiB)", 50_000 * MB, 20, 131_072],
    ["100,000 places in 1 MB: rsync's own choice (its blocks are smaller than any saving)", MB, 100_000, undefined],
    ["100,000 places in 600 MB: no less than 2 KiB", 600 * MB, 100_000, 2048],
  ];
  for (const [name, size, changes, want] of cases) test(name, () => expect(deltaBlockSize(size, changes)).toBe(want), T);
  // counted from the archive's pieces: the count is of places in the archive, so it may choose blocks larger than rsync's
  const exact: Array<[string, number, number | undefined, number | undefined]> = [
    ["exact, 260 places in 600 MB: about 4 KiB, as counted from the scan", 600 * MB, 260, 4096],
    ["exact, 3 places in 600 MB: larger blocks than rsync's, fewer checksums", 600 * MB, 3, 39_936],
    ["exact, 1 place in 600 MB: no more than 128 KiB", 600 * MB, 1, 69_120],
    ["exact, 1 place in 50 GB: no more than 128 KiB", 50_000 * MB, 1, 131_072],
    ["exact, no place: rsync's own choice", 600 * MB, 0, undefined],
    ["exact, 1 place in 1 MB: rsync's own choice (its blocks are smaller than any saving)", MB, 1, undefined],
  ];
  for (const [name, size, changes, want] of exact) test(name, () => expect(deltaBlockSize(size, changes, true)).toBe(want), T);
  test("always a multiple of 512 within rsync's bounds", () => {
    for (let size = 1e5; size < 1e11; size *= 7) {
      for (let n = 1; n < 1e6; n *= 13) {
        const b = deltaBlockSize(size, n);
        if (b === undefined) {
          expect(n <= 8 || Math.sqrt(size) <= 2048).toBe(true);
          continue;
        }
        expect(b).toBeLessThanOrEqual(Math.sqrt(size) + 512);
        expect(b % 512).toBe(0);
        expect(b).toBeGreaterThanOrEqual(2048);
        expect(b).toBeLessThanOrEqual(131_072);
      }
    }
  }, T);
});

describe("compressDelta", () => {
  const gz = "web-20261203-010000.tar.gz";
  const cases: Array<[string, string, string[], boolean]> = [
    ["gzip with an earlier gzip copy: compressed tokens", "web-20261204-010000.tar.gz", [gz], true],
    ["zstd with an earlier zstd copy", "web-20261204-010000.tar.zst", ["web-20261203-010000.tar.zst", gz], true],
    ["an incremental gzip archive against a full one", "web-20261204-010000-L1.tar.gz", [gz], true],
    ["a first pull: nothing to match", "web-20261204-010000.tar.gz", [], false],
    ["only a copy of another compression: no basis worth it", "web-20261204-010000.tar.zst", [gz], false],
    ["the archive itself held (a pull again): not a basis", gz, [gz], false],
    ["plain tar: its bytes would be compressed for real", "web-20261204-010000.tar", ["web-20261203-010000.tar"], false],
    ["a name that only contains .tar.gz", "web.tar.gz.list", [gz], false],
  ];
  for (const [name, file, held, want] of cases) test(name, () => expect(compressDelta(file, held)).toBe(want), T);
});

describe("parseSenderCommand", () => {
  const ok: Array<[string, string[], string[]]> = [
    ["rsync --server --sender -tze.LsfxCIvu -B4096 --timeout=600 . /b/a.tar.gz", ["-tze.LsfxCIvu", "-B4096", "--timeout=600"], ["/b/a.tar.gz"]],
    ["rsync --server --sender -te.LsfxCIvu --timeout=30 . /var/backups/shoot/server.status", ["-te.LsfxCIvu", "--timeout=30"], ["/var/backups/shoot/server.status"]],
    ["rsync --server --sender -te.LsfxCIvu --timeout=600 --bwlimit=10240 . /b/a.tar.gz /b/a.tar.gz.md5", ["-te.LsfxCIvu", "--timeout=600", "--bwlimit=10240"], ["/b/a.tar.gz", "/b/a.tar.gz.md5"]],
    ["rsync --server --sender -vlogDtpre.iLsfxCIvu . /b/", ["-vlogDtpre.iLsfxCIvu"], ["/b/"]],
    ["rsync --server --sender -logDtprze.iLsfxCIvu --compress-level=3 . /b", ["-logDtprze.iLsfxCIvu", "--compress-level=3"], ["/b"]],
  ];
  for (const [cmd, options, paths] of ok) test(`accepts: ${cmd}`, () => expect(parseSenderCommand(cmd)).toEqual({ options, paths }), T);
  const refused: Array<[string, string, string]> = [
    ["empty (an interactive login)", "", "no command"],
    ["a shell command", "cat /etc/shadow", "not rsync"],
    ["a write (no --sender)", "rsync --server -te.LsfxCIvu . /b/", "writing is not allowed"],
    ["remove the sent files", "rsync --server --sender -te.LsfxCIvu --remove-source-files . /b/x", "--remove-source-files"],
    ["follow symlinks (-L)", "rsync --server --sender -Lte.LsfxCIvu . /b/x", "-L"],
    ["secluded arguments hide the paths", "rsync --server --sender -se.LsfxCIvu .", "-s"],
    ["a log file written on the server", "rsync --server --sender -te.LsfxCIvu --log-file=/b/x . /b/x", "--log-file"],
    ["files-from reads a list from anywhere", "rsync --server --sender -te.LsfxCIvu --files-from=/etc/x . /b", "--files-from"],
    ["relative path", "rsync --server --sender -te.LsfxCIvu . b/x", "absolute"],
    ["dot-dot", "rsync --server --sender -te.LsfxCIvu . /b/../etc/passwd", ".."],
    ["no path", "rsync --server --sender -te.LsfxCIvu .", "no file"],
    ["no dot", "rsync --server --sender -te.LsfxCIvu /b/x", "no file"],
    ["daemon mode", "rsync --server --daemon .", "--sender"],
    ["a block size with more than digits", "rsync --server --sender -B4096x . /b/x", "-B"],
  ];
  for (const [name, cmd, mention] of refused) {
    test(`refuses ${name}`, () => {
      expect(() => parseSenderCommand(cmd)).toThrow(CommandRefused);
      expect(() => parseSenderCommand(cmd)).toThrow(mention);
    }, T);
  }
});
