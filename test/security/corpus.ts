/**
 * The hostile archives of the differential suite, built byte by byte (test/helpers/tar-builder.ts)
 * against a sandbox whose canaries they aim at (test/helpers/sandbox.ts). Each has a class (what
 * it tries), and where it matters what shoot must answer: the exit code, or names that must or
 * must not be made. Every archive also goes through GNU tar and bsdtar and is compared with
 * what they make (differential.test.ts).
 */
import zlib from "node:zlib";
import * as B from "../helpers/tar-builder.ts";

export type HostileClass =
  | "one name, two kinds" | "links" | "hard links" | "special files" | "names" | "dialects" | "parser strictness" | "damage" | "bombs";

export interface Hostile {
  name: string;
  cls: HostileClass;
  /** The archive file's bytes (compressed as it says). */
  bytes: Uint8Array;
  compression: B.Compression;
  /** Exit codes shoot restore may end with (any named one when not given). */
  codes?: number[];
  /** Names below the target that must be made (as root and as the unprivileged user). */
  made?: string[];
  /** Names below the target that must not be made. */
  notMade?: string[];
  /** Restore into a small tmpfs of this size (the bombs), with this many inodes. */
  tmpfs?: { size: string; inodes?: number };
}

const OK = [0];
const UNSAFE = 92;
const DAMAGED = 95;
const CLASH = 96;
const LEFT_OUT = 97;
const NO_SPACE = 98;

/** The entries of one kind under `name` (the link points at the unprivileged user's canary). */
function kindOf(kind: "file" | "dir" | "symlink" | "hardlink" | "fifo", name: string): Uint8Array[] {
  switch (kind) {
    case "file": return [B.file(name, "the file\n", { mode: 0o6777, mtime: 0 })];
    case "dir": return [B.dir(name, { mode: 0o6777, mtime: 0 })];
    case "symlink": return [B.symlink(name, "../canary/setuid-me", { mtime: 0 })];
    case "hardlink": return [B.hardlink(name, "t")];
    case "fifo": return [B.entry({ name, type: "6", mode: 0o6777 })];
  }
}

function twoKinds(): Hostile[] {
  const out: Hostile[] = [];
  const kinds = ["file", "dir", "symlink", "hardlink", "fifo"] as const;
  for (let i = 0; i < kinds.length; i++) {
    for (let j = i + 1; j < kinds.length; j++) {
      for (const [a, b] of [[kinds[i]!, kinds[j]!], [kinds[j]!, kinds[i]!]] as const) {
        // then an entry below the name: made through whatever is there last, if anything
        const bytes = B.tar(B.file("t", "link target\n"), ...kindOf(a, "n"), ...kindOf(b, "n"), B.file("n/below", "below\n", { mode: 0o6777 }), B.file("after", "after\n"));
        const sameKind = (a === "file" && b === "hardlink") || (a === "hardlink" && b === "file");
        out.push({ name: `${a}-then-${b}`, cls: "one name, two kinds", bytes, compression: "none", made: ["t", "after"], notMade: ["n/below", ...(sameKind ? [] : ["n"])] });
      }
    }
  }
  // three kinds, in some orders; the reported exploit (a directory's mode and time set through a link of the same name)
  const three = (order: Array<"file" | "dir" | "symlink">) => B.tar(...order.flatMap((k) => kindOf(k, "x")), B.file("x/f", "f\n"), B.file("ok", "ok\n"));
  for (const order of [["file", "dir", "symlink"], ["symlink", "dir", "file"], ["dir", "symlink", "file"]] as const) {
    out.push({ name: `three-${order.join("-")}`, cls: "one name, two kinds", bytes: three([...order]), compression: "none", codes: [CLASH], made: ["ok"], notMade: ["x", "x/f"] });
  }
  for (const [n, parts] of [
    ["dir-6777-then-link-out", [B.dir("d", { mode: 0o6777, mtime: 0 }), B.symlink("d", "../canary/setuid-me")]],
    ["link-out-then-dir-6777", [B.symlink("d", "../canary/setuid-me"), B.dir("d", { mode: 0o6777, mtime: 0 })]],
    ["link-out-dir-then-dir", [B.symlink("d", "../canary/dir"), B.dir("d", { mode: 0o777, mtime: 0 }), B.file("d/inner", "overwritten\n")]],
    ["dir-then-link-to-open", [B.dir("d", { mode: 0o755 }), B.file("d/x", "x\n"), B.symlink("d", "../canary/open")]],
    ["file-then-child", [B.file("n", "file\n"), B.file("n/x", "x\n")]],
    ["child-then-file", [B.file("n/x", "x\n"), B.file("n", "file\n")]],
  ] as const) {
    out.push({ name: n, cls: "one name, two kinds", bytes: B.tar(...parts, B.file("ok", "ok\n")), compression: "none", made: ["ok"], notMade: ["d/inner", "d/x", "n/x"] });
  }
  return out;
}

