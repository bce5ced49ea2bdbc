/**
 * Network namespaces of the test's own, for servers behind a bad network: each namespace is
 * joined to this host by a link, and its server listens on the namespace's side of it.
 *
 *   veth  a veth pair; a `tc qdisc tbf` on the namespace's side paces what the server sends
 *         (a slow link, e.g. 1 MiB/s)
 *   wan   two TUN devices joined by test/helpers/wan-link.ts: delay, loss (1: a link that
 *         drops every packet) and rate, for kernels built without netem
 *
 * Names carry this process's pid (`shoot-PID-N`), so suites run side by side on one machine
 * do not meet, and namespaces left by a test process that died are removed by the next one.
 * `close()` removes every namespace, link and qdisc it made, whatever happened; the caller
 * stops the processes it started inside first.
 */
import fs from "node:fs";
import path from "node:path";
import { pidExists, spawner, type Child } from "../../src/io/process.ts";
import { requireTool } from "./tools.ts";

const PREFIX = "shoot-";

export interface Link {
  /** The namespace's name, for `ip netns exec`. */
  ns: string;
  /** This host's address on the link, and the namespace's (where its server listens). */
  hostAddr: string;
  nsAddr: string;
  /** What the link does, for the test's account of what it covered. */
  describe: string;
}

