import { describe, expect, test } from "bun:test";
import { BLOCK, encodeHeader, formatPaxTime, paddingAfter, parsePax, paxRecord, splitUstarName, TarParser, type TarHeader, type TarListing } from "../../src/core/archive/tar.ts";

const T0 = 1_700_000_000n * 1_000_000_000n;

function header(over: Partial<TarHeader> = {}): TarHeader {
  return { name: "etc/passwd", type: "file", mode: 0o644, uid: 0, gid: 0, uname: "root", gname: "root", size: 1234, mtimeNs: T0, ...over };
}

const text = (b: Uint8Array, from: number, len: number) => {
  const f = b.subarray(from, from + len);
  const z = f.indexOf(0);
  return new TextDecoder().decode(z < 0 ? f : f.subarray(0, z));
};

/** The pax records of an encoded header, or an empty map when it is plain ustar. */
function paxOf(b: Uint8Array): Map<string, string> {
  if (b[156] !== 0x78) return new Map();
  const len = parseInt(text(b, 124, 12), 8);
  return parsePax(b.subarray(BLOCK, BLOCK + len));
}

function decode(b: Uint8Array): TarListing {
  const p = new TarParser();
  const got: TarListing[] = [];
  p.push(b, (e) => got.push(e));
  expect(got.length).toBe(1);
  return got[0]!;
}

function checksumOk(block: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : block[i]!;
  return sum === parseInt(text(block, 148, 8), 8);
}

describe("ustar header when everything fits", () => {
  test("a plain file is one block with the fields in octal", () => {
    const b = encodeHeader(header());
    expect(b.length).toBe(BLOCK);
    expect(text(b, 0, 100)).toBe("etc/passwd");
    expect(text(b, 100, 8)).toBe("0000644");
    expect(text(b, 124, 12)).toBe("00000002322");
    expect(text(b, 136, 12)).toBe((1_700_000_000).toString(8).padStart(11, "0"));
    expect(String.fromCharCode(b[156]!)).toBe("0");
    expect(text(b, 257, 6)).toBe("ustar");
    expect(text(b, 263, 2)).toBe("00");
    expect(text(b, 265, 32)).toBe("root");
    expect(checksumOk(b)).toBe(true);
  }, 5000);

  test("a directory gets a trailing slash and size 0", () => {
    const b = encodeHeader(header({ name: "var/empty", type: "dir", mode: 0o1777, size: 99 }));
    expect(text(b, 0, 100)).toBe("var/empty/");
    expect(text(b, 100, 8)).toBe("0001777");
    expect(text(b, 124, 12)).toBe("00000000000");
    expect(String.fromCharCode(b[156]!)).toBe("5");
  }, 5000);

  test("setuid bits are kept; file type bits are not", () => {
    const b = encodeHeader(header({ mode: 0o104755 }));
    expect(text(b, 100, 8)).toBe("0004755");
  }, 5000);

  test("symlink and hard link carry the target in linkname", () => {
    const s = encodeHeader(header({ type: "symlink", linkTarget: "../x y", size: 0 }));
    expect(String.fromCharCode(s[156]!)).toBe("2");
    expect(text(s, 157, 100)).toBe("../x y");
    const h = encodeHeader(header({ type: "hardlink", linkTarget: "etc/group", size: 5 }));
    expect(String.fromCharCode(h[156]!)).toBe("1");
    expect(text(h, 157, 100)).toBe("etc/group");
    expect(text(h, 124, 12)).toBe("00000000000");
  }, 5000);

  test("a 200-byte name is split into prefix and name at a slash", () => {
    const name = "a".repeat(120) + "/" + "b".repeat(79);
    const b = encodeHeader(header({ name }));
    expect(b.length).toBe(BLOCK);
    expect(text(b, 345, 155)).toBe("a".repeat(120));
    expect(text(b, 0, 100)).toBe("b".repeat(79));
    expect(decode(b).name).toBe(name);
  }, 5000);

  test("largest values that still fit octal fields need no pax", () => {
    const b = encodeHeader(header({ size: 8 * 1024 ** 3 - 1, uid: 0o7777777, gid: 0o7777777 }));
    expect(b.length).toBe(BLOCK);
    const d = decode(b);
    expect(d.size).toBe(8 * 1024 ** 3 - 1);
    expect(d.uid).toBe(0o7777777);
  }, 5000);
});