function links(sandbox: string): Hostile[] {
  const c = `${sandbox}/canary`;
  const t = (...p: Uint8Array[]) => B.tar(...p, B.file("ok", "ok\n"));
  const cases: Array<[string, Uint8Array, Partial<Hostile>]> = [
    ["out-then-write", t(B.symlink("l", "../canary"), B.file("l/new", "x\n"), B.file("l/file", "x\n")), { codes: [UNSAFE], notMade: ["l"] }],
    ["absolute-then-write", t(B.symlink("l", c), B.file("l/new", "x\n")), { codes: [UNSAFE], notMade: ["l"] }],
    ["write-then-out", t(B.file("l/new", "x\n"), B.symlink("l", "../canary")), { codes: [UNSAFE] }],
    ["inside-then-write", t(B.dir("sub"), B.symlink("l", "sub"), B.file("l/x", "x\n")), { codes: [UNSAFE], made: ["sub", "l"], notMade: ["sub/x"] }],
    ["chain-out", t(B.symlink("a", "b"), B.symlink("b", "c"), B.symlink("c", "../canary")), { codes: [UNSAFE] }],
    ["chain-climb", t(B.dir("d/e", { mode: 0o755 }), B.symlink("d/e/up", "../.."), B.symlink("esc", "d/e/up/..")), { codes: [UNSAFE], notMade: ["esc"] }],
    ["climb-after-here", t(B.symlink("here", "."), B.symlink("climb", "here/..")), { codes: [UNSAFE], notMade: ["climb"] }],
    ["order-game", t(B.symlink("a", "x/.."), B.symlink("x", ".")), { codes: [UNSAFE], notMade: ["a"] }],
    ["loop", t(B.symlink("p", "q"), B.symlink("q", "p"), B.file("p/x", "x\n")), { codes: [UNSAFE] }],
    ["to-root", t(B.symlink("r", "/"), B.file("r/tmp/escape", "x\n")), { codes: [UNSAFE], notMade: ["r"] }],
    ["deep-relative-out", t(B.dir("a/b/c"), B.symlink("a/b/c/l", "../../../../canary/setuid-me")), { codes: [UNSAFE], notMade: ["a/b/c/l"] }],
    ["inside-ok", t(B.dir("sub"), B.file("sub/f", "f\n"), B.symlink("sub/l", "f"), B.symlink("top", "sub/../ok")), { codes: OK, made: ["sub/l", "top"] }],
    ["dotdot-name", t(B.file("../canary/open/escape", "x\n"), B.file("a/../../escape", "x\n")), { codes: [UNSAFE] }],
    ["absolute-name", t(B.file(`${c}/open/abs`, "x\n"), B.dir(`${c}/dir`, { mode: 0o777 })), { codes: [UNSAFE] }],
  ];
  return cases.map(([name, bytes, more]) => ({ name, cls: "links" as const, bytes, compression: "none" as const, made: ["ok"], ...more }));
}

