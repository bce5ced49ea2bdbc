/**
 * gzip members decompressed whole by libdeflate on the decompression thread
 * (src/core/restore/whole-pieces.ts) give exactly the tar stream zlib's stream decompressor
 * gives, member by member, for shoot's own archives and for files built byte by byte that a
 * hostile server could send: bytes after a member that are no member, zero padding, the
 * start of a member inside another's data, a member that would grow without bound, damage,
 * a file cut short. Where the stream decompressor fails, so does the worker. zstd frames,
 * decompressed whole by libzstd, are gathered into pieces the same way.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import zlib from "node:zlib";
import { openLibzstd } from "../../src/core/archive/libzstd.ts";
import { inflatedByWorker, ZstdFrames } from "../../src/core/restore/inflate.ts";
import { LIBDEFLATE_NAMES, openLibdeflate } from "../../src/core/restore/libdeflate.ts";
import { FrameByFrame, MemberByMember, WHOLE_PIECE } from "../../src/core/restore/whole-pieces.ts";
import { makeRng, randomBytes, textLike } from "../../bench/gen.ts";
import { tempDir } from "../helpers/fixture.ts";
import { installCommand, TOOLS } from "../../scripts/ensure-tools.ts";
import { requireTool } from "../helpers/tools.ts";

const root = tempDir("shoot-whole-pieces-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const rng = makeRng(20261203);
const text = textLike(rng, 3 << 20);
const noise = randomBytes(rng, 1 << 20);

/** A member as shoot's archive writer makes one. */
const member = (b: Uint8Array): Buffer => Buffer.from(Bun.gzipSync(b as Uint8Array<ArrayBuffer>, { level: 6, library: "libdeflate" }));

/** Members of text and noise, 32 to 256 KiB of input each, as the writer cuts a tar stream. */
function shootLike(): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < text.length; i++) {
    const n = (32 << 10) + ((i * 37_573) % (224 << 10));
    out.push(member(i % 5 === 4 ? noise.subarray(0, n) : text.subarray(at, at + n)));
    at += n;
  }
  return out;
}

/** A stored deflate block (no compression) holding `b`, as a whole gzip member: its bytes stand in the file as they are. */
function storedMember(b: Uint8Array): Buffer {
  const head = Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 0x01, b.length & 0xff, b.length >> 8, ~b.length & 0xff, (~b.length >> 8) & 0xff]);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(Bun.hash.crc32(b), 0);
  trailer.writeUInt32LE(b.length, 4);
  return Buffer.concat([head, b, trailer]);
}

/** What zlib's stream decompressor makes of the file: the md5 of its output, or that it failed. */
async function byStream(file: string, compression: "gzip" | "zstd" = "gzip"): Promise<string> {
  const md5 = new Bun.CryptoHasher("md5");
  const g = compression === "gzip" ? zlib.createGunzip({ chunkSize: 1 << 18 }) : zlib.createZstdDecompress({ chunkSize: 1 << 18 });
  const sink = new Writable({ write: (c: Buffer, _e, done) => (md5.update(c), done()) });
  try {
    await new Promise<void>((resolve, reject) => {
      g.on("error", reject);
      sink.on("finish", resolve);
      g.pipe(sink);
      fs.createReadStream(file, { highWaterMark: 1 << 20 }).on("error", reject).pipe(g);
    });
    return md5.digest("hex");
  } catch {
    return "fails";
  }
}

/** What the decompression thread makes of it. */
async function byWorker(file: string, compression: "gzip" | "zstd" = "gzip"): Promise<string> {
  const fd = fs.openSync(file, "r");
  const md5 = new Bun.CryptoHasher("md5");
  const { tar, free, stop } = inflatedByWorker(fd, compression, { size: () => {}, failed: () => {}, cut: () => {} });
  try {
    for await (const piece of tar as AsyncIterable<Buffer>) {
      md5.update(piece);
      free(piece);
    }
    return md5.digest("hex");
  } catch {
    return "fails";
  } finally {
    await stop();
    fs.closeSync(fd);
  }
}