describe("pax extended header for what ustar cannot hold", () => {
  const cases: Array<[string, Partial<TarHeader>, Record<string, string>]> = [
    ["name over 255 bytes", { name: "d/".repeat(150) + "f" }, { path: "d/".repeat(150) + "f" }],
    ["name whose last part is over 100 bytes", { name: "x/" + "n".repeat(101) }, { path: "x/" + "n".repeat(101) }],
    ["unicode name", { name: "home/zoë/日本.txt" }, { path: "home/zoë/日本.txt" }],
    ["newline in name", { name: "tmp/a\nb" }, { path: "tmp/a\nb" }],
    ["unicode directory keeps its slash", { name: "dé", type: "dir" }, { path: "dé/" }],
    ["size of 8 GiB", { size: 8 * 1024 ** 3 }, { size: String(8 * 1024 ** 3) }],
    ["uid beyond the octal field", { uid: 0o10000000 }, { uid: String(0o10000000) }],
    ["gid beyond the octal field", { gid: 4_000_000_000 }, { gid: "4000000000" }],
    ["sub-second mtime", { mtimeNs: T0 + 500_000_000n }, { mtime: "1700000000.5" }],
    ["nanosecond mtime", { mtimeNs: T0 + 123_456_789n }, { mtime: "1700000000.123456789" }],
    ["mtime before 1970", { mtimeNs: -1_500_000_000n }, { mtime: "-1.5" }],
    ["long symlink target", { type: "symlink", linkTarget: "t".repeat(101), size: 0 }, { linkpath: "t".repeat(101) }],
    ["unicode symlink target", { type: "symlink", linkTarget: "ünï", size: 0 }, { linkpath: "ünï" }],
    ["long user name", { uname: "u".repeat(32) }, { uname: "u".repeat(32) }],
    ["unicode group name", { gname: "grüppe" }, { gname: "grüppe" }],
  ];
  for (const [what, over, want] of cases) {
    test(what, () => {
      const b = encodeHeader(header(over));
      expect(String.fromCharCode(b[156]!)).toBe("x");
      expect(b.length % BLOCK).toBe(0);
      expect(checksumOk(b)).toBe(true);
      expect(checksumOk(b.subarray(b.length - BLOCK))).toBe(true);
      expect(Object.fromEntries(paxOf(b))).toEqual(want);
      const d = decode(b);
      const h = header(over);
      expect(d.name).toBe(h.name);
      if (h.type === "file") expect(d.size).toBe(h.size);
      expect(d.uid).toBe(h.uid);
      expect(d.gid).toBe(h.gid);
      expect(d.mtimeNs).toBe(h.mtimeNs);
      if (h.linkTarget) expect(d.linkTarget).toBe(h.linkTarget);
    }, 5000);
  }

  test("never atime or ctime", () => {
    const b = encodeHeader(header({ name: "é".repeat(200), mtimeNs: T0 + 1n, size: 2 ** 40, uid: 2 ** 31, gid: 2 ** 31 }));
    const keys = [...paxOf(b).keys()].sort();
    expect(keys).toEqual(["gid", "mtime", "path", "size", "uid"]);
  }, 5000);
});

describe("pax records", () => {
  test("the length prefix counts itself, across a change in its digit count", () => {
    for (let n = 0; n < 120; n++) {
      const r = paxRecord("path", "x".repeat(n));
      const s = new TextDecoder().decode(r);
      expect(Number(s.slice(0, s.indexOf(" ")))).toBe(r.length);
      expect(s.endsWith("\n")).toBe(true);
    }
  }, 5000);

  test("UTF-8 values are counted in bytes", () => {
    const r = paxRecord("path", "日本");
    expect(new TextDecoder().decode(r)).toBe("15 path=日本\n");
  }, 5000);

  test("time formatting", () => {
    expect(formatPaxTime(T0)).toBe("1700000000");
    expect(formatPaxTime(T0 + 10n)).toBe("1700000000.00000001");
    expect(formatPaxTime(-1n)).toBe("-0.000000001");
  }, 5000);

  test("ustar split refuses what cannot be split", () => {
    expect(splitUstarName("a".repeat(101))).toBeNull();
    expect(splitUstarName("a".repeat(156) + "/b")).toBeNull();
    expect(splitUstarName("a".repeat(155) + "/" + "b".repeat(100))).not.toBeNull();
  }, 5000);
});

