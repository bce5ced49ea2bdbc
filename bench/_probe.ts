import fs from "node:fs";
import path from "node:path";
import { PATTERNS } from "./day2.ts";
import { measure } from "./lib.ts";
import { startSshd } from "../test/helpers/sshd.ts";
import { knownHostsThrough, startCountingProxy } from "./proxy.ts";
import { clientRun, writeClientConfig, writeServerConfig, serverRun, freshDir, DEFAULT_BIN } from "./shoot.ts";
import { code } from "../src/core/common/codes.ts";
const pat = PATTERNS.find((p) => p.name.startsWith(process.argv[2]!))!;
const c = (process.argv[3] ?? "gzip") as "gzip" | "zstd";
const dir = "/work/tmp/d2";
const tree = path.join(dir, "tree");
if (!fs.existsSync(path.join(dir, "tree.done"))) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  await measure(["cp", "-a", "/work/main/bench/data/tree-1073741824", tree]);
  fs.writeFileSync(path.join(dir, "tree.done"), "");
} else await measure(["rsync", "-a", "--delete", "/work/main/bench/data/tree-1073741824/", `${tree}/`]);
const skip = process.argv[4] === "again";
const backup = skip ? path.join(dir, "backup") : freshDir(path.join(dir, "backup"));
const cfg = writeServerConfig(path.join(dir, "server.toml"), { name: "probe", sources: [tree], backupDir: backup, compression: c });
const d1 = (await serverRun(DEFAULT_BIN, cfg, backup, code("FIRST_ARCHIVE"))).final;
console.log("day1", d1.archive!.file, d1.archive!.size);
const sshd = await startSshd();
const proxy = await startCountingProxy(sshd.port);
const cdest = freshDir(path.join(dir, "cdest"));
const knownHosts = knownHostsThrough(sshd.knownHosts, proxy.port, path.join(dir, "known_hosts"));
const ccfg = writeClientConfig(path.join(dir, "client.toml"), { dest: cdest, knownHosts, source: { name: "probe", remote: `${sshd.user}@127.0.0.1:${backup}`, port: proxy.port, identity: sshd.userKey.key } });
await clientRun(DEFAULT_BIN, ccfg, cdest, code("FIRST_ARCHIVE"));
if (process.env.PRELUDE) {
  console.log("prelude", PATTERNS[0]!.apply(tree));
  await measure(["rsync", "-a", "--delete", "/work/main/bench/data/tree-1073741824/", `${tree}/`]);
}
console.log(pat.apply(tree));
const d2 = (await serverRun(DEFAULT_BIN, cfg, backup, code("NEW_ARCHIVE"))).final;
console.log("day2", d2.archive!.file, d2.archive!.size);
const recs = fs.readFileSync(path.join(backup, "server.status"), "utf8").split("\n").filter((l) => l.includes("SCANNED")).slice(-1);
console.log(recs.join("\n").slice(0, 600));
proxy.reset();
await clientRun(DEFAULT_BIN, ccfg, cdest, code("NEW_ARCHIVE"));
console.log("client wire", proxy.up, proxy.down);
for (const l of fs.readFileSync(path.join(cdest, "client.status"), "utf8").split("\n").slice(-12)) console.log(l.slice(0, 400));
await proxy.stop(); await sshd.stop();
const dest = freshDir(path.join(dir, "dest"));
fs.copyFileSync(path.join(backup, d1.archive!.file), path.join(dest, d2.archive!.file));
for (const bs of [undefined, 4096, 16384]) {
  fs.copyFileSync(path.join(backup, d1.archive!.file), path.join(dest, d2.archive!.file));
  const r = Bun.spawnSync(["rsync", "--stats", "--no-whole-file", ...(bs ? [`--block-size=${bs}`] : []), path.join(backup, d2.archive!.file), `${dest}/`]);
  const out = r.stdout.toString();
  console.log("bs", bs, out.split("\n").filter((l) => /Literal|Matched|Total bytes (sent|received)/.test(l)).join(" | "));
}
// list
console.log("lists", fs.readdirSync(backup).filter((f) => f.endsWith(".list")).map((f) => `${f} ${fs.statSync(path.join(backup, f)).size}`));
