/**
 * A network link in user space, for servers the scale test puts behind a bad network: two TUN
 * devices, each packet read from one written to the other after a delay, dropped at a given
 * rate, and paced to a bandwidth, in each direction on its own. It does what `tc qdisc netem`
 * does (delay, loss, rate) for kernels built without netem (CONFIG_NET_SCH_NETEM), with
 * real packets through the kernels' TCP stacks on both sides.
 *
 *   bun test/helpers/wan-link.ts NAME_A NAME_B DELAY_MS LOSS RATE_BYTES_PER_S SEED
 *
 * LOSS is a share (0.05: 5 %, 1: every packet); RATE 0 means no limit. It prints "ready" once
 * both devices exist; they live as long as this process (the test moves NAME_B into the
 * server's namespace and stops this process by its pid at the end).
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import fs from "node:fs";

const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
/** Packets a direction holds at most; beyond, new ones are dropped (a real queue's tail drop). */
const QUEUE_MAX = 1000;

const [nameA, nameB, delayArg, lossArg, rateArg, seedArg] = process.argv.slice(2);
if (!nameA || !nameB) throw new Error("usage: wan-link.ts NAME_A NAME_B DELAY_MS LOSS RATE_BYTES_PER_S SEED");
const delayMs = Number(delayArg ?? 0);
const loss = Number(lossArg ?? 0);
const rate = Number(rateArg ?? 0);
let seed = Number(seedArg ?? 1) >>> 0 || 1;

/** xorshift32: the same seed drops the same packets. */
function random(): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 2 ** 32;
}

const libc = dlopen("libc.so.6", { ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 } });

function openTun(name: string): number {
  const fd = fs.openSync("/dev/net/tun", fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  const ifr = new Uint8Array(40);
  new TextEncoder().encodeInto(name, ifr.subarray(0, 15));
  new DataView(ifr.buffer).setUint16(16, IFF_TUN | IFF_NO_PI, true);
  if (libc.symbols.ioctl(fd, TUNSETIFF, ptr(ifr)) !== 0) throw new Error(`TUNSETIFF ${name} failed (is /dev/net/tun there, and are we root?)`);
  return fd;
}

interface Direction {
  from: number;
  to: number;
  queue: Array<{ at: number; packet: Buffer }>;
  /** When the last packet queued leaves, for pacing to `rate`. */
  lastOut: number;
}

const a = openTun(nameA);
const b = openTun(nameB);
const directions: Direction[] = [
  { from: a, to: b, queue: [], lastOut: 0 },
  { from: b, to: a, queue: [], lastOut: 0 },
];
const buf = Buffer.alloc(65536);

function readAll(d: Direction, now: number): void {
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(d.from, buf, 0, buf.length, null);
    } catch (e) {
      if ((e as { code?: string }).code === "EAGAIN") return;
      throw e;
    }
    if (n <= 0) return;
    if (random() < loss || d.queue.length >= QUEUE_MAX) continue;
    const paced = rate > 0 ? Math.max(now, d.lastOut) + (n * 1000) / rate : now;
    d.lastOut = paced;
    d.queue.push({ at: paced + delayMs, packet: Buffer.from(buf.subarray(0, n)) });
  }
}

function flush(d: Direction, now: number): void {
  while (d.queue.length > 0 && d.queue[0]!.at <= now) {
    const { packet } = d.queue.shift()!;
    try {
      fs.writeSync(d.to, packet);
    } catch {
      // the other side is not up yet, or went down: the packet is lost, as on a wire
    }
  }
}

setInterval(() => {
  const now = performance.now();
  for (const d of directions) {
    readAll(d, now);
    flush(d, now);
  }
}, 1);
console.log("ready");
