/**
 * A TCP proxy on 127.0.0.1 that counts the bytes it carries each way: put between an ssh
 * client and sshd, it measures what a transfer puts on the wire outside the programs being
 * compared (rsync's own statistics leave out ssh's framing, its key exchange and every
 * connection besides rsync's).
 */
import fs from "node:fs";
import net from "node:net";

export interface CountingProxy {
  port: number;
  /** Bytes from the client to the server, and back, since the last reset. */
  up: number;
  down: number;
  reset(): void;
  /** Close the listening socket and every connection. */
  stop(): Promise<void>;
}

/** Listen on a free port of 127.0.0.1 and forward every connection to `targetPort` there. */
export async function startCountingProxy(targetPort: number): Promise<CountingProxy> {
  const sockets = new Set<net.Socket>();
  const counts = { up: 0, down: 0 };
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => s.destroy());
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    track(client);
    track(upstream);
    client.on("data", (d: Buffer) => (counts.up += d.length));
    upstream.on("data", (d: Buffer) => (counts.down += d.length));
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get up() {
      return counts.up;
    },
    get down() {
      return counts.down;
    },
    reset() {
      counts.up = 0;
      counts.down = 0;
    },
    stop() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A known_hosts file that vouches for the server's host key on the proxy's port too: ssh looks
 * a non-standard port up as "[host]:port", so a client sent through the proxy would otherwise
 * meet an unknown host.
 */
export function knownHostsThrough(knownHosts: string, proxyPort: number, out: string): string {
  const lines = fs.readFileSync(knownHosts, "utf8").split("\n").filter((l) => l.trim() !== "");
  const key = lines[0]?.split(" ").slice(1).join(" ");
  if (!key) throw new Error(`${knownHosts} holds no host key`);
  fs.writeFileSync(out, [...lines, `[127.0.0.1]:${proxyPort} ${key}`].join("\n") + "\n");
  return out;
}
