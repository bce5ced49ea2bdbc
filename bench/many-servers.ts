/**
 * One backup host pulling many servers over loopback ssh: `shoot client` (status, archive,
 * file list, checksum and tar-stream proof of every copy) against a shell loop of
 * `rsync -e ssh` + `md5sum -c` run by `xargs -P` with the same concurrency, taking turns in one
 * run, at each concurrency. Goal: shoot's time ≤ 1.1× the loop's, peak memory ≤ 150 MiB.
 *
 *   bun bench/many-servers.ts [--servers 100] [--size 20MB] [--concurrency 1,2,4,8] [--runs 1]
 *                      [--bin dist/shoot-linux-x64] [--data bench/data]
 *
 * The archive is a real one: `shoot server` (compression none) of a generated tree of --size,
 * hard-linked into every server's backup directory with its checksum file, file list and
 * server.status. After each concurrency, every copy shoot pulled is hashed, and one of them is
 * extracted with GNU tar and compared with the tree (bench/restores.ts).
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { code } from "../src/core/common/codes.ts";
import { parseSize } from "../src/core/common/units.ts";
import { CHECKSUM_SUFFIX, LIST_SUFFIX } from "../src/core/state/naming.ts";
import { SERVER_STATUS } from "../src/core/state/status.ts";
import { rshString, sshArgv } from "../src/core/transfer/rsync.ts";
import { startSshd, type SshServer } from "../test/helpers/sshd.ts";
import { makeRng, randomBytes, textLike } from "./gen.ts";
import { alternating, formatTable, measure, MiB, type Row } from "./lib.ts";
import { RestoreChecks } from "./restores.ts";
import { DEFAULT_BIN, clientRun, ensureBinary, freshDir, pushPair, serverRun, settle, writeServerConfig } from "./shoot.ts";

const { values } = parseArgs({
  options: {
    servers: { type: "string", default: "100" },
    size: { type: "string", default: "20MB" },
    concurrency: { type: "string", default: "1,2,4,8" },
    runs: { type: "string", default: "1" },
    bin: { type: "string", default: DEFAULT_BIN },
    data: { type: "string", default: path.join(import.meta.dir, "data") },
  },
});
const servers = Number(values.servers);
if (!Number.isInteger(servers) || servers < 1 || servers > 1000) throw new Error(`--servers: expected 1 to 1000, got ${values.servers}`);
const size = parseSize(values.size!) ?? 0;
if (size < 64 * 1024) throw new Error(`--size: expected 64KiB or more, got ${values.size}`);
const levels = values.concurrency!.split(",").map(Number);
if (levels.some((c) => !Number.isInteger(c) || c < 1 || c > 64)) throw new Error(`--concurrency: expected numbers from 1 to 64, got ${values.concurrency}`);
const runs = Math.max(1, Number(values.runs));
const bin = path.resolve(values.bin!);
const dir = path.join(path.resolve(values.data!), "scale");
const FIRST = code("FIRST_ARCHIVE");

/** A tree of about `bytes`: half text-like, half incompressible, in files of 256 KiB to 1 MiB. */
function makeTree(root: string, bytes: number): void {
  freshDir(root);
  const rng = makeRng(2027);
  for (let i = 0, left = bytes; left > 0; i++) {
    const n = Math.min(left, 256 * 1024 + (rng() % (768 * 1024)));
    fs.writeFileSync(path.join(root, `f${String(i).padStart(4, "0")}.${i % 2 ? "bin" : "txt"}`), i % 2 ? randomBytes(rng, n) : textLike(rng, n));
    left -= n;
  }
}

interface Fleet {
  /** Every server's backup directory. */
  dirs: string[];
  archive: string;
  md5: string;
  tree: string;
}

/** One real archive made by `shoot server`, then every server's backup directory holding it (hard links). */
async function makeFleet(): Promise<Fleet> {
  const tree = path.join(dir, "tree");
  makeTree(tree, size);
  const origin = freshDir(path.join(dir, "origin"));
  const config = writeServerConfig(path.join(dir, "server.toml"), { name: "srv", sources: [tree], backupDir: origin, compression: "none" });
  console.error(`scale: shoot server of a ${(size / MiB).toFixed(1)} MiB tree ...`);
  const a = (await serverRun(bin, config, origin, FIRST)).final.archive!;
  const root = freshDir(path.join(dir, "servers"));
  const dirs: string[] = [];
  for (let i = 0; i < servers; i++) {
    const d = path.join(root, `srv${String(i).padStart(3, "0")}`);
    fs.mkdirSync(d);
    for (const f of [a.file, `${a.file}${CHECKSUM_SUFFIX}`, `${a.file}${LIST_SUFFIX}`]) fs.linkSync(path.join(origin, f), path.join(d, f));
    fs.copyFileSync(path.join(origin, SERVER_STATUS), path.join(d, SERVER_STATUS));
    dirs.push(d);
  }
  return { dirs, archive: a.file, md5: a.md5, tree };
}