describe("numeric fields as other writers put them", () => {
  /** A header with `fields` written over it (offset → bytes), its checksum made right again. */
  function patched(fields: Record<number, number[]>): Uint8Array {
    const b = encodeHeader(header({ name: "n", size: 0 }));
    for (const [at, bytes] of Object.entries(fields)) b.set(bytes, Number(at));
    b.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += b[i]!;
    b.set(new TextEncoder().encode(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
    return b;
  }
  const ascii = (s: string) => [...new TextEncoder().encode(s)];
  const cases: Array<[string, Record<number, number[]>, Partial<TarListing>]> = [
    ["octal with a trailing NUL (GNU tar)", { 100: ascii("0000755\0"), 108: ascii("0001750\0") }, { mode: 0o755, uid: 0o1750 }],
    ["blanks before and after the digits (old tars)", { 100: ascii("   644 \0"), 116: ascii(" 12\0\0\0\0\0") }, { mode: 0o644, gid: 0o12 }],
    ["a field of NULs is 0", { 108: [0, 0, 0, 0, 0, 0, 0, 0] }, { uid: 0 }],
    ["base-256 for what octal cannot hold (GNU)", { 108: [0x80, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff] }, { uid: 0x7fffffff }],
    ["a size in base-256", { 124: [0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] }, { size: 0 }],
  ];
  for (const [name, fields, want] of cases) {
    test(name, () => {
      expect(decode(patched(fields))).toMatchObject(want);
    });
  }

  test("names in UTF-8 and in ASCII read the same as the decoder reads them", () => {
    for (const n of ["plain/ascii.txt", "été/日本語.txt", "a".repeat(99), "x\u007fy"]) expect(decode(encodeHeader(header({ name: n, size: 0 }))).name).toBe(n);
  });
});

describe("content after each entry", () => {
  test("every entry's content comes whole and in order before the next entry, whatever the pieces pushed", () => {
    // sizes around the block size, a long name (pax header before it), empty files, a directory and a link between
    const files: Array<[TarHeader, Uint8Array]> = [0, 1, 511, 512, 513, 5000, 0, 70_000].map((size, i) => {
      const bytes = new Uint8Array(size).map((_, j) => (j * 31 + i) & 0xff);
      return [header({ name: i === 5 ? `${"long/".repeat(40)}f${i}` : `f${i}`, size }), bytes];
    });
    const parts: Uint8Array[] = [];
    for (const [i, [h, bytes]] of files.entries()) {
      parts.push(encodeHeader(h), bytes, new Uint8Array(paddingAfter(bytes.length)));
      if (i === 3) parts.push(encodeHeader(header({ name: "d", type: "dir", size: 0 })), encodeHeader(header({ name: "l", type: "symlink", size: 0, linkTarget: "f1" })));
    }
    parts.push(new Uint8Array(2 * BLOCK));
    const stream = Buffer.concat(parts);
    for (const piece of [1, 7, 512, 4096, 100_000]) {
      const p = new TarParser();
      const got: Array<{ name: string; content: number[] }> = [];
      for (let at = 0; at < stream.length; at += piece) {
        p.push(stream.subarray(at, at + piece), (e) => got.push({ name: e.name, content: [] }), (d) => got.at(-1)!.content.push(...d));
      }
      expect(p.ended).toBe(true);
      const want = [...files.slice(0, 4), [header({ name: "d" }), new Uint8Array()] as const, [header({ name: "l" }), new Uint8Array()] as const, ...files.slice(4)];
      expect(got.map((g) => g.name)).toEqual(want.map(([h]) => h.name));
      expect(got.map((g) => g.content.length)).toEqual(want.map(([, b]) => b.length));
      expect(got.every((g, i) => Buffer.from(g.content).equals(Buffer.from(want[i]![1])))).toBe(true);
    }
  });
});

describe("determinism", () => {
  test("the same entry encodes to the same bytes", () => {
    const h = header({ name: "home/zoë/" + "long/".repeat(40) + "f", mtimeNs: T0 + 7n, size: 9 * 1024 ** 3 });
    expect(Buffer.from(encodeHeader(h)).equals(Buffer.from(encodeHeader({ ...h })))).toBe(true);
  }, 5000);

  test("the parser reads a header split across many small pushes", () => {
    const b = encodeHeader(header({ name: "é/".repeat(100) + "f", mtimeNs: T0 + 3n }));
    const p = new TarParser();
    const got: TarListing[] = [];
    for (let i = 0; i < b.length; i += 7) p.push(b.subarray(i, i + 7), (e) => got.push(e));
    expect(got.map((e) => e.name)).toEqual(["é/".repeat(100) + "f"]);
  }, 5000);
});

describe("the header bytes do not change from one version to the next", () => {
  // if they did, the first day-2 archive after an upgrade would differ from day 1 in every
  // header and its pull would resend them all. Every value at the edges of the encoding: ustar
  // field widths, octal limits, sub-second, whole-second and negative times, non-ASCII and
  // control characters. The digests were taken from the encoder of db32016, whose two paths
  // (plain entries and all others) were compared byte for byte on the same inputs.
  const OCTAL_8 = 0o7777777;
  const OCTAL_12_SECONDS = BigInt(8 ** 11 - 1);
  const NS = 1_000_000_000n;
  const values = {
    name: [
      "etc/passwd", "", "f", "a".repeat(99), "a".repeat(100), "a".repeat(101), "d/" + "a".repeat(98), "d/" + "a".repeat(99),
      "a".repeat(155) + "/" + "b".repeat(100), "a".repeat(155) + "/" + "b".repeat(101), "a".repeat(156) + "/b",
      "a".repeat(154) + "/" + "b".repeat(101), "/" + "x".repeat(100), "x/".repeat(60) + "f", "a".repeat(200) + "/" + "c".repeat(56),
      "a".repeat(200) + "/" + "c".repeat(57), "tab\tname", "new\nline", "zoë/f", "dir with space/f~!@#$%^&*()", "del\x7f", "x".repeat(99) + "/",
    ],
    type: ["file", "dir", "symlink", "hardlink"] as const,
    linkTarget: [undefined, "", "../x y", "t".repeat(100), "t".repeat(101), "zoë", "a\tb"],
    uname: [undefined, "", "root", "u".repeat(31), "u".repeat(32), "zoë"],
    gname: [undefined, "", "wheel", "g".repeat(31), "g".repeat(32), "grüppe"],
    uid: [0, 1000, OCTAL_8, OCTAL_8 + 1, -1],
    gid: [0, 33, OCTAL_8, OCTAL_8 + 1, -2],
    size: [0, 1, 1234, 8 * 1024 ** 3 - 1, 8 * 1024 ** 3],
    mode: [0o644, 0o104755, 0o1777, 0o100600],
    mtimeNs: [
      T0, T0 + 1n, T0 + 10n, T0 + 123_456_789n, T0 + 500_000_000n, T0 + 999_999_999n, 0n, 1n, 999_999_999n, NS, NS + 1n, -1n, -NS, -NS - 1n,
      OCTAL_12_SECONDS * NS, OCTAL_12_SECONDS * NS + 5n, (OCTAL_12_SECONDS + 1n) * NS, (OCTAL_12_SECONDS + 1n) * NS + 100n,
    ],
  };
  type Key = keyof typeof values;
  const keys = Object.keys(values) as Key[];
  const digestOf = (headers: Iterable<TarHeader>): string => {
    const h = new Bun.CryptoHasher("sha256");
    for (const e of headers) h.update(encodeHeader(e));
    return h.digest("hex");
  };

  test("each value of each field, the others plain", () => {
    const headers = keys.flatMap((k) => values[k].map((v) => header({ [k]: v } as Partial<TarHeader>)));
    expect(headers.length).toBe(keys.reduce((n, k) => n + values[k].length, 0));
    expect(digestOf(headers)).toBe("f9a7789f50e0d61a4b157b14d920beb76dab5e99d627601b7e8f52f240007ee5");
  }, 10_000);

  test("20,000 mixtures of them", () => {
    let x = 2026;
    const pick = <T,>(a: readonly T[]): T => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return a[x % a.length]!;
    };
    const mixtures = Array.from({ length: 20_000 }, () => header(Object.fromEntries(keys.map((k) => [k, pick<unknown>(values[k])])) as Partial<TarHeader>));
    expect(digestOf(mixtures)).toBe("b563caa71e8615592b183b330119a19a6dddba5f1ae7443eddf8a44eb0bbe47e");
  }, 20_000);
});

describe("reading what GNU tar reads, as it reads it, or refusing by name", () => {
  const B = require("../helpers/tar-builder.ts") as typeof import("../helpers/tar-builder.ts");
  const te = new TextEncoder();
  function read(t: Uint8Array): { entries: TarListing[]; content: Map<string, Uint8Array>; error?: { reason: string; offset?: number; kind: string } } {
    const p = new TarParser();
    const entries: TarListing[] = [];
    const parts = new Map<string, Uint8Array[]>();
    try {
      for (let i = 0; i < t.length; i += 333) p.push(t.subarray(i, i + 333), (e) => entries.push(e), (d) => parts.set(entries.at(-1)!.name, [...(parts.get(entries.at(-1)!.name) ?? []), d.slice()]));
    } catch (e) {
      const f = e as { reason: string; offset?: number; kind: string };
      return { entries, content: new Map(), error: { reason: f.reason, offset: f.offset, kind: f.kind } };
    }
    return { entries, content: new Map([...parts].map(([k, v]) => [k, Buffer.concat(v)])) };
  }

  const damaged: Array<[string, Uint8Array, RegExp, number]> = [
    ["a pax size in hex", B.tar(B.pax([["size", "0x5"]]), B.file("a", "data\n")), /pax record size="0x5" is not a decimal number/, 0],
    ["a negative pax size", B.tar(B.pax([["size", "-5"]]), B.file("a", "data\n")), /size="-5"/, 0],
    ["a pax size with a sign", B.tar(B.pax([["size", "+5"]]), B.file("a", "data\n")), /size="\+5"/, 0],
    ["a pax size with a fraction", B.tar(B.pax([["size", "5.0"]]), B.file("a", "data\n")), /size="5.0"/, 0],
    ["octal with garbage after it", B.tar(B.file("ok", "x"), B.file("g", "data\n", { size: te.encode("00000000005x") })), /the size field "00000000005x" is not an octal number/, 1024],
    ["base-64", B.tar(B.file("g", "data\n", { size: te.encode("-AAAAAAAAAF\u0000") })), /base-64/, 0],
    ["a lone zero block before more entries", B.concat([B.file("a", "a\n"), new Uint8Array(512), B.file("b", "b\n"), new Uint8Array(1024)]), /a lone zero block is followed by more entries/, 1024],
    ["a pax record without its newline", B.tar(B.pax(te.encode("11 path=abc")), B.file("a", "x")), /does not end with a newline/, 512],
    ["a 0.1 sparse map without numblocks", B.tar(B.pax([["GNU.sparse.size", "100"], ["GNU.sparse.map", "0,10"]]), B.file("s", "x".repeat(10))), /without GNU.sparse.numblocks/, 0],
    ["sparse pieces that do not fill the content", B.tar(B.pax([["GNU.sparse.size", "2000"], ["GNU.sparse.numblocks", "2"], ["GNU.sparse.map", "0,10,1000,10"]]), B.file("s", "x".repeat(20))), /take 2 blocks as GNU tar reads them, its content 1/, 0],
    ["a header checksum that is wrong", B.tar(B.file("ok", "x"), B.file("c", "x\n", { checksum: 12345 })), /header checksum mismatch/, 1024],
  ];
  for (const [what, t, reason, offset] of damaged) {
    test(`damage: ${what}, at the byte of its block`, () => {
      const r = read(t);
      expect(r.error?.reason).toMatch(reason);
      expect(r.error?.offset).toBe(offset);
      expect(r.error?.kind).toBe("damaged");
    });
  }

  test("a pax global header applies to every later entry under each one's own records, until the next replaces it", () => {
    const r = read(B.tar(B.pax([["mtime", "1000000000"], ["uid", "77"]], "g"), B.file("a", "a"), B.pax([["mtime", "1200000000"]]), B.file("b", "b"), B.pax([], "g"), B.file("c", "c")));
    expect(r.entries.map((e) => [e.name, e.mtimeNs / 1_000_000_000n, e.uid])).toEqual([["a", 1000000000n, 77], ["b", 1200000000n, 77], ["c", 1600000000n, 0]]);
  });

  test("sparse files of old GNU (with extension blocks) and of pax 0.0, 0.1 and 1.0: their pieces, each read as whole blocks", () => {
    const full = new Uint8Array(40_000).map((_, i) => (i % 7 === 0 ? 0 : (i * 13) & 0xff));
    const map: Array<[number, number]> = Array.from({ length: 9 }, (_, i): [number, number] => [i * 4000 + 100, 700]);
    map.push([40_000, 0]);
    for (const t of [B.oldGnuSparse("s", full, map), B.paxSparse("0.0", "s", full, map), B.paxSparse("0.1", "s", full, map), B.paxSparse("1.0", "s", full, map)]) {
      const r = read(B.tar(t, B.file("after", "after\n")));
      expect(r.error).toBeUndefined();
      expect(r.entries.map((e) => [e.name, e.type, e.size])).toEqual([["s", "file", 40_000], ["after", "file", 6]]);
      expect(r.entries[0]!.sparse).toEqual(map.map(([offset, length]) => ({ offset, length })));
      expect(Buffer.from(r.content.get("s")!).equals(Buffer.from(B.concat(map.map(([o, n]) => full.subarray(o, o + n)))))).toBe(true);
    }
  });

  test("old tars' ways: a v7 directory named with a slash, a signed checksum, base-256 numbers; GNU's D and V entries", () => {
    const r = read(B.tar(
      B.entry({ name: "vd/", magic: "v7", mode: 0o750 }), B.file(te.encode("é"), "x", { checksum: "signed" }),
      B.file("b", "nine\n", { size: B.base256(5, 12), mtime: B.base256(-100, 12), uid: B.base256(3_000_000, 8) }),
      B.entry({ name: "LABEL", type: "V", magic: "gnu" }), B.entry({ name: "dd/", type: "D", magic: "gnu", data: "Nfoo\0\0" }),
    ));
    expect(r.error).toBeUndefined();
    expect(r.entries.map((e) => [e.name, e.type, e.size])).toEqual([["vd", "dir", 0], ["é", "file", 1], ["b", "file", 5], ["dd", "dir", 0]]);
    expect([r.entries[2]!.mtimeNs, r.entries[2]!.uid]).toEqual([-100_000_000_000n, 3_000_000]);
  });

  test("header checksums, read four bytes at a time: high bytes in each of the four places of a word, as unsigned or signed sums", () => {
    for (let lane = 0; lane < 4; lane++) {
      // 0xff bytes in the prefix field, all in one place of their words
      const patch = (b: Uint8Array) => {
        for (let i = 400 + lane; i < 500; i += 4) b[i] = 0xff;
      };
      for (const checksum of ["unsigned", "signed"] as const) {
        const good = B.file("x", "1\n", { patch, checksum });
        expect(read(B.tar(good)).error).toBeUndefined();
        // one byte less in the same place: neither sum
        const bad = Uint8Array.from(good);
        bad[400 + lane] = 0xfe;
        expect(read(B.tar(bad)).error?.reason).toMatch(/header checksum mismatch/);
      }
    }
  });

  test("what is read but not made: devices, FIFOs, unknown types, 'S' outside an old-GNU archive, names that are not UTF-8", () => {
    const r = read(B.tar(
      B.entry({ name: "c", type: "3" }), B.entry({ name: "p", type: "6" }), B.entry({ name: "z", type: "Z", data: "zz" }),
      B.oldGnuSparse("s", new Uint8Array(10), [[0, 10]], { magic: "ustar" }), B.file(new Uint8Array([0x61, 0xff]), "x"),
    ));
    expect(r.error).toBeUndefined();
    expect(r.entries.map((e) => [e.type, e.kind])).toEqual([
      ["other", "a character device"], ["other", "a FIFO"], ["other", "an entry of unknown type 'Z'"],
      ["other", "an old-GNU sparse file in an archive that is not old GNU"], ["file", undefined],
    ]);
    expect(r.entries[4]!.unrestorable).toBe("its name or link target is not UTF-8");
  });
});
