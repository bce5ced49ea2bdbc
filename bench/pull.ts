/**
 * `shoot client` over a real loopback sshd (the test suite's: 127.0.0.1, a free port,
 * throwaway keys), against rsync over the same ssh command line:
 *   pull   a full first pull of a ~650 MB archive, verified, vs rsync + md5sum, once with ssh's
 *          default ciphers and once with aes128-gcm preferred
 */
import fs from "node:fs";
import path from "node:path";
import { code } from "../src/core/common/codes.ts";
import { loadConfig, requireClient } from "../src/core/common/config.ts";
import { remoteFile, rshString, sshArgv } from "../src/core/transfer/rsync.ts";
import { CLIENT_STATUS, readStatusFile } from "../src/core/state/status.ts";
import { spawner } from "../src/io/process.ts";
import { startSshd, type SshServer } from "../test/helpers/sshd.ts";
import { alternating, measureAll } from "./lib.ts";
import { clientRun, freshDir, pushPair, serverRun, settle, writeClientConfig, writeServerConfig, type BenchContext } from "./shoot.ts";

const FIRST = code("FIRST_ARCHIVE");
const SOURCE = "bench";
/** The cipher list the issue names. */
const FAST_CIPHERS = "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com";

interface Variant {
  label: string;
  /** The environment of both shoot client and the peer rsync. */
  env: Record<string, string | undefined>;
}

/**
 * The ciphers are pinned outside both programs: an `ssh` first on PATH that puts `-c LIST`
 * before whatever it is given (-c wins over any `-o Ciphers=`), so the compiled binary, whatever
 * its own ssh command line says, and the peer rsync use the same cipher in each variant.
 */
async function cipherVariants(dataDir: string): Promise<Variant[]> {
  const ssh = Bun.which("ssh");
  if (!ssh) throw new Error("ssh is not installed; install it with: apt-get install openssh-client");
  const g = await spawner.run([ssh, "-G", "127.0.0.1"], { captureStdout: true, timeoutMs: 10_000 });
  const defaults = /^ciphers (\S+)$/m.exec(g.stdout)?.[1];
  if (!defaults) throw new Error("ssh -G printed no cipher list");
  const variant = (label: string, name: string, list: string): Variant => {
    const dir = path.join(dataDir, "ssh", name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "ssh"), `#!/bin/sh\nexec ${ssh} -c ${list} "$@"\n`, { mode: 0o755 });
    return { label, env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? "/usr/bin:/bin"}` } };
  };
  return [variant("default ciphers", "default", defaults), variant(`-c ${FAST_CIPHERS.replace(/@openssh\.com/g, "")}`, "fast", FAST_CIPHERS)];
}

interface Served {
  backup: string;
  clientConfig: string;
  dest: string;
}

/** A client configuration that pulls `backup` through the sshd into `dest`. */
function clientFor(sshd: SshServer, dir: string, backup: string, dest = path.join(dir, "dest")): Served {
  const clientConfig = writeClientConfig(path.join(dir, `${path.basename(dest)}.toml`), {
    dest,
    knownHosts: sshd.knownHosts,
    source: { name: SOURCE, remote: `${sshd.user}@127.0.0.1:${backup}`, port: sshd.port, identity: sshd.userKey.key },
  });
  return { backup, clientConfig, dest };
}

/** rsync of one file of the served backup_dir over the ssh command line shoot builds from the same configuration. */
function peerRsync(s: Served, file: string, into: string, extra: string[] = []): string[] {
  const cfg = requireClient(loadConfig(s.clientConfig));
  const source = cfg.sources[0]!;
  return ["rsync", "--times", ...extra, "-e", rshString(sshArgv(cfg, source)), "--", remoteFile(source.remote, file), `${into}/`];
}

/** A full first pull of a ~650 MB archive: `shoot client` vs rsync + md5sum, per cipher variant. */
async function pullSection(ctx: BenchContext, sshd: SshServer): Promise<void> {
  const dir = path.join(ctx.dataDir, "pull");
  const backup = freshDir(path.join(dir, "backup"));
  // the large files, uncompressed: about 60 % of the tree, ~650 MB for the 1 GiB tree
  const serverConfig = writeServerConfig(path.join(dir, "server.toml"), { name: SOURCE, sources: [path.join(ctx.tree, "big")], backupDir: backup, compression: "none" });
  console.error("pull: making the archive to pull ...");
  const big = path.join(ctx.tree, "big");
  const archive = (await serverRun(ctx.bin, serverConfig, backup, FIRST, { checks: ctx.checks, label: "server none, the archive pulled", source: big })).final.archive!;
  ctx.checks.keep("server none, the archive pulled", path.join(backup, archive.file), { copy: true });
  await ctx.checks.checkNow("server none, the archive pulled", ctx.rows);
  const served = clientFor(sshd, dir, backup);
  const peerDest = path.join(dir, "peer");
  for (const v of await cipherVariants(ctx.dataDir)) {
    console.error(`pull (${v.label}): rsync + md5sum and shoot client, taking turns ...`);
    const hashed = new Set<string>();
    const [peer, shoot] = await alternating(ctx.runs, [
      () => {
        settle(freshDir(peerDest));
        return measureAll([peerRsync(served, archive.file, peerDest), ["md5sum", path.join(peerDest, archive.file)]], { env: v.env });
      },
      async () => {
        settle(freshDir(served.dest));
        const r = await clientRun(ctx.bin, served.clientConfig, served.dest, FIRST, v.env);
        if (fs.statSync(path.join(served.dest, SOURCE, archive.file)).size !== archive.size) throw new Error("shoot client: the pulled copy has the wrong size");
        hashed.add(String(pulledRecord(served.dest).hashed));
        return r;
      },
    ]);
    fs.rmSync(peerDest, { recursive: true, force: true });
    pushPair(ctx.rows, {
      peerName: `rsync over ssh + md5sum, ${v.label} (pull peer)`,
      peer,
      name: `shoot client, first pull, ${v.label}`,
      shoot,
      bytes: archive.size,
      ratio: "time",
      note: `${(archive.size / 1e6).toFixed(0)} MB; verified + fsync; hashed ${[...hashed].join(" / ")}`,
      goal: [1.2, 1.2],
    });
  }
  fs.rmSync(served.dest, { recursive: true, force: true });
}

interface PulledData {
  received?: number;
  sent?: number;
  literal?: number;
  matched?: number;
  /** When the copy's checksums were taken. */
  hashed?: string;
}

/** What the client recorded of its last pull (client.status, PULLED). */
function pulledRecord(dest: string): PulledData {
  const rec = readStatusFile(path.join(dest, CLIENT_STATUS))?.records.findLast((r) => r.name === "PULLED");
  if (!rec?.data) throw new Error(`${dest}/${CLIENT_STATUS}: no PULLED record with transfer counts`);
  return rec.data as PulledData;
}

/** The full pull over a loopback sshd (day 2 on the wire is day2.ts). */
export async function pullSections(ctx: BenchContext): Promise<void> {
  const sshd = await startSshd();
  try {
    await pullSection(ctx, sshd);
  } finally {
    await sshd.stop();
  }
}
