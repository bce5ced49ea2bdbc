import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runShoot } from "../helpers/cli.ts";
import { archivesIn, serverFixture, type ServerFixture } from "../helpers/fixture.ts";
import { listTree } from "../helpers/client.ts";
import { compressedList, readListText, writeListText } from "../helpers/lists.ts";
import { requireTool } from "../helpers/tools.ts";

const T = 60_000;
let fx: ServerFixture | undefined;
afterEach(() => {
  fx?.cleanup();
  fx = undefined;
});

function sh(argv: string[], opts: { cwd?: string; stdin?: Uint8Array } = {}): Buffer {
  const r = Bun.spawnSync(argv, { cwd: opts.cwd, stdin: opts.stdin });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** A server with an archive of several gzip members (the writer cuts the stream into pieces). */
async function serverWithArchive(): Promise<{ name: string; file: string }> {
  fx = serverFixture();
  const lines = Array.from({ length: 60_000 }, (_, i) => `line ${i} ${(i * 7919) % 104729}`).join("\n");
  fs.writeFileSync(path.join(fx.src, "var/www/big.txt"), lines);
  fs.writeFileSync(path.join(fx.src, "home/ann/random.bin"), crypto.getRandomValues(new Uint8Array(60_000)));
  const r = await runShoot(["wrapper", "--config", fx.config]);
  expect(r.code).toBe(0);
  const name = archivesIn(fx.backup).at(-1)!;
  return { name, file: path.join(fx.backup, name) };
}

/** What `md5sum` says about a file, as its .md5 file: a checksum file rewritten to match. */
function rewriteMd5(file: string): void {
  const md5sum = requireTool("md5sum");
  fs.writeFileSync(`${file}.md5`, sh([md5sum, "--", path.basename(file)], { cwd: path.dirname(file) }));
}

/** Rewrite the file list's header to describe the archive as it is now (a forger who knew the format). */
function rewriteListHeader(file: string): void {
  const bytes = fs.readFileSync(file);
  const text = readListText(`${file}.list`);
  const nl = text.indexOf("\n");
  const header = JSON.parse(text.slice(0, nl));
  header.size = bytes.length;
  header.md5 = new Bun.CryptoHasher("md5").update(bytes).digest("hex");
  header.sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
  writeListText(`${file}.list`, JSON.stringify(header) + text.slice(nl));
}

async function verify(...args: string[]): Promise<{ code: number; out: string }> {
  const r = await runShoot(["verify", "--config", fx!.config, ...args]);
  return { code: r.code, out: r.stdout + r.stderr };
}

describe("shoot verify", () => {
  test("good archives: checksums, and --deep reads every entry, matches the file list, times the read, leaves nothing", async () => {
    const { name } = await serverWithArchive();
    const before = listTree(fx!.root);
    const plain = await verify();
    expect(plain.code).toBe(0);
    expect(plain.out).toContain(`OK     server test: ${name}`);
    const deep = await verify("--deep");
    expect(deep.code).toBe(0);
    expect(deep.out).toMatch(/all 1[0-9] entries match the server's file list/);
    expect(deep.out).toMatch(/restore drill: read and decompressed [\d.]+ \w+ in 1[0-9] entries in [\d.]+m?s/);
    expect(deep.out).not.toContain("ETA");
    // --quiet: a clean check prints nothing at all
    expect(await verify("--deep", "--quiet")).toEqual({ code: 0, out: "" });
    expect(listTree(fx!.root)).toEqual(before);
    // a list that names no archive at all is a usage problem of its own
    fs.rmSync(fx!.backup, { recursive: true });
    fs.mkdirSync(fx!.backup);
    expect((await verify()).code).toBe(91);
  }, T);

  test("--deep on a tree of names that sort in every way: the archive's order is the list's, all entries match", async () => {
    fx = serverFixture("compression = \"zstd\"", {});
    const names = ["b", "b-d", "b.d", "b0", "B", "b/c", "b/c/d", "é", "日本語", "a\\b", "q\"uote", "sp ace", "tab\tname", "new\nline", "x".repeat(150), `${"deep/".repeat(60)}leaf`];
    for (const n of names) {
      const file = path.join(fx.src, "t", n);
      if (n === "b" || n === "b/c") continue;
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, n);
    }
    fs.mkdirSync(path.join(fx.src, "t/empty"));
    fs.symlinkSync("b.d", path.join(fx.src, "t/link"));
    fs.linkSync(path.join(fx.src, "t/b0"), path.join(fx.src, "t/hard"));
    const r = await runShoot(["wrapper", "--config", fx.config]);
    expect(r.code).toBe(0);
    const name = archivesIn(fx.backup).at(-1)!;
    const entries = readListText(path.join(fx.backup, `${name}.list`)).split("\n").filter(Boolean).length - 1;
    expect(entries).toBeGreaterThan(names.length + 60);
    const deep = await verify("--deep");
    expect(deep.code).toBe(0);
    expect(deep.out).toContain(`all ${entries} entries match the server's file list`);
  }, T);

  test("a gzip stream truncated behind an intact header, its checksum file rewritten to match, fails --deep", async () => {
    const { name, file } = await serverWithArchive();
    const bytes = fs.readFileSync(file);
    // the gzip header and the first members stay intact; the stream just stops
    fs.writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    expect(bytes.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    rewriteMd5(file);
    // the server's file list still knows the real checksum: even the plain check sees it
    const plain = await verify();
    expect(plain.code).toBe(90);
    expect(plain.out).toContain("the server's file list recorded");
    // a forger (or bit rot) that rewrites the list header too passes the checksums, not the read
    rewriteListHeader(file);
    expect((await verify()).code).toBe(0);
    // it matches its checksums and does not read: damaged, and where
    const deep = await verify("--deep");
    expect(deep.code).toBe(95);
    expect(deep.out).toContain(`FAILED server test: ${name}`);
    expect(deep.out).toMatch(/the archive is truncated: the gzip stream ends early, at byte \d+ of the file/);
    // --quiet names the damaged archive all the same
    const quiet = await verify("--deep", "--quiet");
    expect(quiet.code).toBe(95);
    expect(quiet.out).toContain(`FAILED server test: ${name}`);
    expect(quiet.out).toContain("shoot verify: FAILED 95");
  }, T);

  test("a tampered archive whose checksum file was rewritten to match is caught through the server's file list", async () => {
    const gzip = requireTool("gzip");
    const tar = requireTool("tar");
    const { file } = await serverWithArchive();
    // same length, other content: only the checksums can tell
    const plainTar = sh([gzip, "-dc", file]);
    const at = plainTar.indexOf("answer = 42");
    expect(at).toBeGreaterThan(0);
    plainTar.write("answer = 43", at);
    fs.writeFileSync(file, sh([gzip, "-c"], { stdin: plainTar }));
    rewriteMd5(file);
    const sameSize = await verify();
    expect(sameSize.code).toBe(90);
    expect(sameSize.out).toMatch(/its MD5 is [0-9a-f]{32}, the server's file list recorded [0-9a-f]{32}/);

    // a file grown inside the archive, rebuilt by GNU tar in the list's order, checksum file and
    // list header both rewritten: the list's entries tell
    const work = path.join(fx!.root, "unpacked");
    fs.mkdirSync(work);
    sh([tar, "-xzf", file, "-C", work]);
    fs.appendFileSync(path.join(work, fx!.src.slice(1), "etc/hosts"), "10.6.6.6 evil.example\n");
    const listed = readListText(`${file}.list`).split("\n").slice(1).filter(Boolean).map((l) => JSON.parse(l)[0] as string);
    const names = path.join(fx!.root, "names");
    const rebuild = (order: string[]) => {
      fs.writeFileSync(names, order.map((n) => `${n}\n`).join(""));
      sh([tar, "--format=pax", "--no-recursion", "-czf", file, "-C", work, "-T", names]);
      rewriteMd5(file);
      rewriteListHeader(file);
    };
    rebuild(listed);
    expect((await verify()).code).toBe(0);
    const deep = await verify("--deep");
    expect(deep.code).toBe(90);
    expect(deep.out).toMatch(/1 files differ in size from the file list: \/[^ ]+\/etc\/hosts \(20 → 42 bytes\)/);
    expect(deep.out).not.toContain("not in the order");

    // rebuilt with var/ before home/: the order tells, and the entries before it were compared
    const under = (dir: string) => listed.filter((n) => n.startsWith(`${fx!.src.slice(1)}/${dir}`));
    rebuild([listed[0]!, ...under("etc"), ...under("var"), ...under("home")]);
    const reordered = await verify("--deep");
    expect(reordered.code).toBe(90);
    expect(reordered.out).toMatch(/its entries are not in the order of the server's file list, as they would be had the server written it \(\/[^ ]+\/home comes after \/[^ ]+\/var\/www\/index\.html\); compared up to there/);
    expect(reordered.out).toMatch(/1 files differ in size from the file list: \/[^ ]+\/etc\/hosts/);
    expect(reordered.out).not.toContain("listed entries are not in the archive");
  }, T);

  test("the server's list is stored compressed; a plain one (an earlier version's) still checks, a damaged one is named", async () => {
    const { file } = await serverWithArchive();
    const stored = fs.readFileSync(`${file}.list`);
    expect([stored[0], stored[1]]).toEqual([0x1f, 0x8b]);
    const text = readListText(`${file}.list`);
    writeListText(`${file}.list`, text, true);
    const plain = await verify("--deep");
    expect(plain.code).toBe(0);
    expect(plain.out).toContain("entries match the server's file list");
    const bytes = compressedList(text);
    bytes[bytes.readUInt32LE(16) + 30]! ^= 0xff; // in the member after the header's
    fs.writeFileSync(`${file}.list`, bytes);
    const damaged = await verify("--deep");
    expect(damaged.code).toBe(90);
    expect(damaged.out).toContain(`its file list ${path.basename(file)}.list is damaged: it cannot be read to its end: ${file}.list: the compressed block at byte ${bytes.readUInt32LE(16)}`);
  }, T);

  test("a file that changed while the archive was written differs from the list only as its run warned", async () => {
    const { file } = await serverWithArchive();
    const hosts = `${fx!.src.slice(1)}/etc/hosts`;
    // the list records the scan; say the file was 25 bytes then (the archive holds what was read)
    const lines = readListText(`${file}.list`).split("\n");
    const i = lines.findIndex((l) => l.startsWith(`[${JSON.stringify(hosts)},`));
    const entry = JSON.parse(lines[i]!);
    entry[5] = 25;
    lines[i] = JSON.stringify(entry);
    writeListText(`${file}.list`, lines.join("\n"));
    const unexplained = await verify("--deep");
    expect(unexplained.code).toBe(90);
    expect(unexplained.out).toContain(`/${hosts} (25 → 20 bytes)`);

    const status = path.join(fx!.backup, "server.status");
    const run = (JSON.parse(fs.readFileSync(status, "utf8").trim().split("\n").at(-1)!) as { run: string }).run;
    fs.appendFileSync(status, `${JSON.stringify({ v: 1, t: new Date().toISOString(), code: 83, name: "FILE_CHANGED", msg: `/${hosts}: changed since the scan (size 25 → 20); archived as found`, role: "server", run })}\n`);
    const explained = await verify("--deep");
    expect(explained.code).toBe(0);
    expect(explained.out).toContain("1 entries differ from the file list as the run that made it warned");
  }, T);

  test("copies on a backup host (no file list): checksum, and --deep catches a truncated copy", async () => {
    const { name, file } = await serverWithArchive();
    const dest = path.join(fx!.root, "copies");
    fs.mkdirSync(path.join(dest, "web1"), { recursive: true });
    fs.copyFileSync(file, path.join(dest, "web1", name));
    fs.copyFileSync(`${file}.md5`, path.join(dest, "web1", `${name}.md5`));
    fs.appendFileSync(fx!.config, `\n[client]\ndest_dir = ${JSON.stringify(dest)}\n[[client.source]]\nname = "web1"\nremote = ${JSON.stringify(fx!.backup)}\n`);
    const good = await verify("--deep");
    expect(good.code).toBe(0);
    expect(good.out).toContain(`OK     client web1: ${name}`);
    expect(good.out).toContain("no file list beside it");

    const copy = path.join(dest, "web1", name);
    fs.writeFileSync(copy, fs.readFileSync(copy).subarray(0, 4000));
    rewriteMd5(copy);
    const bad = await verify("--deep", copy);
    expect(bad.code).toBe(95);
    expect(bad.out).toContain("the archive is truncated");
  }, T);
});