describe("libdeflate through bun:ffi", () => {
  const lib = openLibdeflate();
  test(`loads on this machine (${installCommand(TOOLS.filter((t) => t.pkg === "libdeflate0"), false)})`, () => {
    expect(lib).toBeDefined();
  });

  test("a library that is not there: undefined, and the stream does the work", () => {
    expect(openLibdeflate(["libnothing-such.so.9"])).toBeUndefined();
    expect(LIBDEFLATE_NAMES[0]).toBe("libdeflate.so.0");
  });

  test("one member: the bytes it took, what it held; what follows is left alone", () => {
    const m = member(text.subarray(0, 100_000));
    const out = new Uint8Array(WHOLE_PIECE);
    const r = lib!.gunzipMember(Buffer.concat([m, Buffer.from("after")]), out);
    expect(r).toEqual({ read: m.length, wrote: 100_000 });
    expect(Buffer.from(out.buffer, 0, 100_000).equals(Buffer.from(text.subarray(0, 100_000)))).toBe(true);
  });

  test("a member that holds more than the buffer: 'room', and nothing more is allocated", () => {
    expect(lib!.gunzipMember(member(new Uint8Array(8 << 20)), new Uint8Array(WHOLE_PIECE))).toBe("room");
  });

  test("a member cut short, or damaged: 'bad'", () => {
    const m = member(text.subarray(0, 100_000));
    const out = new Uint8Array(WHOLE_PIECE);
    expect(lib!.gunzipMember(m.subarray(0, m.length - 1), out)).toBe("bad");
    const hit = Buffer.from(m);
    hit[m.length - 8]! ^= 0xff;
    expect(lib!.gunzipMember(hit, out)).toBe("bad");
  });
});

describe("shoot's own members are decompressed whole, none by the stream", () => {
  for (const chunk of [1 << 20, 65_537, 4093]) {
    test(`read in chunks of ${chunk} bytes`, async () => {
      const file = Buffer.concat(shootLike());
      const got: Buffer[] = [];
      const sink = new Writable({ write: (c: Buffer, _e, done) => (got.push(Buffer.from(c)), done()) });
      const m = MemberByMember.open(sink)!;
      for (let at = 0; at < file.length; at += chunk) expect(await m.take(file.subarray(at, at + chunk))).toBeUndefined();
      expect(await m.finish()).toBeUndefined();
      expect(m.streaming).toBe(false);
      expect(Buffer.concat(got).equals(zlib.gunzipSync(file))).toBe(true);
    });
  }
});

describe("the decompression thread reads every file as zlib's stream does", () => {
  const members = shootLike();
  const all = Buffer.concat(members);
  const m0 = members[0]!;
  // a member whose data holds the start of a member (stored, so the bytes stand as they are)
  const inside = storedMember(Buffer.concat([Buffer.from("x".repeat(300)), members[1]!.subarray(0, 40), Buffer.from("y".repeat(300))]));
  const gnu = Buffer.from(Bun.spawnSync([requireTool("gzip"), "-c"], { stdin: text.subarray(0, 500_000) }).stdout);
  const named = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x08, 0, 0, 0, 0, 0, 3]), Buffer.from("f.tar\0"), m0.subarray(10)]);
  const damaged = Buffer.from(all);
  damaged[Math.floor(all.length / 2)]! ^= 0x55;
  const cases: Array<[string, Buffer, "equal" | "fails"]> = [
    ["shoot's members", all, "equal"],
    ["one member", m0, "equal"],
    ["a member from gzip's command line (a name in its header), then shoot's", Buffer.concat([named, ...members.slice(1, 4)]), "equal"],
    ["gzip's own output", gnu, "equal"],
    ["zero padding after the last member", Buffer.concat([all, Buffer.alloc(5000)]), "equal"],
    ["zero padding, then more members", Buffer.concat([m0, Buffer.alloc(3), members[1]!]), "equal"],
    ["bytes after a member that are no member", Buffer.concat([m0, Buffer.from("garbage!"), members[1]!]), "fails"],
    ["a copy of a member's trailer after it", Buffer.concat([m0, m0.subarray(m0.length - 8), members[1]!]), "fails"],
    ["a member's start inside another member's data", Buffer.concat([m0, inside, members[2]!]), "equal"],
    ["a member that grows past what is decompressed whole", Buffer.concat([m0, member(new Uint8Array(9 << 20)), members[1]!]), "equal"],
    ["a byte changed in the middle", damaged, "fails"],
    ["the last member cut short", all.subarray(0, all.length - 3), "fails"],
    ["cut within the first member's header", m0.subarray(0, 6), "fails"],
    ["an empty file", Buffer.alloc(0), "fails"],
    ["a member that holds nothing", member(new Uint8Array(0)), "equal"],
  ];
  for (const [what, bytes, expected] of cases) {
    test(what, async () => {
      const file = path.join(root, `${what.replace(/[^a-z]+/gi, "-")}.gz`);
      fs.writeFileSync(file, bytes);
      const reference = await byStream(file);
      const got = await byWorker(file);
      expect(got).toBe(reference);
      // the case is what it says it is: the stream decompressor agrees
      expect(reference === "fails" ? "fails" : "equal").toBe(expected);
    });
  }
});