function hardLinks(sandbox: string): Hostile[] {
  const c = `${sandbox}/canary`;
  const t = (...p: Uint8Array[]) => B.tar(...p, B.file("ok", "ok\n"));
  const cases: Array<[string, Uint8Array, Partial<Hostile>]> = [
    ["to-outside-relative", t(B.hardlink("h", "../canary/file")), { codes: [UNSAFE], notMade: ["h"] }],
    ["to-outside-absolute", t(B.hardlink("h", `${c}/setuid-me`)), { codes: [UNSAFE], notMade: ["h"] }],
    ["to-symlink", t(B.symlink("s", "../canary/setuid-me"), B.hardlink("h", "s"), B.file("h", "x\n")), { notMade: ["s"] }],
    ["to-inside-symlink", t(B.file("f", "f\n"), B.symlink("s", "f"), B.hardlink("h", "s")), { codes: [UNSAFE], made: ["f", "s"], notMade: ["h"] }],
    ["to-directory", t(B.dir("d"), B.hardlink("h", "d")), { codes: [UNSAFE], notMade: ["h"] }],
    ["through-link", t(B.dir("sub"), B.file("sub/f", "f\n"), B.symlink("l", "sub"), B.hardlink("h", "l/f")), { codes: [UNSAFE], notMade: ["h"] }],
    ["through-outside-link", t(B.symlink("l", "../canary"), B.hardlink("h", "l/file")), { codes: [UNSAFE], notMade: ["h"] }],
    ["chain", t(B.file("f", "f\n", { mode: 0o640 }), B.hardlink("h1", "f"), B.hardlink("h2", "h1")), { codes: OK, made: ["f", "h1", "h2"] }],
    ["forward", t(B.hardlink("h", "f"), B.file("f", "f\n")), { codes: [LEFT_OUT], made: ["f"], notMade: ["h"] }],
    ["to-nothing", t(B.hardlink("h", "nothing")), { codes: [LEFT_OUT], notMade: ["h"] }],
    ["then-overwritten", t(B.file("f", "first\n"), B.hardlink("h", "f"), B.file("h", "second\n")), { codes: OK, made: ["f", "h"] }],
    ["with-size", t(B.file("f", "f\n"), B.entry({ name: "h", type: "1", linkname: "f", size: 512, data: B.header({ name: "inner", size: 0 }) })), { codes: OK, made: ["h", "inner"] }],
  ];
  return cases.map(([name, bytes, more]) => ({ name, cls: "hard links" as const, bytes, compression: "none" as const, made: ["ok"], ...more }));
}

function specials(): Hostile[] {
  const t = (...p: Uint8Array[]) => B.tar(...p, B.file("ok", "ok\n"));
  const cases: Array<[string, Uint8Array]> = [
    ["char-device", t(B.entry({ name: "null", type: "3", mode: 0o666, devmajor: 1, devminor: 3 }))],
    ["block-device", t(B.entry({ name: "sda", type: "4", mode: 0o666, devmajor: 8, devminor: 0 }))],
    ["fifo", t(B.entry({ name: "pipe", type: "6", mode: 0o644 }))],
    ["unknown-type", t(B.entry({ name: "u", type: "Z", data: "zzz\n" }))],
    ["multivolume", t(B.entry({ name: "m", type: "M", magic: "gnu", data: "continued\n" }))],
    ["old-long-name", t(B.entry({ name: "n", type: "N", magic: "gnu", data: "names\n" }))],
  ];
  return cases.map(([name, bytes]) => ({ name, cls: "special files" as const, bytes, compression: "none" as const, codes: [LEFT_OUT], made: ["ok"] }));
}

function names(): Hostile[] {
  const deep: Uint8Array[] = [];
  const path = `d${"/d".repeat(9_999)}`;
  const enc = new TextEncoder();
  for (let i = 1; i <= 10_000; i++) deep.push(B.pax([["path", enc.encode(path.slice(0, 2 * i - 1))]]), B.dir("d"));
  deep.push(B.pax([["path", `${path}/leaf`]]), B.file("leaf", "deep\n"));
  const t = (...x: Uint8Array[]) => B.tar(...x, B.file("ok", "ok\n"));
  const cases: Array<[string, Uint8Array, Partial<Hostile>]> = [
    // GNU tar makes the first 2,048 levels (names up to PATH_MAX) and fails on the rest
    ["ten-thousand-levels", B.tar(...deep), { codes: [LEFT_OUT], made: ["d/d/d/d"] }],
    ["over-path-max", t(B.pax([["path", `${"x/".repeat(2200)}f`]]), B.file("f", "long\n")), { codes: [LEFT_OUT], made: ["ok"] }],
    ["component-over-name-max", t(B.pax([["path", `a/${"c".repeat(300)}`]]), B.file("f", "long\n")), { codes: [LEFT_OUT], made: ["ok"] }],
    ["control-bytes", t(B.file("a\u001b[31mred\u0007\r\n", "x\n"), B.dir("tab\there")), { codes: OK, made: ["a\u001b[31mred\u0007\r\n", "tab\there", "ok"] }],
    ["not-utf8", t(B.file(new Uint8Array([0x61, 0xff, 0x62]), "x\n")), { codes: [LEFT_OUT], made: ["ok"] }],
    ["empty-name", t(B.pax([["path", ""]]), B.file("x", "x\n")), { made: ["ok"] }],
    ["dot-entry", t(B.dir(".", { mode: 0o777, mtime: 0 }), B.dir("./", { mode: 0o700 }), B.file("./a//b", "x\n")), { made: ["a/b", "ok"] }],
    ["nul-in-pax-path", t(B.pax([["path", "ab\u0000cd"]]), B.file("x", "x\n")), { made: ["ab", "ok"] }],
  ];
  return cases.map(([name, bytes, more]) => ({ name, cls: "names" as const, bytes, compression: "none" as const, ...more }));
}

