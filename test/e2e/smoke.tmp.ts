import { startSshd } from "../helpers/sshd.ts";
import { serverFixture } from "../helpers/fixture.ts";
import { runShoot } from "../helpers/cli.ts";
import { writeClientConfig, sshSource, runClient } from "../helpers/client.ts";
import path from "node:path";
const s = await startSshd();
try {
  const fx = serverFixture();
  const w = await runShoot(["wrapper", "--config", fx.config]);
  console.log("wrapper", w.code, w.stdout);
  const dest = path.join(fx.root, "dest");
  const cfg = writeClientConfig(path.join(fx.root, "client.toml"), { dest, known_hosts: s.knownHosts, sources: [sshSource(s, "web1", fx.backup)] });
  let t = Date.now();
  const r = await runClient(cfg, dest);
  console.log(Date.now() - t, r.code, r.stdout, r.stderr);
  console.log(r.records.map((x) => `${x.code} ${x.name} ${x.msg}`).join("\n"));
  t = Date.now();
  const r2 = await runClient(cfg, dest);
  console.log(Date.now() - t, r2.code, JSON.stringify(r2.codes), r2.outcome.sources[0].message);
} finally { await s.stop(); }
