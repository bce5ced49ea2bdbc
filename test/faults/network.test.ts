/**
 * Network faults between the backup host and a server: the port refuses connections, the
 * server's sshd dies in the middle of a transfer, the connection goes silent part-way (a
 * proxy on 127.0.0.1 that stops forwarding) until the client's time-out gives up, and the
 * server presents another host key than the one known. Each ends with its own code within the
 * configured time-outs, the copy held stays good, and once the network is back the next pull
 * ends golden.
 */
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import { startShoot } from "../helpers/cli.ts";
import {
  PullLane, boundedExit, caseSeed, checkGoodKept, cmdline, descendants, expectNamed, faultFile, faultSshd, injected, killPid,
  rsyncPulling, scaled, skipShellStartupFiles, snapshotGood, waitFor,
} from "../helpers/faults.ts";
import { seeded } from "../helpers/random.ts";
import { freePort, startSshd } from "../helpers/sshd.ts";
import type { CodeName } from "../../src/core/common/codes.ts";

faultFile(import.meta.path);

const host = faultSshd("shoot-fault-net-");

/** A pull cut off by the network may end only like this. */
const CUT_OFF: CodeName[] = ["UNREACHABLE", "STATUS_PULL_FAILED", "PULL_FAILED"];

/** A lane that already holds one good copy, pulled through the test sshd. */
async function laneWithCopy(name: string, seedName: string, opts: { bwlimit?: string } = {}) {
  const lane = new PullLane(host.base, name, seeded(caseSeed(seedName)), { sshd: host.sshd, bwlimit: opts.bwlimit });
  await lane.publish();
  await lane.normalRun(`${name}: first pull`);
  return lane;
}

/**
 * A TCP proxy to the sshd that forwards the server's first `budget` bytes of each connection
 * and then goes silent, keeping the connection open: a stalled network, as the client sees it.
 */