/** A file with holes: data at a few places of a larger size. */
function holey(): { full: Uint8Array; map: B.SparseMap } {
  const full = new Uint8Array(300_000);
  const map: Array<[number, number]> = [];
  for (let i = 0; i < 7; i++) {
    const at = i * 40_000 + 1000;
    for (let j = 0; j < 3000; j++) full[at + j] = (i * 31 + j) & 0xff;
    map.push([at, 3000]);
  }
  map.push([full.length, 0]);
  return { full, map };
}

function dialects(): Hostile[] {
  const { full, map } = holey();
  const enc = new TextEncoder();
  const cases: Array<[string, Uint8Array]> = [
    ["v7", B.tar(B.entry({ name: "vd/", magic: "v7", mode: 0o750, mtime: 1_000_000 }), B.file("vd/f", "v7 file\n", { magic: "v7", mode: 0o640 }))],
    ["ustar-prefix", B.tar(B.file(`${"n".repeat(90)}`, "prefixed\n", { prefix: `${"p".repeat(120)}/q` }))],
    ["gnu-long-name-and-link", B.tar(B.gnuLong("L", `${"long/".repeat(40)}file`), B.file("ignored", "long\n", { magic: "gnu" }), B.gnuLong("K", `${"long/".repeat(40)}file`), B.gnuLong("L", "longlink"), B.symlink("x", "ignored", { magic: "gnu" }))],
    ["old-gnu-sparse", B.tar(B.oldGnuSparse("sparse", full, map, { mode: 0o640 }))],
    ["old-gnu-sparse-many", B.tar(B.oldGnuSparse("many", new Uint8Array(40 * 1024).fill(3), [...Array.from({ length: 30 }, (_, i): [number, number] => [i * 1024, 512]), [40 * 1024, 0]]))],
    ["pax-sparse-0.0", B.tar(B.paxSparse("0.0", "s00", full, map))],
    ["pax-sparse-0.1", B.tar(B.paxSparse("0.1", "s01", full, map))],
    ["pax-sparse-1.0", B.tar(B.paxSparse("1.0", "dir/s10", full, map))],
    ["pax-overrides", B.tar(B.pax([["path", "renamed/été ü"], ["mtime", "1234567890.123456789"], ["uid", "4242"], ["gid", "4343"]]), B.file("orig", "pax\n"), B.pax([["linkpath", "renamed/été ü"]]), B.symlink("l", "x"), B.pax([["size", "5"]]), B.file("sized", "12345", { size: 0 }))],
    ["pax-global", B.tar(B.pax([["mtime", "1000000000"], ["uid", "77"]], "g"), B.file("a", "a\n"), B.pax([["mtime", "1200000000"]]), B.file("b", "b\n"), B.pax([], "g"), B.file("c", "c\n"))],
    ["pax-global-path", B.tar(B.pax([["path", "gp"]], "g"), B.file("a", "first\n"), B.file("b", "second\n"))],
    ["base-256", B.tar(B.file("b", "base 256\n", { size: B.base256(9, 12), mtime: B.base256(1_500_000_000, 12), uid: B.base256(3_000_000, 8) }), B.file("neg", "x\n", { mtime: B.base256(-100, 12) }))],
    ["signed-checksum", B.tar(B.file(enc.encode("é"), "x\n", { checksum: "signed" }))],
    ["dumpdir-and-label", B.tar(B.entry({ name: "LABEL", type: "V", magic: "gnu" }), B.entry({ name: "dd/", type: "D", magic: "gnu", data: "Nfoo\0\0" }), B.file("dd/f", "f\n"))],
    ["dir-with-size", B.tar(B.entry({ name: "d/", type: "5", size: 512, mode: 0o700, data: B.header({ name: "inner", size: 0 }) }), B.file("after", "x\n"))],
    ["appended-twice", B.tar(B.file("f", "one\n", { mode: 0o600 }), B.dir("d", { mode: 0o700 }), B.file("f", "two two\n", { mode: 0o640 }), B.dir("d", { mode: 0o750 }))],
  ];
  return cases.map(([name, bytes], i) => ({ name, cls: "dialects" as const, bytes, compression: (["none", "gzip", "zstd"] as const)[i % 3]!, codes: OK }));
}