function writeClientConfig(file: string, sshd: SshServer, fleet: Fleet, dest: string, concurrency: number): void {
  const lines = [
    "[client]", `dest_dir = ${JSON.stringify(dest)}`, 'reserve = "0"', `concurrency = ${concurrency}`, `known_hosts = ${JSON.stringify(sshd.knownHosts)}`, "",
    "[client.defaults]", `port = ${sshd.port}`, `identity = ${JSON.stringify(sshd.userKey.key)}`, "",
  ];
  for (const d of fleet.dirs) lines.push("[[client.source]]", `name = ${JSON.stringify(path.basename(d))}`, `remote = ${JSON.stringify(`${sshd.user}@127.0.0.1:${d}`)}`, "");
  fs.writeFileSync(file, lines.join("\n"));
}

/** The loop each server gets: rsync of the archive and its checksum file over the same ssh command line, then md5sum -c. */
const LOOP = 'n=$(basename "$1"); mkdir -p "$DEST/$n" && rsync --times -e "$RSH" -- "$LOGIN:$1/$ARCHIVE" "$LOGIN:$1/$ARCHIVE.md5" "$DEST/$n/" && cd "$DEST/$n" && md5sum --quiet -c "$ARCHIVE.md5"';

/** Every copy in `dest` has the archive's MD5 (hashed here, not taken from shoot's word). */
function checkCopies(dest: string, fleet: Fleet): number {
  let n = 0;
  for (const d of fleet.dirs) {
    const copy = path.join(dest, path.basename(d), fleet.archive);
    const h = new Bun.CryptoHasher("md5");
    h.update(fs.readFileSync(copy));
    if (h.digest("hex") !== fleet.md5) throw new Error(`${copy}: MD5 differs from the server's archive`);
    n++;
  }
  return n;
}

async function main(): Promise<void> {
  await ensureBinary(bin);
  fs.mkdirSync(dir, { recursive: true });
  const fleet = await makeFleet();
  const sshd = await startSshd();
  const rows: Row[] = [];
  const checks = new RestoreChecks(path.join(dir, "restore-checks"));
  try {
    const rsh = rshString(sshArgv({ connect_timeout: 30_000, accept_new_host_key: false, known_hosts: sshd.knownHosts }, { port: sshd.port, identity: sshd.userKey.key }));
    const list = path.join(dir, "servers.txt");
    fs.writeFileSync(list, `${fleet.dirs.join("\n")}\n`);
    const peerDest = path.join(dir, "peer");
    const shootDest = path.join(dir, "dest");
    for (const c of levels) {
      const config = path.join(dir, `client-${c}.toml`);
      writeClientConfig(config, sshd, fleet, shootDest, c);
      console.error(`scale: ${servers} servers at concurrency ${c}: the rsync + md5sum loop and shoot client, taking turns ...`);
      const [peer, shoot] = await alternating(runs, [
        () => {
          settle(freshDir(peerDest));
          return measure(["xargs", "-a", list, "-P", String(c), "-n", "1", "sh", "-c", LOOP, "sh"], {
            env: { ...process.env, DEST: peerDest, RSH: rsh, LOGIN: `${sshd.user}@127.0.0.1`, ARCHIVE: fleet.archive },
          });
        },
        () => {
          settle(freshDir(shootDest));
          return clientRun(bin, config, shootDest, FIRST);
        },
      ]);
      const label = `scale pull, concurrency ${c}`;
      const held = checkCopies(shootDest, fleet);
      checks.wrote(label, fleet.tree, fleet.md5, { fromList: true });
      checks.keep(label, path.join(shootDest, path.basename(fleet.dirs[0]!), fleet.archive), { copy: true });
      pushPair(rows, {
        peerName: `xargs -P ${c}: rsync -e ssh + md5sum -c`,
        peer,
        name: `shoot client, ${servers} sources, concurrency ${c}`,
        shoot,
        bytes: servers * size,
        ratio: "time",
        note: `${held} copies, each hashed here; deep proof of each`,
        goal: [1.1, 1.1],
        rssMax: 150 * MiB,
      });
      await checks.checkNow(label, rows);
    }
    fs.rmSync(peerDest, { recursive: true, force: true });
    fs.rmSync(shootDest, { recursive: true, force: true });
  } finally {
    await sshd.stop();
  }
  const restored = await checks.checkAll(rows);
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`\nScale benchmark: ${servers} servers × ${(size / 1e6).toFixed(1)} MB archives over loopback ssh, median of ${runs} run(s), each concurrency alternating with its peer; binary ${bin}`);
  console.log("× ref: shoot's wall time over the loop's (lower is better); CPU is of each command and the children it waited for (ssh's shared connection runs in the background and is not counted)\n");
  console.log(formatTable(rows));
  if (!restored) {
    console.log("\nFAIL: a copy pulled by this benchmark does not restore exactly (rows \"restore check\")");
    process.exitCode = 1;
  }
}

await main();