async function ip(args: string[]): Promise<string> {
  const r = await spawner.run([requireTool("ip"), ...args], { captureStdout: true, timeoutMs: 20_000 });
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(" ")} failed: ${r.stderrTail.join(" ")}`);
  return r.stdout;
}

async function tc(ns: string, args: string[]): Promise<void> {
  const r = await spawner.run([requireTool("ip"), "netns", "exec", ns, requireTool("tc"), ...args], { timeoutMs: 20_000 });
  if (r.exitCode !== 0) throw new Error(`tc ${args.join(" ")} in ${ns} failed: ${r.stderrTail.join(" ")}`);
}

/** Namespaces of test processes that no longer run (a crash before their cleanup). */
async function removeLeftovers(): Promise<string[]> {
  const gone: string[] = [];
  for (const line of (await ip(["netns", "list"])).split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const m = new RegExp(`^${PREFIX}(\\d+)-\\d+$`).exec(name);
    if (m && !pidExists(Number(m[1]))) {
      await ip(["netns", "del", name]).catch(() => undefined);
      gone.push(name);
    }
  }
  return gone;
}

/** A second octet for 10.X.0.0/16 that no address on this host uses yet. */
async function freeNet(): Promise<number> {
  const used = await ip(["-4", "-o", "addr", "show"]);
  for (let i = 0; i < 200; i++) {
    const x = 20 + ((process.pid + i * 37) % 200);
    if (!used.includes(` 10.${x}.`)) return x;
  }
  throw new Error("no free 10.X.0.0/16 network for the test's namespaces");
}

export class Namespaces {
  private readonly made: string[] = [];
  private readonly links: Child[] = [];
  private readonly hostDevices: string[] = [];
  private net = 0;
  private count = 0;

  /** Remove what crashed runs left, and pick this run's network. */
  async open(): Promise<void> {
    const gone = await removeLeftovers();
    if (gone.length) console.log(`netns: removed ${gone.length} namespace(s) left by test processes that died: ${gone.join(", ")}`);
    this.net = await freeNet();
  }

  private async namespace(): Promise<{ ns: string; n: number; hostAddr: string; nsAddr: string }> {
    const n = ++this.count;
    const ns = `${PREFIX}${process.pid}-${n}`;
    await ip(["netns", "add", ns]);
    this.made.push(ns);
    await ip(["-n", ns, "link", "set", "lo", "up"]);
    return { ns, n, hostAddr: `10.${this.net}.${n}.1`, nsAddr: `10.${this.net}.${n}.2` };
  }

  /** Device names must fit in 15 bytes: `s` + pid in base 36 + link number + side. */
  private device(n: number, side: "h" | "n"): string {
    return `s${process.pid.toString(36)}${n}${side}`;
  }

  /** A veth pair; with `rateBytes`, tbf paces what the namespace sends to that many bytes a second. */
  async veth(opts: { rateBytes?: number } = {}): Promise<Link> {
    const { ns, n, hostAddr, nsAddr } = await this.namespace();
    const host = this.device(n, "h");
    const inner = this.device(n, "n");
    await ip(["link", "add", host, "type", "veth", "peer", "name", inner]);
    this.hostDevices.push(host);
    await ip(["link", "set", inner, "netns", ns]);
    await ip(["addr", "add", `${hostAddr}/30`, "dev", host]);
    await ip(["link", "set", host, "up"]);
    await ip(["-n", ns, "addr", "add", `${nsAddr}/30`, "dev", inner]);
    await ip(["-n", ns, "link", "set", inner, "up"]);
    let describe = "veth";
    if (opts.rateBytes) {
      const bits = opts.rateBytes * 8;
      await tc(ns, ["qdisc", "add", "dev", inner, "root", "tbf", "rate", `${bits}bit`, "burst", "16kb", "latency", "200ms"]);
      describe = `veth, tc qdisc tbf rate ${(opts.rateBytes / 1024 / 1024).toFixed(1)} MiB/s`;
    }
    return { ns, hostAddr, nsAddr, describe };
  }

  /** A user-space link (wan-link.ts): `delayMs` each way, `loss` of the packets (1: all), `rateBytes` a second. */
  async wan(opts: { delayMs?: number; loss?: number; rateBytes?: number; seed?: number }): Promise<Link> {
    const { ns, n, hostAddr, nsAddr } = await this.namespace();
    const host = this.device(n, "h");
    const inner = this.device(n, "n");
    let ready: () => void;
    const started = new Promise<void>((r) => (ready = r));
    const child = spawner.start([process.execPath, path.join(import.meta.dir, "wan-link.ts"), host, inner, String(opts.delayMs ?? 0), String(opts.loss ?? 0), String(opts.rateBytes ?? 0), String(opts.seed ?? n)], {
      onStdoutLine: (l) => l === "ready" && ready(),
      stderrLines: 20,
    });
    this.links.push(child);
    const ended = child.done.then((r) => {
      throw new Error(`wan-link ended before it was ready: ${r.stderrTail.join("\n")}`);
    });
    await Promise.race([started, ended]);
    ended.catch(() => undefined);
    await ip(["link", "set", inner, "netns", ns]);
    await ip(["addr", "add", `${hostAddr}/30`, "dev", host]);
    await ip(["link", "set", host, "up"]);
    await ip(["-n", ns, "addr", "add", `${nsAddr}/30`, "dev", inner]);
    await ip(["-n", ns, "link", "set", inner, "up"]);
    const parts = [opts.delayMs ? `delay ${opts.delayMs} ms` : "", opts.loss ? `loss ${opts.loss * 100} %` : "", opts.rateBytes ? `rate ${opts.rateBytes} B/s` : ""].filter(Boolean);
    return { ns, hostAddr, nsAddr, describe: `user-space link: ${parts.join(", ")}` };
  }

  /** Every namespace, link and qdisc made here, gone (errors are collected, not thrown half-way). */
  async close(): Promise<void> {
    const problems: string[] = [];
    for (const c of this.links) {
      c.kill("SIGKILL");
      await c.done.catch(() => undefined);
    }
    for (const d of this.hostDevices) await ip(["link", "del", d]).catch(() => undefined);
    for (const ns of this.made) await ip(["netns", "del", ns]).catch((e: unknown) => problems.push(String(e)));
    const left = (await ip(["netns", "list"])).split("\n").filter((l) => this.made.includes(l.split(" ")[0] ?? ""));
    if (left.length) problems.push(`namespaces still there: ${left.join(", ")}`);
    if (fs.existsSync(`/sys/class/net/${this.device(1, "h")}`)) problems.push(`link ${this.device(1, "h")} still there`);
    if (problems.length) throw new Error(`netns cleanup: ${problems.join("; ")}`);
  }

  /** What is left of this run's namespaces (none after close). */
  async remaining(): Promise<string[]> {
    return (await ip(["netns", "list"])).split("\n").map((l) => l.split(" ")[0] ?? "").filter((n) => this.made.includes(n));
  }
}