function strictness(): Hostile[] {
  const te = new TextEncoder();
  const rec = (s: string) => te.encode(s);
  const cases: Array<[string, Uint8Array]> = [
    ["pax-size-hex", B.tar(B.pax([["size", "0x5"]]), B.file("a", "data\n"))],
    ["pax-size-negative", B.tar(B.pax([["size", "-5"]]), B.file("a", "data\n"))],
    ["pax-size-plus", B.tar(B.pax([["size", "+5"]]), B.file("a", "data\n"))],
    ["pax-size-float", B.tar(B.pax([["size", "5.0"]]), B.file("a", "data\n"))],
    ["pax-uid-space", B.tar(B.pax([["uid", " 5"]]), B.file("a", "data\n"))],
    ["pax-no-newline", B.tar(B.pax(rec("12 path=abc")), B.file("a", "data\n"))],
    ["pax-length-beyond", B.tar(B.pax(rec("99 path=abc\n")), B.file("a", "data\n"))],
    ["octal-garbage", B.tar(B.file("g", "data\n", { size: rec("00000000005x") }))],
    ["base-64", B.tar(B.file("g", "data\n", { size: rec("-AAAAAAAAAF\u0000") }))],
    ["lone-zero-block", B.concat([B.file("a", "a\n"), new Uint8Array(512), B.file("b", "b\n"), new Uint8Array(10_240)])],
    ["extended-header-at-end", B.tar(B.file("a", "a\n"), B.pax([["path", "nothing"]]))],
    ["sparse-blocks-mismatch", B.tar(B.pax([["GNU.sparse.size", "2000"], ["GNU.sparse.numblocks", "2"], ["GNU.sparse.map", "0,10,1000,10"]]), B.file("s", "x".repeat(30)))],
    ["sparse-past-size", B.tar(B.pax([["GNU.sparse.size", "10"], ["GNU.sparse.numblocks", "2"], ["GNU.sparse.map", "0,5,8,5"]]), B.file("s", "x".repeat(10)))],
    ["sparse-no-numblocks", B.tar(B.pax([["GNU.sparse.size", "100"], ["GNU.sparse.map", "0,10"]]), B.file("s", "x".repeat(10)))],
    ["sparse-numblocks-after-map", B.tar(B.pax([["GNU.sparse.size", "100"], ["GNU.sparse.map", "0,10"], ["GNU.sparse.numblocks", "1"]]), B.file("s", "x".repeat(10)))],
    ["sparse-1.0-bad-map", B.tar(B.pax([["GNU.sparse.major", "1"], ["GNU.sparse.minor", "0"], ["GNU.sparse.name", "s"], ["GNU.sparse.realsize", "10"]]), B.file("GNUSparseFile.0/s", B.concat([rec("1\n0x\n5\n"), B.pad(7), rec("xxxxx")])))],
    ["sparse-version-2", B.tar(B.pax([["GNU.sparse.major", "2"], ["GNU.sparse.minor", "0"], ["GNU.sparse.name", "s"], ["GNU.sparse.realsize", "10"]]), B.file("GNUSparseFile.0/s", "x".repeat(10)), B.file("ok", "ok\n"))],
    ["checksum-wrong", B.tar(B.file("c", "x\n", { checksum: 12345 }))],
  ];
  return cases.map(([name, bytes]) => ({ name, cls: "parser strictness" as const, bytes, compression: "none" as const, codes: name === "sparse-version-2" ? [LEFT_OUT] : [DAMAGED] }));
}

