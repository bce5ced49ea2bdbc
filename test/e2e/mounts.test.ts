/**
 * Mount points inside the sources, with real mounts: a pseudo file system is never walked into
 * (/proc alone would end a backup of "/" where /proc/kcore claims 128 TiB), and `one_file_system`
 * keeps the walk on the sources' own file systems. The tmpfs mounts live in a mount namespace
 * of the test's own (`unshare`), which needs no root and leaves the host's mounts alone.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { LIST_SUFFIX, sortArchives } from "../../src/core/state/naming.ts";
import { lineKey, nameOfKey } from "../../src/core/scan/scan.ts";
import { runShoot, shootArgv } from "../helpers/cli.ts";
import { archivesIn, serverFixture, statusRecords } from "../helpers/fixture.ts";
import { readListText } from "../helpers/lists.ts";
import { requireTool } from "../helpers/tools.ts";

// one mount point right below the source, one deeper than the unchanged check's plan opens
// directories on the main thread, so that its worker tasks meet one too (scan-parallel.ts)
const fx = serverFixture("", { "etc/app.conf": "answer = 42\n", "mnt/": null, "deep/1/2/3/4/5/6/7/mnt/": null });
afterAll(() => fx.cleanup());

const MOUNTS = [path.join(fx.src, "mnt"), path.join(fx.src, "deep/1/2/3/4/5/6/7/mnt")];
const name = (abs: string) => abs.replace(/^\/+/, "");

/** The names in the newest archive's file list. */
function listedNames(): string[] {
  // oldest first in shoot's own order (two runs in one second make NAME and NAME-1)
  const newest = sortArchives(archivesIn(fx.backup)).at(-1)!;
  // the first line is the list's header, the others its entries
  return readListText(path.join(fx.backup, newest + LIST_SUFFIX)).split("\n").slice(1).filter(Boolean).map((l) => nameOfKey(lineKey(l)!));
}

/** A run's final code and MOUNT_SKIPPED warnings: the last run's in server.status, the one before in server.status.1. */
function run(file = "server.status"): { code: number | undefined; warnings: string[] } {
  const records = statusRecords(path.join(fx.backup, file));
  // sorted: the walk on every core gathers the threads' warnings in its own order
  return { code: records.at(-1)?.code, warnings: records.filter((r) => r.name === "MOUNT_SKIPPED").map((r) => r.msg as string).sort() };
}

/** What the last run's SCANNED record says. */
function scanned(): string {
  return statusRecords(path.join(fx.backup, "server.status")).find((r) => r.name === "SCANNED")?.msg ?? "";
}

/**
 * `shoot server` run `times` times in one new mount namespace with a fresh tmpfs on each mount
 * point, and a new file written to a directory on each before every run (a file in a tmpfs's
 * top directory would change the mount point's own mtime, which the archive does record). Root
 * needs only the mount namespace; anyone else gets a user namespace in which they are root.
 */
async function serverWithTmpfs(times: number): Promise<void> {
  const unshare = requireTool("unshare");
  const ns = process.getuid?.() === 0 ? [unshare, "--mount"] : [unshare, "--user", "--map-root-user", "--mount"];
  const script = `for m in ${MOUNTS.map((m) => `'${m}'`).join(" ")}; do mount -t tmpfs shoot-test "$m" && mkdir "$m/sub" || exit 97; done
for i in $(seq ${times}); do
  for m in ${MOUNTS.map((m) => `'${m}'`).join(" ")}; do echo "written before run $i" > "$m/sub/on-tmpfs-$i.txt"; done
  "$@" || echo "run $i exit $?"
done`;
  const p = Bun.spawn([...ns, "sh", "-c", script, "sh", ...shootArgv(), "server", "--config", fx.config], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  const exit = await p.exited;
  if (exit !== 0) throw new Error(`${ns.join(" ")} sh -c …: exit ${exit} (97: a tmpfs could not be mounted; are user namespaces allowed?)\n${err}`);
  expect(out).not.toContain(" exit ");
}

/**
 * `shoot server` once in a new mount namespace with devtmpfs mounted read-only on the first mount
 * point. devtmpfs is one instance shared with the host's /dev, so nothing is written to it; only
 * root may mount it (a user namespace may not).
 */
async function serverWithDevtmpfs(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("this test mounts devtmpfs and must run as root (CI runs as root)");
  const unshare = requireTool("unshare");
  const script = `mount -t devtmpfs -o ro shoot-test '${MOUNTS[0]}' || exit 97; "$@"`;
  const p = Bun.spawn([unshare, "--mount", "sh", "-c", script, "sh", ...shootArgv(), "server", "--config", fx.config], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const err = await new Response(p.stderr).text();
  const exit = await p.exited;
  if (exit !== 0) throw new Error(`unshare --mount sh -c …: exit ${exit} (97: devtmpfs could not be mounted)\n${err}`);
}

describe("mount points", () => {
  test("a file system mounted in a source is archived by default", async () => {
    await serverWithTmpfs(1);
    expect(run()).toEqual({ code: 30, warnings: [] });
    const names = listedNames();
    for (const m of MOUNTS) expect(names).toContain(name(path.join(m, "sub/on-tmpfs-1.txt")));
    // the tmpfs mounts went with their namespace: the host's mount points are empty
    for (const m of MOUNTS) expect(fs.readdirSync(m)).toEqual([]);
  }, 60_000);

  test("one_file_system: a mount point is archived empty, and what changes below it is not a change", async () => {
    fx.setServer("one_file_system = true");
    await serverWithTmpfs(2);
    const skipped = MOUNTS.map((m) => `${m}: another file system is mounted here, not walked into (one_file_system; archived as an empty directory)`).sort();
    // the first run differs from the last archive by the files on the tmpfs mounts, now left out
    expect(run("server.status.1")).toEqual({ code: 4, warnings: skipped });
    // the second finds only new files on the tmpfs mounts: unchanged
    expect(run()).toEqual({ code: 9, warnings: skipped });
    // answered by the walk on every core (scan-parallel.ts), not by the ordinary scan after it
    expect(scanned()).toMatch(/^scanned \d+ entries in \d+ ms \(\d+ threads?(, statx)?\): nothing changed since /);
    const names = listedNames();
    expect(names).toContain(name(path.join(fx.src, "etc/app.conf")));
    for (const m of MOUNTS) {
      expect(names).toContain(name(m));
      expect(names.filter((n) => n.startsWith(`${name(m)}/`))).toEqual([]);
    }
  }, 60_000);

  test("a pseudo file system is never walked into: /proc as a source is its directory alone", async () => {
    fx.setServer("");
    fs.writeFileSync(fx.config, fs.readFileSync(fx.config, "utf8").replace(/^sources = \[/m, 'sources = ["/proc", '));
    const r = await runShoot(["server", "--config", fx.config]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(run()).toEqual({ code: 4, warnings: ["/proc: proc file system, not walked into (archived as an empty directory)"] });
    const names = listedNames();
    expect(names).toContain("proc");
    expect(names.filter((n) => n.startsWith("proc/"))).toEqual([]);
  }, 60_000);

  test("devtmpfs, which statfs calls a tmpfs, is never walked into either", async () => {
    fx.setServer("");
    await serverWithDevtmpfs();
    expect(run()).toEqual({ code: 4, warnings: [`${MOUNTS[0]}: devtmpfs file system, not walked into (archived as an empty directory)`] });
    const names = listedNames();
    expect(names).toContain(name(MOUNTS[0]!));
    expect(names.filter((n) => n.startsWith(`${name(MOUNTS[0]!)}/`))).toEqual([]);
  }, 60_000);
});