/** One zstd frame of `b`, as shoot's writer makes one (it says its content size). */
function frame(b: Uint8Array): Buffer {
  const z = openLibzstd()!;
  const out = new ArrayBuffer(z.bound(b.length));
  return Buffer.from(out, 0, z.compress(b, out, 3));
}

describe("zstd frames of every size are gathered into the same tar stream as the stream gives", () => {
  // small frames gathered, one larger than what is left of the output, one past WHOLE_PIECE
  const sizes = [10_000, 70_000, 250_000, 400_000, 1_500_000, 3, 200_000];
  let at = 0;
  const frames = sizes.map((n) => frame(text.subarray(at, (at += n))));
  const cases: Array<[string, Buffer]> = [
    ["frames of 3 bytes to 1.5 MB", Buffer.concat(frames)],
    ["then a frame of 5 MiB, read by the stream", Buffer.concat([...frames, frame(new Uint8Array(5 << 20)), frames[0]!])],
  ];
  for (const [what, bytes] of cases) {
    test(what, async () => {
      const file = path.join(root, `${what.replace(/[^a-z0-9]+/gi, "-")}.zst`);
      fs.writeFileSync(file, bytes);
      const reference = await byStream(file, "zstd");
      expect(reference).not.toBe("fails");
      expect(await byWorker(file, "zstd")).toBe(reference);
    });
  }
});

describe("a zstd frame the stream must read is handed on from its header, not held until its end", () => {
  const large = Buffer.concat([text, noise, text.subarray(0, 1 << 20)]);
  // without a content size, as zstd's command line writes a stream it reads from a pipe
  const unsized = Buffer.from(Bun.spawnSync([requireTool("zstd"), "-c"], { stdin: large }).stdout);
  const cases: Array<[string, Buffer[]]> = [
    ["a frame that says more than WHOLE_PIECE", [frame(text.subarray(0, 9000)), frame(large)]],
    ["a frame that does not say what it holds", [frame(text.subarray(0, 9000)), unsized]],
  ];
  for (const [what, frames] of cases) {
    test(what, async () => {
      const first = frames[0]!.length;
      const file = Buffer.concat(frames);
      const got: Buffer[] = [];
      const sink = new Writable({ write: (c: Buffer, _e, done) => (got.push(Buffer.from(c)), done()) });
      const byFrame = FrameByFrame.open(sink)!;
      const walk = new ZstdFrames(byFrame);
      const chunk = 4093;
      let rest: Buffer | undefined;
      let at = 0;
      for (; !rest && at < file.length; at += chunk) {
        const c = file.subarray(at, at + chunk);
        expect(walk.push(c)).toBeUndefined();
        rest = await byFrame.take(c);
      }
      // handed on with the chunk that holds the large frame's header, from where that frame starts
      expect(at - first).toBeLessThanOrEqual(2 * chunk);
      expect(Buffer.concat(got).equals(text.subarray(0, 9000))).toBe(true);
      expect(Buffer.from(rest!).equals(file.subarray(first, at))).toBe(true);
      expect(zlib.zstdDecompressSync(Buffer.concat([rest!, file.subarray(at)])).equals(large)).toBe(true);
    });
  }
});