/** The entries of a plain archive of a few files to damage. */
function victim(): Uint8Array {
  const big = new Uint8Array(200_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  return B.concat([B.dir("d"), B.file("d/a", "alpha\n".repeat(100)), B.file("d/big", big), B.file("d/z", "zulu\n")]);
}

function damage(): Hostile[] {
  const body = victim();
  const t = B.tar(body);
  const flip = (b: Uint8Array, at: number, x = 0x20) => {
    const c = b.slice();
    c[at]! ^= x;
    return c;
  };
  const gz = B.compress(t, "gzip");
  const zs = B.compress(t, "zstd");
  const zsSum = zlib.zstdCompressSync(t, { params: { [zlib.constants.ZSTD_c_checksumFlag]: 1 } });
  const cases: Array<[string, Uint8Array, B.Compression]> = [
    ["tar-cut-in-header", t.subarray(0, 1024 + 100), "none"],
    ["tar-cut-in-content", t.subarray(0, 1536 + 300), "none"],
    ["tar-no-end-blocks", body, "none"],
    ["tar-one-end-block", B.concat([body, new Uint8Array(512)]), "none"],
    ["tar-header-byte", flip(t, 512 + 20), "none"],
    ["tar-size-field", flip(t, 512 + 124 + 5, 0x01), "none"],
    ["gzip-cut", gz.subarray(0, Math.floor(gz.length / 2)), "gzip"],
    ["gzip-header", flip(gz, 3, 0xff), "gzip"],
    ["gzip-middle", flip(gz, Math.floor(gz.length / 2)), "gzip"],
    ["gzip-trailer", flip(gz, gz.length - 6), "gzip"],
    ["zstd-cut", zs.subarray(0, Math.floor(zs.length / 2)), "zstd"],
    ["zstd-frame-header", flip(zs, 4, 0xff), "zstd"],
    ["zstd-checksummed-middle", flip(zsSum, Math.floor(zsSum.length / 2)), "zstd"],
  ];
  return cases.map(([name, bytes, compression]) => ({ name, cls: "damage" as const, bytes, compression, codes: [DAMAGED], notMade: ["d", "d/a"] }));
}

function bombs(): Hostile[] {
  const MiB = 1024 * 1024;
  const zeros = (n: number) => B.tar(B.entry({ name: "zeros", data: new Uint8Array(n) }), B.file("ok", "ok\n"));
  const zeroBomb = zeros(64 * MiB);
  const many: Uint8Array[] = [];
  for (let i = 0; i < 4000; i++) many.push(B.file(`f${i}`, new Uint8Array(4096)));
  const inodes: Uint8Array[] = [];
  for (let i = 0; i < 3000; i++) inodes.push(B.file(`e${i}`));
  const hole = B.tar(B.pax([["GNU.sparse.size", String(1024 ** 4)], ["GNU.sparse.numblocks", "2"], ["GNU.sparse.map", `0,3,${1024 ** 4},0`]]), B.file("terabyte", "abc"));
  const cases: Array<[string, Uint8Array, B.Compression, Partial<Hostile>]> = [
    // 64 MiB of zeros into 8 MiB of free space, in some hundreds of kilobytes (gzip) or some kilobytes (zstd)
    ["gzip-zeros", B.compress(zeroBomb, "gzip", 1), "gzip", { codes: [NO_SPACE] }],
    ["zstd-zeros", B.compress(zeroBomb, "zstd", 3), "zstd", { codes: [NO_SPACE] }],
    ["many-files", B.compress(B.tar(...many), "gzip", 1), "gzip", { codes: [NO_SPACE] }],
    ["inodes", B.compress(B.tar(...inodes), "zstd"), "zstd", { codes: [NO_SPACE], tmpfs: { size: "8m", inodes: 1000 } }],
    ["terabyte-of-holes", hole, "none", { codes: OK, made: ["terabyte"] }],
  ];
  return cases.map(([name, bytes, compression, more]) => ({ name, cls: "bombs" as const, bytes, compression, notMade: ["zeros"], tmpfs: { size: "8m" }, ...more }));
}

/** The whole corpus, aimed at the sandbox at `sandbox` (its absolute names name its canaries). */
export function hostileCorpus(sandbox: string): Hostile[] {
  const plain = [...twoKinds(), ...links(sandbox), ...hardLinks(sandbox), ...specials(), ...names(), ...dialects(), ...strictness()];
  // some of the plain ones compressed, so that every reader path meets hostile entries
  for (const [i, h] of plain.entries()) {
    if (h.compression !== "none" || h.cls === "dialects") continue;
    const c = (["none", "gzip", "zstd"] as const)[i % 3]!;
    h.bytes = B.compress(h.bytes, c);
    h.compression = c;
  }
  return [...plain, ...damage(), ...bombs()];
}
