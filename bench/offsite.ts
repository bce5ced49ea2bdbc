/**
 * `shoot offsite push` of one held copy against `rclone copyto` of the same file to the same
 * radosgw (a throwaway Ceph cluster started here, see test/helpers/ceph.ts), taking turns in
 * one run. Goals: at least rclone's speed (ratio ≥ 1.0) and at most 120 MiB peak memory.
 *
 *   bun bench/offsite.ts [--size 1GiB] [--runs 3] [--bin dist/shoot-linux-x64] [--part 8MiB]
 *
 * Without a built binary (or --bin), shoot runs from source with bun.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { parseSize } from "../src/core/common/units.ts";
import { startCeph } from "../test/helpers/ceph.ts";
import { alternating, formatTable, measure, MiB, verdict, type Measured, type Row } from "./lib.ts";
import { DEFAULT_BIN, REPO } from "./shoot.ts";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "1GiB" },
    runs: { type: "string", default: "3" },
    bin: { type: "string" },
    part: { type: "string", default: "8MiB" },
  },
});
const size = parseSize(values.size!) ?? 0;
if (size < 16 * MiB) throw new Error(`--size: expected 16MiB or more, got ${values.size}`);
const runs = Math.max(1, Number(values.runs));
const bin = values.bin ? path.resolve(values.bin) : fs.existsSync(DEFAULT_BIN) ? DEFAULT_BIN : undefined;
const shoot = bin ? [bin] : [process.execPath, path.join(REPO, "src/main.ts")];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shoot-bench-offsite-"));
// every round stores three copies of --size, and radosgw frees deleted data only hours later
const ceph = await startCeph(Math.max(4 * 1024 ** 3, (3 * runs + 2) * size));
try {
  // the held copy: incompressible bytes (the store and the wire see what an archive gives them)
  const dest = path.join(dir, "dest");
  fs.mkdirSync(path.join(dest, "web1"), { recursive: true });
  const file = "web1-20260102-030405.tar.gz";
  const copy = path.join(dest, "web1", file);
  const fd = fs.openSync(copy, "w");
  const block = new Uint8Array(4 * MiB);
  const md5 = new Bun.CryptoHasher("md5");
  for (let left = size; left > 0; left -= block.length) {
    for (let o = 0; o < block.length; o += 65536) crypto.getRandomValues(block.subarray(o, o + 65536));
    const piece = block.subarray(0, Math.min(block.length, left));
    md5.update(piece);
    fs.writeSync(fd, piece);
  }
  fs.closeSync(fd);
  fs.writeFileSync(`${copy}.md5`, `${md5.digest("hex")}  ${file}\n`);
  const creds = path.join(dir, "creds");
  fs.writeFileSync(creds, `aws_access_key_id = ${ceph.accessKeyId}\naws_secret_access_key = ${ceph.secretAccessKey}\n`, { mode: 0o600 });

  // an age recipient for the encrypted row
  const keygen = Bun.spawnSync(["age-keygen"], { stdout: "pipe", stderr: "pipe" });
  const recipient = /public key: (age1[0-9a-z]+)/.exec(`${keygen.stdout}${keygen.stderr}`)?.[1];
  if (!recipient) throw new Error("age-keygen gave no recipient: apt-get install age");

  let n = 0;
  const shootPush = (encrypt = false) => {
    const config = path.join(dir, `shoot-${++n}.toml`);
    fs.writeFileSync(config, [
      "[client]", `dest_dir = ${JSON.stringify(dest)}`, "[[client.source]]", 'name = "web1"', 'remote = "/nonexistent"',
      "[[offsite]]", 'name = "bench"', `endpoint = "${ceph.endpoint}"`, `bucket = "${ceph.bucket}"`, `prefix = "shoot-${n}/"`,
      `credentials_file = ${JSON.stringify(creds)}`, `part_size = "${values.part}"`, ...(encrypt ? [`encrypt_to = ["${recipient}"]`] : []), "",
    ].join("\n"));
    return measure([...shoot, "offsite", "push", "--config", config]).then(emptied(`shoot-${n}`));
  };
  // a clean environment: an AWS_CA_BUNDLE meant for other tools stops rclone's S3 client
  const rcloneEnv = {
    PATH: process.env.PATH, HOME: dir, RCLONE_CONFIG_BENCH_TYPE: "s3", RCLONE_CONFIG_BENCH_PROVIDER: "Ceph", RCLONE_CONFIG_BENCH_ENDPOINT: ceph.endpoint,
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: ceph.accessKeyId, RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: ceph.secretAccessKey,
  };
  const rcloneArgv = ["rclone", "--config", path.join(dir, "rclone.conf")];
  // each copy is removed once measured: the test cluster's store holds a few GiB, not every round's copies
  const emptied = (prefix: string) => (m: Measured): Measured => {
    const r = Bun.spawnSync([...rcloneArgv, "purge", `bench:${ceph.bucket}/${prefix}`], { env: rcloneEnv, stdout: "ignore", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`rclone purge ${prefix}: ${r.stderr}`);
    return m;
  };
  const rclone = () => measure([...rcloneArgv, "copyto", copy, `bench:${ceph.bucket}/rclone-${++n}/${file}`], { env: rcloneEnv }).then(emptied(`rclone-${n}`));
  fs.writeFileSync(path.join(dir, "rclone.conf"), "");

  const [r, s, e] = await alternating(runs, [rclone, () => shootPush(), () => shootPush(true)]);
  const ratio = r.wallMs / s.wallMs;
  const rows: Row[] = [
    { name: "rclone copyto", wallMs: r.wallMs, cpuMs: r.cpuMs, bytes: size, peakRss: r.peakRss, verdict: "" },
    { name: "shoot offsite push", wallMs: s.wallMs, cpuMs: s.cpuMs, bytes: size, peakRss: s.peakRss, ratio, target: "≥ 1.0× rclone", verdict: verdict(ratio, 1.0, 1.0) },
    { name: "shoot offsite push memory", peakRss: s.peakRss, target: "≤ 120 MiB", verdict: verdict(s.peakRss / MiB, 120, 120, false) },
    { name: "shoot offsite push, age", wallMs: e.wallMs, cpuMs: e.cpuMs, bytes: size, peakRss: e.peakRss, ratio: r.wallMs / e.wallMs, target: "≤ 120 MiB", verdict: verdict(e.peakRss / MiB, 120, 120, false) },
  ];
  console.log(`offsite push of ${(size / MiB).toFixed(0)} MiB to radosgw on 127.0.0.1, median of ${runs} run(s) each, taking turns; shoot: ${shoot.join(" ")}`);
  console.log(formatTable(rows));
  console.log(`ratio (rclone time / shoot time): ${ratio.toFixed(2)}`);
} finally {
  await ceph.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
