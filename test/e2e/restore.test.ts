import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { linkStaysInside } from "../../src/core/restore/restore.ts";
import { encodeHeader } from "../../src/core/archive/tar.ts";
import { runShoot } from "../helpers/cli.ts";
import { archivesIn, serverFixture, statusRecords, tempDir, type ServerFixture } from "../helpers/fixture.ts";
import { requireTool } from "../helpers/tools.ts";
import { readListText, writeListText } from "../helpers/lists.ts";

const T = 60_000;
let fx: ServerFixture | undefined;
const extra: string[] = [];
afterEach(() => {
  fx?.cleanup();
  fx = undefined;
  for (const d of extra.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

interface Node {
  type: string;
  mode: number;
  size: number;
  mtimeMs: number;
  content?: string;
  link?: string;
  /** Names that share this inode (hard links), relative. */
  twins?: string[];
}

/** Everything below `root` as it matters for a restore: types, modes, sizes, times, bytes, link targets, hard links. */
function snapshot(root: string): Record<string, Node> {
  const out: Record<string, Node> = {};
  const inodes = new Map<number, string[]>();
  const walk = (rel: string) => {
    const abs = path.join(root, rel);
    const st = fs.lstatSync(abs);
    const node: Node = { type: st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : "file", mode: st.mode & 0o7777, size: st.isFile() ? st.size : 0, mtimeMs: Math.floor(st.mtimeMs) };
    if (st.isFile()) {
      node.content = new Bun.CryptoHasher("sha256").update(fs.readFileSync(abs)).digest("hex");
      if (st.nlink > 1) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), rel]);
    }
    if (st.isSymbolicLink()) {
      node.link = fs.readlinkSync(abs);
      node.mode = 0;
    }
    if (rel !== "") out[rel] = node;
    if (st.isDirectory()) for (const n of fs.readdirSync(abs).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk("");
  for (const names of inodes.values()) for (const n of names) out[n]!.twins = names;
  return out;
}

/** A fixture with the kinds of entries a restore must get right. */
function richFixture(extraServer = ""): ServerFixture {
  const f = serverFixture(extraServer);
  const s = f.src;
  fs.writeFileSync(path.join(s, "home/ann/photo.bin"), crypto.getRandomValues(new Uint8Array(200_000)));
  fs.linkSync(path.join(s, "etc/hosts"), path.join(s, "etc/hosts.hard"));
  fs.symlinkSync("../etc/hosts", path.join(s, "var/hosts-link"));
  fs.symlinkSync("app/app.conf", path.join(s, "etc/app.conf"));
  fs.chmodSync(path.join(s, "etc/app"), 0o750);
  fs.chmodSync(path.join(s, "home/ann/notes.txt"), 0o640);
  fs.chmodSync(path.join(s, "var/www/index.html"), 0o4755);
  fs.utimesSync(path.join(s, "etc/hosts"), new Date("2020-02-02T02:02:02.123Z"), new Date("2020-02-02T02:02:02.123Z"));
  fs.utimesSync(path.join(s, "home/ann/empty"), new Date("2019-01-01T00:00:00Z"), new Date("2019-01-01T00:00:00Z"));
  return f;
}

async function makeArchive(f: ServerFixture): Promise<string> {
  const r = await runShoot(["wrapper", "--config", f.config]);
  expect(r.code).toBe(0);
  return archivesIn(f.backup).at(-1)!;
}

/** The restored copy of the fixture's sources: archive names are absolute paths without the leading "/". */
const restoredSrc = (to: string, f: ServerFixture) => path.join(to, f.src.slice(1));

describe("shoot restore", () => {
  for (const compression of ["gzip", "zstd"]) {
    test(`a whole ${compression} archive restores to a tree equal to the source: content, modes, times, links`, async () => {
      fx = richFixture(`compression = "${compression}"`);
      const name = await makeArchive(fx);
      // zstd through the system's libzstd, from a compiled binary's worker threads too
      const written = statusRecords(path.join(fx.backup, "server.status")).find((r) => r.name === "ARCHIVE_WRITTEN")!;
      expect(written.msg).toMatch(compression === "zstd" ? /\(libzstd 1\.\d+\.\d+\); proven restorable/ : /\(libdeflate\); proven restorable/);
      const to = path.join(fx.root, "restore");
      const r = await runShoot(["restore", "--config", fx.config, name, "--to", to]);
      expect({ code: r.code, out: r.stdout }).toEqual({ code: 0, out: expect.stringContaining("shoot restore: OK: restored 16 entries") });
      // not a terminal: no progress display
      expect(r.stderr).not.toContain("ETA");
      expect(snapshot(restoredSrc(to, fx))).toEqual(snapshot(fx.src));
      expect(fs.readdirSync(to)).toEqual([fx.src.split("/")[1]!]);
    }, T);
  }

  test("selected paths only (with or without the leading /); a hard link brings its target along", async () => {
    fx = richFixture();
    const name = await makeArchive(fx);
    const to = path.join(fx.root, "some");
    const rel = fx.src.slice(1);
    const r = await runShoot(["restore", "--config", fx.config, name, "--to", to, `${fx.src}/home/ann`, `${rel}/etc/hosts.hard`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`also restored, as hard-link targets of what was asked for: ${rel}/etc/hosts`);
    const got = snapshot(restoredSrc(to, fx));
    const want = snapshot(fx.src);
    expect(Object.keys(got).sort()).toEqual(["etc", "etc/hosts", "etc/hosts.hard", "home", "home/ann", "home/ann/empty", "home/ann/notes.txt", "home/ann/photo.bin"]);
    for (const k of ["home/ann/empty", "home/ann/notes.txt", "home/ann/photo.bin", "etc/hosts", "etc/hosts.hard"]) expect(got[k]).toEqual(want[k]!);
    // --quiet: a restore that wrote everything prints nothing; one that did not still says why
    const quiet = path.join(fx.root, "quiet");
    expect(await runShoot(["restore", "--config", fx.config, name, "--to", quiet, "--quiet", `${rel}/etc/hosts`])).toMatchObject({ code: 0, stdout: "", stderr: "" });
    expect(fs.readFileSync(path.join(quiet, rel, "etc/hosts"))).toEqual(fs.readFileSync(path.join(fx.src, "etc/hosts")));
    const again = await runShoot(["restore", "--config", fx.config, name, "--to", quiet, "--quiet", `${rel}/etc/hosts`]);
    expect({ code: again.code, out: again.stdout }).toEqual({ code: 93, out: expect.stringContaining("FAILED 93") });

    const missing = await runShoot(["restore", "--config", fx.config, name, "--to", path.join(fx.root, "none"), "/no/such/path"]);
    expect(missing.code).toBe(91);
    expect(missing.stderr).toContain("not in");
    expect(fs.existsSync(path.join(fx.root, "none"))).toBe(false);
  }, T);

  test("never over existing files without --force; --force replaces a file and a link to outside, never writes through it", async () => {
    fx = richFixture();
    const name = await makeArchive(fx);
    const to = path.join(fx.root, "again");
    expect((await runShoot(["restore", "--config", fx.config, name, "--to", to])).code).toBe(0);
    const hosts = path.join(restoredSrc(to, fx), "etc/hosts");
    fs.rmSync(hosts);
    fs.writeFileSync(hosts, "edited since\n");
    // a link left in the target that points outside it, where the archive has a file
    const outside = path.join(fx.root, "outside.txt");
    fs.writeFileSync(outside, "precious\n");
    const notes = path.join(restoredSrc(to, fx), "home/ann/notes.txt");
    fs.rmSync(notes);
    fs.symlinkSync(outside, notes);

    const refused = await runShoot(["restore", "--config", fx.config, name, "--to", to]);
    expect(refused.code).toBe(93);
    expect(refused.stdout).toContain("nothing was restored");
    expect(fs.readFileSync(hosts, "utf8")).toBe("edited since\n");

    const forced = await runShoot(["restore", "--config", fx.config, name, "--to", to, "--force"]);
    expect(forced.code).toBe(0);
    expect(fs.readFileSync(outside, "utf8")).toBe("precious\n");
    expect(fs.lstatSync(notes).isFile()).toBe(true);
    expect(snapshot(restoredSrc(to, fx))).toEqual(snapshot(fx.src));
  }, T);

  test("a directory link already in the target is never written through, even with --force", async () => {
    fx = richFixture();
    const name = await makeArchive(fx);
    const to = path.join(fx.root, "linked");
    const elsewhere = path.join(fx.root, "elsewhere");
    fs.mkdirSync(elsewhere);
    fs.mkdirSync(path.dirname(restoredSrc(to, fx)), { recursive: true });
    fs.symlinkSync(elsewhere, restoredSrc(to, fx));
    const r = await runShoot(["restore", "--config", fx.config, name, "--to", to, "--force"]);
    expect(r.code).toBe(92);
    expect(r.stdout).toContain("would be written through the existing symbolic link");
    expect(fs.readdirSync(elsewhere)).toEqual([]);
  }, T);

  test("an archive that does not match its checksum is refused before anything is written", async () => {
    fx = richFixture();
    const name = await makeArchive(fx);
    const file = path.join(fx.backup, name);
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 30]! ^= 0xff;
    fs.writeFileSync(file, bytes);
    const to = path.join(fx.root, "bad");
    const r = await runShoot(["restore", "--config", fx.config, name, "--to", to]);
    expect(r.code).toBe(90);
    // the file list vouches for the .md5 file's MD5: the SHA-256 alone was taken, and differs
    expect(r.stderr).toMatch(/its SHA-256 is [0-9a-f]{64}, the server's file list recorded [0-9a-f]{64}, and it cannot be read whole: .*; nothing was restored/);
    expect(fs.existsSync(to)).toBe(false);
  }, T);

  test("the SHA-256 stands for the MD5 only while the .md5 file and the file list give the same MD5", async () => {
    fx = richFixture();
    const name = await makeArchive(fx);
    const file = path.join(fx.backup, name);
    const md5 = new Bun.CryptoHasher("md5").update(fs.readFileSync(file)).digest("hex");
    const header = () => JSON.parse(readListText(`${file}.list`).split("\n")[0]!) as { md5: string; sha256: string };
    const setListMd5 = (value: string) => {
      const text = readListText(`${file}.list`);
      const nl = text.indexOf("\n");
      writeListText(`${file}.list`, JSON.stringify({ ...header(), md5: value }) + text.slice(nl));
    };
    const wrong = md5.replace(/^./, (c) => (c === "0" ? "1" : "0"));
    const restore = (to: string) => runShoot(["restore", "--config", fx!.config, name, "--to", path.join(fx!.root, to)]);

    // the two disagree (either damaged): both digests are taken, and the MD5 named
    fs.writeFileSync(`${file}.md5`, `${wrong}  ${name}\n`);
    const md5FileOff = await restore("a");
    expect(md5FileOff.code).toBe(90);
    expect(md5FileOff.stderr).toContain(`its MD5 is ${md5}, ${name}.md5 says ${wrong}; nothing was restored`);
    fs.writeFileSync(`${file}.md5`, `${md5}  ${name}\n`);
    setListMd5(wrong);
    const listOff = await restore("b");
    expect(listOff.code).toBe(90);
    expect(listOff.stderr).toContain(`its MD5 is ${md5}, the server's file list recorded ${wrong}; nothing was restored`);
    expect(fs.existsSync(path.join(fx.root, "a")) || fs.existsSync(path.join(fx.root, "b"))).toBe(false);

    // both give the same MD5, here a wrong one: the SHA-256 alone is taken (it matches), so the
    // restore goes ahead, where verify, which takes both, fails
    fs.writeFileSync(`${file}.md5`, `${wrong}  ${name}\n`);
    const vouched = await restore("c");
    expect(vouched.code).toBe(0);
    expect(snapshot(restoredSrc(path.join(fx.root, "c"), fx))).toEqual(snapshot(fx.src));
    const v = await runShoot(["verify", "--config", fx.config, name]);
    expect(v.code).toBe(90);
    expect(v.stdout + v.stderr).toContain(`its MD5 is ${md5}`);
  }, T);
});

describe("shoot restore of archives GNU tar made", () => {
  function gnuTar(cwd: string, ...args: string[]): void {
    const r = Bun.spawnSync([requireTool("tar"), ...args], { cwd });
    if (r.exitCode !== 0) throw new Error(`tar ${args.join(" ")}: ${r.stderr.toString()}`);
  }

  test("a name given twice (appended with tar -r): the last one is what is restored, as tar does", async () => {
    const work = tempDir("shoot-twice-");
    extra.push(work);
    fs.mkdirSync(path.join(work, "in/d"), { recursive: true });
    fs.writeFileSync(path.join(work, "in/d/f"), "first\n");
    const archive = path.join(work, "twice.tar");
    gnuTar(path.join(work, "in"), "-cf", archive, "d");
    fs.writeFileSync(path.join(work, "in/d/f"), "second, longer\n");
    fs.chmodSync(path.join(work, "in/d/f"), 0o600);
    gnuTar(path.join(work, "in"), "-rf", archive, "d/f");
    const to = path.join(work, "out");
    const r = await runShoot(["restore", archive, "--no-checksum", "--to", to]);
    expect({ code: r.code, out: r.stdout }).toMatchObject({ code: 0 });
    expect(fs.readFileSync(path.join(to, "d/f"), "utf8")).toBe("second, longer\n");
    expect(fs.statSync(path.join(to, "d/f")).mode & 0o7777).toBe(0o600);
  }, T);

  test("as root, owners and groups of files, directories and links come back as the archive has them", async () => {
    expect(process.getuid?.()).toBe(0); // CI runs as root; owners can only be given back by root
    const work = tempDir("shoot-owners-");
    extra.push(work);
    const inDir = path.join(work, "in");
    fs.mkdirSync(path.join(inDir, "d/sub"), { recursive: true });
    fs.writeFileSync(path.join(inDir, "d/f"), "x\n");
    fs.symlinkSync("f", path.join(inDir, "d/l"));
    // the owner first: chown clears the set-group-ID bit
    fs.chownSync(path.join(inDir, "d/f"), 4242, 4343);
    fs.chmodSync(path.join(inDir, "d/f"), 0o2755);
    fs.chownSync(path.join(inDir, "d/sub"), 4244, 4245);
    fs.lchownSync(path.join(inDir, "d/l"), 4246, 4247);
    const archive = path.join(work, "owners.tar");
    gnuTar(inDir, "--numeric-owner", "-cf", archive, "d");
    const to = path.join(work, "out");
    const r = await runShoot(["restore", archive, "--no-checksum", "--to", to]);
    expect(r.code).toBe(0);
    const owner = (p: string) => {
      const st = fs.lstatSync(path.join(to, p));
      return [st.uid, st.gid, st.mode & 0o7777];
    };
    expect(owner("d/f")).toEqual([4242, 4343, 0o2755]);
    expect(owner("d/sub")[0]).toBe(4244);
    expect(owner("d/sub")[1]).toBe(4245);
    expect(owner("d/l").slice(0, 2)).toEqual([4246, 4247]);
  }, T);
});

describe("shoot restore of a crafted archive made elsewhere", () => {
  /**
   * GNU tar with -P keeps what it would otherwise strip: `../`, absolute names. --transform
   * renames regular entries (r), hard-link targets (h) and symlink targets (s).
   */
  function craft(jail: string): { archive: string; listing: string } {
    const tar = requireTool("tar");
    const work = path.join(jail, "work");
    fs.mkdirSync(path.join(work, "d"), { recursive: true });
    fs.writeFileSync(path.join(work, "ok.txt"), "fine\n");
    fs.writeFileSync(path.join(work, "d/evil.txt"), "evil\n");
    fs.symlinkSync(path.join(jail, "outside"), path.join(work, "link"));
    fs.symlinkSync("../../..", path.join(work, "up"));
    fs.symlinkSync(".", path.join(work, "here"));
    fs.symlinkSync("here/..", path.join(work, "climb"));
    const archive = path.join(jail, "crafted.tar");
    const run = (...args: string[]) => {
      const r = Bun.spawnSync([tar, ...args], { cwd: work });
      if (r.exitCode !== 0) throw new Error(`tar ${args.join(" ")}: ${r.stderr.toString()}`);
    };
    run("-cf", archive, "ok.txt", "link", "up", "here", "climb");
    // an entry written through the link made just before it
    run("-rf", archive, "--transform", "s,^d/,link/,", "d/evil.txt");
    run("-rf", archive, "--transform", "s,^d/,climb/,", "d/evil.txt");
    run("-rf", archive, "-P", "--transform", "s,^d/evil.txt,../escape.txt,", "d/evil.txt");
    run("-rf", archive, "-P", "--transform", `s,^d/evil.txt,${jail}/abs.txt,`, "d/evil.txt");
    // hard links whose targets lie outside: GNU tar will not write those, so raw headers do
    const raw = path.join(jail, "links.tar");
    const header = (name: string, linkTarget: string) => encodeHeader({ name, type: "hardlink", mode: 0o644, uid: 0, gid: 0, size: 0, mtimeNs: 0n, linkTarget });
    fs.writeFileSync(raw, Buffer.concat([header("f2", "../outside/secret"), header("f3", `${jail}/outside/secret`), Buffer.alloc(1024)]));
    run("-Af", archive, raw);
    const listing = Bun.spawnSync([tar, "-tvPf", archive]).stdout.toString();
    return { archive, listing };
  }

  function jailFiles(jail: string): string[] {
    const out: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        out.push(path.relative(jail, p));
        if (e.isDirectory() && !e.isSymbolicLink()) walk(p);
      }
    };
    walk(jail);
    return out.sort();
  }

  /** Every link below `dir` resolves inside it (or nowhere). */
  function linksStayInside(dir: string): string[] {
    const bad: string[] = [];
    const real = fs.realpathSync(dir);
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isSymbolicLink()) {
          let target: string | undefined;
          try {
            target = fs.realpathSync(p);
          } catch {
            target = undefined;
          }
          if (target !== undefined && target !== real && !target.startsWith(`${real}/`)) bad.push(`${p} -> ${target}`);
        } else if (e.isDirectory()) walk(p);
      }
    };
    walk(dir);
    return bad;
  }

  test("`../`, absolute names, links out and entries written through links restore nothing outside DIR", async () => {
    const jail = tempDir("shoot-jail-");
    extra.push(jail);
    fs.mkdirSync(path.join(jail, "outside"));
    fs.writeFileSync(path.join(jail, "outside/secret"), "secret\n");
    const { archive, listing } = craft(jail);
    // the archive really is hostile
    for (const e of ["../escape.txt", `${jail}/abs.txt`, "link -> ", "link/evil.txt", "up -> ../../..", "climb -> here/..", "climb/evil.txt", "f2 link to ../outside/secret", `f3 link to ${jail}/outside/secret`]) expect(listing).toContain(e);
    const before = jailFiles(jail);
    const to = path.join(jail, "dest");

    const noSum = await runShoot(["restore", archive, "--to", to]);
    expect(noSum.code).toBe(90);
    expect(noSum.stderr).toContain("--no-checksum");

    const r = await runShoot(["restore", archive, "--no-checksum", "--to", to]);
    expect(r.code).toBe(92);
    for (const refused of ["../escape.txt", `${jail.slice(1)}/abs.txt`, "link:", "up:", "climb:", "link/evil.txt", "climb/evil.txt", "f2:", "f3:"]) expect(r.stdout).toContain(refused);
    expect(jailFiles(jail)).toEqual([...before, "dest", "dest/here", "dest/ok.txt"].sort());
    expect(fs.readFileSync(path.join(jail, "outside/secret"), "utf8")).toBe("secret\n");
    expect(fs.readFileSync(path.join(to, "ok.txt"), "utf8")).toBe("fine\n");
    expect(linksStayInside(to)).toEqual([]);

    // links that point out may be asked for: made last, nothing is written through them
    const to2 = path.join(jail, "dest2");
    const r2 = await runShoot(["restore", archive, "--no-checksum", "--allow-outside-links", "--to", to2]);
    expect(r2.code).toBe(92);
    expect(fs.readlinkSync(path.join(to2, "link"))).toBe(path.join(jail, "outside"));
    expect(fs.readdirSync(path.join(jail, "outside"))).toEqual(["secret"]);
    expect(fs.existsSync(path.join(jail, "escape.txt"))).toBe(false);
    expect(fs.existsSync(path.join(jail, "abs.txt"))).toBe(false);
  }, T);

  test("a link's target is followed through the archive's other links, as the kernel would", () => {
    const noLinks = () => undefined;
    expect(linkStaysInside(["a", "l"], "../b", false, noLinks)).toBe(true);
    expect(linkStaysInside(["l"], "../b", false, noLinks)).toBe(false);
    expect(linkStaysInside(["l"], "/etc", false, noLinks)).toBe(false);
    expect(linkStaysInside(["l"], "/etc", true, noLinks)).toBe(true);
    // here -> . ; climb -> here/.. : lexically ".", really the parent of the target
    const links = new Map([["here", "."], ["deep", "a/b/c"]]);
    expect(linkStaysInside(["climb"], "here/..", false, (k) => links.get(k))).toBe(false);
    expect(linkStaysInside(["x"], "deep/../..", false, (k) => links.get(k))).toBe(true);
    // a loop is never "inside"
    const loop = new Map([["p", "q"], ["q", "p"]]);
    expect(linkStaysInside(["x"], "p/f", false, (k) => loop.get(k))).toBe(false);
  });
});