async function stallingProxy(port: number, budget: () => number): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    let left = budget();
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
    }
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d: Buffer) => {
      if (left <= 0) return;
      client.write(d.subarray(0, left));
      left -= d.length;
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe("network faults", () => {
  test("connection refused: UNREACHABLE, the copy held stays, the next pull after the port opens is golden", async () => {
    const lane = await laneWithCopy("refused", "connection refused");
    await lane.publish();
    const good = snapshotGood(lane.copies);
    lane.configure({ sshd: host.sshd, port: await freePort(), client: { connect_timeout: "3s" } });
    injected("connection refused");
    const r = await lane.pull(30_000);
    expect({ code: r.code, message: r.outcome.sources[0]!.message }).toMatchObject({ code: 40, message: expect.stringContaining("Connection refused") });
    checkGoodKept(good, "refused");
    lane.check("refused", true);
    lane.configure({ sshd: host.sshd });
    await lane.normalRun("port open again");
  }, 60_000);

  test(`the server's sshd killed in the middle of a transfer, ${scaled(3)} times`, async () => {
    const lane = await laneWithCopy("sshd-killed", "sshd killed mid-transfer", { bwlimit: "2MiB" });
    const rand = lane.rand;
    const codes: Record<string, number> = {};
    for (let i = 0; i < scaled(3); i++) {
      const context = `sshd killed ${i}`;
      const doomed = await startSshd();
      try {
        await skipShellStartupFiles(doomed);
        lane.configure({ sshd: doomed, bwlimit: "2MiB" });
        const info = await lane.publish();
        const good = snapshotGood(lane.copies);
        const proc = startShoot(["client", "--config", lane.config, "--json"]);
        expect(await rsyncPulling(proc, lane.dest, info.file)).toBeGreaterThan(0);
        await Bun.sleep(50 + rand() * 250);
        // the listener and every session it forked, at once
        for (const p of [doomed.pid, ...doomed.sessionPids()]) process.kill(p, "SIGKILL");
        injected("sshd killed mid-transfer");
        const code = await boundedExit(proc, context, 60_000);
        codes[code] = (codes[code] ?? 0) + 1;
        expectNamed(code, CUT_OFF, context);
        lane.check(context, true);
        checkGoodKept(good, context);
      } finally {
        await doomed.stop();
      }
      // the server is back (here: another sshd serving the same directory)
      lane.configure({ sshd: host.sshd, bwlimit: "2MiB" });
      await lane.normalRun(`${context}: server back`);
    }
    console.log(`sshd killed mid-transfer: exit codes ${JSON.stringify(codes)}`);
  }, 120_000);

  test(`a connection that goes silent part-way gives up within timeout = "2s", ${scaled(3)} times at random points`, async () => {
    const lane = await laneWithCopy("stall", "stalled connection");
    const rand = lane.rand;
    const codes: Record<string, number> = {};
    for (let i = 0; i < scaled(3); i++) {
      const context = `stall ${i}`;
      // from silence before the ssh banner to silence in the middle of the archive
      const budget = i === 0 ? 0 : Math.floor(rand() * 600 * 1024);
      const proxy = await stallingProxy(host.sshd.port, () => budget);
      try {
        // the known_hosts entry names the sshd's own port: this one reaches the same host key through the proxy
        fs.appendFileSync(host.sshd.knownHosts, fs.readFileSync(host.sshd.knownHosts, "utf8").split("\n")[0]!.replace(`]:${host.sshd.port} `, `]:${proxy.port} `) + "\n");
        // one try: what is timed here is one time-out (a silence before any data is tried again
        // by default; the scale and client tests cover that)
        lane.configure({ sshd: host.sshd, port: proxy.port, client: { timeout: "2s", connect_timeout: "2s", tries: 1 } });
        await lane.publish();
        const good = snapshotGood(lane.copies);
        const t0 = performance.now();
        const proc = startShoot(["client", "--config", lane.config, "--json"]);
        injected("connection stalled");
        const code = await boundedExit(proc, context, 60_000);
        const secs = (performance.now() - t0) / 1000;
        codes[code] = (codes[code] ?? 0) + 1;
        expectNamed(code, CUT_OFF, context);
        expect({ context, failed: code !== 0 }).toEqual({ context, failed: true });
        // two 2 s time-outs and start-up, nowhere near ssh's 60 s keep-alive limit
        expect({ context, within: secs < 20 }).toEqual({ context, within: true });
        lane.check(context, true);
        checkGoodKept(good, context);
      } finally {
        proxy.close();
      }
      lane.configure({ sshd: host.sshd });
      await lane.normalRun(`${context}: network back`);
    }
    console.log(`stalled connections: exit codes ${JSON.stringify(codes)}`);
  }, 120_000);

  test(`the server's rsync stops (SIGSTOP) while its sshd still answers, ${scaled(2)} times: given up after timeout = "2s"`, async () => {
    const lane = await laneWithCopy("stopped", "server rsync stopped");
    const rand = lane.rand;
    for (let i = 0; i < scaled(2); i++) {
      const context = `server rsync stopped ${i}`;
      // one try: a stop before the first bytes reached the disk passes for a silence before any
      // data, which another try gets past (with a new sender); what is tested here is the time-out
      lane.configure({ sshd: host.sshd, bwlimit: "1MiB", client: { timeout: "2s", connect_timeout: "5s", tries: 1 } });
      // 4 MiB at 1 MiB/s: the moment below (finding the sender, then up to 0.8 s) must fall
      // inside the transfer, on a busy machine too
      const info = await lane.publish(4 * 1024 * 1024);
      const good = snapshotGood(lane.copies);
      const t0 = performance.now();
      const proc = startShoot(["client", "--config", lane.config, "--json"]);
      // a client that ended before its rsync started has nothing to stop: say so, rather than
      // wait for a sender that cannot come
      const pulling = await rsyncPulling(proc, lane.dest, info.file);
      expect({ context, pulling: pulling !== undefined, clientExit: proc.exitCode }).toEqual({ context, pulling: true, clientExit: null });
      // the sender on the server: a hung disk or a stopped process, while ssh keep-alives are still answered
      const senders = await waitFor(() => {
        // the archive's sender (the file list's, which runs beside it, names info.file + ".list")
        const found = descendants(host.sshd.pid).filter((p) => cmdline(p).includes("--sender") && cmdline(p).split(" ").some((a) => a.endsWith(`/${info.file}`)));
        return found.length ? found : undefined;
      }, 10_000, 10);
      expect({ context, sender: senders !== undefined }).toEqual({ context, sender: true });
      await Bun.sleep(rand() * 800);
      for (const p of senders!) process.kill(p, "SIGSTOP");
      injected("server rsync stopped");
      const code = await boundedExit(proc, context, 60_000);
      const secs = (performance.now() - t0) / 1000;
      for (const p of senders!) killPid(p);
      expect({ context, code }).toEqual({ context, code: 49 });
      expect({ context, within: secs < 20 }).toEqual({ context, within: true });
      lane.check(context, true);
      checkGoodKept(good, context);
      lane.configure({ sshd: host.sshd });
      await lane.normalRun(`${context}: the next run`);
    }
  }, 120_000);

  test("another host key than the one known (a re-keyed server or a man in the middle): HOST_KEY_FAILED, even with accept_new_host_key", async () => {
    const lane = await laneWithCopy("hostkey", "wrong host key");
    await lane.publish();
    const good = snapshotGood(lane.copies);
    const knownHosts = `${lane.dest}.known_hosts`;
    const other = (await host.sshd.newKey("impostor-host")).publicLine.split(" ").slice(0, 2).join(" ");
    fs.writeFileSync(knownHosts, `[127.0.0.1]:${host.sshd.port} ${other}\n`);
    for (const accept of [false, true]) {
      lane.configure({ sshd: host.sshd, client: { known_hosts: knownHosts, accept_new_host_key: accept } });
      injected("wrong host key");
      const r = await lane.pull(30_000);
      expect({ accept, code: r.code }).toEqual({ accept, code: 41 });
      checkGoodKept(good, `wrong host key, accept_new_host_key = ${accept}`);
      lane.check("wrong host key", true);
    }
    // the key file was not "corrected" behind the administrator's back
    expect(fs.readFileSync(knownHosts, "utf8")).toBe(`[127.0.0.1]:${host.sshd.port} ${other}\n`);
    lane.configure({ sshd: host.sshd });
    await lane.normalRun("the right key again");
  }, 60_000);
});
