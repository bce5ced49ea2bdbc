/**
 * zstd frames that hold only one file's content, checked on a thread of their own while a pass
 * that hands no content on reads on (src/core/restore/frames-aside.ts): such a pass gives the
 * same entries, tar stream length and digests as the ordinary one, and an archive damaged in
 * a frame set aside fails with the very damage the ordinary pass names, its entries handed on
 * once each. Archives built byte by byte: a file over many frames, a pax header whose size
 * differs from the ustar field, small files, cut into frames of 256 KiB as shoot's writer
 * cuts a tar stream.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { openLibzstd } from "../../src/core/archive/libzstd.ts";
import type { TarListing } from "../../src/core/archive/tar.ts";
import { checkFrames, type FrameTriples } from "../../src/core/restore/frames-aside.ts";
import { ArchiveDamage, archivePass } from "../../src/core/restore/read.ts";
import { makeRng, randomBytes, textLike } from "../../bench/gen.ts";
import { tempDir } from "../helpers/fixture.ts";
import { concat, entry, file } from "../helpers/tar-builder.ts";
import { requireTool } from "../helpers/tools.ts";

const T = 60_000;
const root = tempDir("shoot-frames-aside-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const z = openLibzstd()!;
const rng = makeRng(20261205);
const big = randomBytes(rng, (3 << 20) + 123);
const text = textLike(rng, (2 << 20) + 77);

/** One pax record, its length counting its own digits. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let n = body.length + 1;
  while (String(n).length + body.length !== n) n++;
  return `${n}${body}`;
}

const FILES: Record<string, Uint8Array> = { big, "a.txt": new TextEncoder().encode("a small file\n"), text };

/** The tar stream: `big` over many frames, a small file, `text` whose ustar size says 0 and pax header says its length. */
const before = [
  file("big", big),
  file("a.txt", FILES["a.txt"]!),
  entry({ name: "PaxHeaders/text", type: "x", data: paxRecord("size", String(text.length)) }),
];
const tarStream = concat([...before, entry({ name: "text", data: text, size: 0 }), new Uint8Array(1024)]);
/** Where text's content starts in the tar stream. */
const textAt = concat(before).length + 512;

/** The stream cut every 256 KiB, each piece one frame that says its content size; where each frame lies. */
function framed(tar: Uint8Array): { bytes: Buffer; frames: FrameTriples } {
  const parts: Buffer[] = [];
  const frames: FrameTriples = [];
  let at = 0;
  for (let i = 0; i < tar.length; i += 256 << 10) {
    const piece = tar.subarray(i, Math.min(tar.length, i + (256 << 10)));
    const out = new ArrayBuffer(z.bound(piece.length));
    const f = Buffer.from(out, 0, z.compress(piece, out, 3));
    frames.push(at, at + f.length, piece.length);
    parts.push(f);
    at += f.length;
  }
  return { bytes: Buffer.concat(parts), frames };
}

const { bytes: archiveBytes, frames } = framed(tarStream);
/** The frame of 256 KiB in the middle of text's content: compressed, so damage in it does not decode. */
const textFrame = Math.ceil(textAt / (256 << 10)) + 3;
expect((textFrame + 1) * (256 << 10)).toBeLessThan(textAt + text.length);

function flip(b: Buffer, at: number): void {
  b[at] = b[at]! ^ 0x55;
}

/** The content size a frame's header says, written as `n` (the frames here carry it in 4 bytes). */
function sayContentSize(bytes: Buffer, start: number, n: number): void {
  const d = bytes[start + 4]!;
  expect(d >> 6).toBe(2);
  const single = (d & 0x20) !== 0;
  bytes.writeUInt32LE(n, start + 5 + (single ? 0 : 1) + [0, 1, 2, 4][d & 0x03]!);
}
const good = path.join(root, "good.tar.zst");
fs.writeFileSync(good, archiveBytes);

async function pass(file: string, sha256Only: boolean) {
  const seen: TarListing[] = [];
  const fd = fs.openSync(file, "r");
  try {
    const r = await archivePass(fd, { onEntry: (e) => seen.push(e), worker: true, sha256Only });
    return { r, seen };
  } catch (e) {
    return { e, seen };
  } finally {
    fs.closeSync(fd);
  }
}

const names = (seen: TarListing[]) => seen.map((e) => `${e.name} ${e.size}`);

describe("a pass that hands no content on, its SHA-256 alone to take", () => {
  test("sets frames aside and reads as the ordinary pass: entries, tar bytes, SHA-256 of sha256sum", async () => {
    const aside = await pass(good, true);
    const ordinary = await pass(good, false);
    expect(aside.e).toBeUndefined();
    expect(ordinary.e).toBeUndefined();
    // 3 MiB of one file's content: at least 10 frames of 256 KiB lie wholly within it, and 6 within text's
    expect(aside.r!.aside).toBeGreaterThanOrEqual(16);
    expect(ordinary.r!.aside).toBeUndefined();
    expect(names(aside.seen)).toEqual(names(ordinary.seen));
    expect(names(aside.seen)).toEqual([`big ${big.length}`, `a.txt ${FILES["a.txt"]!.length}`, `text ${text.length}`]);
    expect(aside.r!.tarBytes).toBe(ordinary.r!.tarBytes);
    const sum = Bun.spawnSync([requireTool("sha256sum"), good], { stdin: "ignore" }).stdout.toString().split(" ")[0];
    expect(aside.r!.sha256).toBe(sum!);
    expect(aside.r!.md5).toBeUndefined();
  }, T);

  test("the archive is what it says: GNU tar extracts every file as it was put in", () => {
    const to = path.join(root, "extracted");
    fs.mkdirSync(to);
    const r = Bun.spawnSync([requireTool("tar"), "--zstd", "-xf", good, "-C", to], { stdin: "ignore", stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
    for (const [name, data] of Object.entries(FILES)) expect(Buffer.from(fs.readFileSync(path.join(to, name))).equals(Buffer.from(data))).toBe(true);
  });

  // a frame of big's random bytes (stored as they are, so only its header can be wrong) that
  // says one byte more than it holds; one of text's with a byte flipped in its compressed middle
  const damages: Array<[string, number, (b: Buffer, start: number, end: number) => void]> = [
    ["frame 5 says one byte more than it holds", 5, (b, start) => sayContentSize(b, start, frames[3 * 5 + 2]! + 1)],
    [`a byte flipped in frame ${textFrame}`, textFrame, (b, start, end) => flip(b, (start + end) >> 1)],
  ];
  for (const [what, k, damage] of damages) {
    test(`${what} (set aside): the damage the ordinary pass names, each entry handed on once`, async () => {
      const bad = path.join(root, `bad-${k}.tar.zst`);
      const bytes = Buffer.from(archiveBytes);
      const [start, end] = [frames[3 * k]!, frames[3 * k + 1]!];
      damage(bytes, start, end);
      fs.writeFileSync(bad, bytes);
      const aside = await pass(bad, true);
      const ordinary = await pass(bad, false);
      expect(ordinary.e).toBeInstanceOf(ArchiveDamage);
      expect(aside.e).toBeInstanceOf(ArchiveDamage);
      const [a, o] = [aside.e as ArchiveDamage, ordinary.e as ArchiveDamage];
      expect(a.message).toBe(o.message);
      expect([a.fileOffset, a.tarOffset]).toEqual([o.fileOffset, o.tarOffset]);
      expect(o.message).toMatch(/zstd stream does not decode|ends early/);
      // the damage lies where the byte was flipped: in that frame
      expect(o.fileOffset!).toBeGreaterThanOrEqual(start);
      expect(o.fileOffset!).toBeLessThan(end);
      expect(new Set(names(aside.seen)).size).toBe(aside.seen.length);
    }, T);
  }
});

describe("checkFrames", () => {
  const room = () => ({ input: Buffer.alloc(16), output: Buffer.alloc(16) });
  test("every frame whole: nothing to say", () => {
    const fd = fs.openSync(good, "r");
    try {
      expect(checkFrames(fd, frames, z, room())).toBeUndefined();
    } finally {
      fs.closeSync(fd);
    }
  });

  test("a frame that holds more than its header says, one that does not decode, one past the file's end: each named by its start", () => {
    const fd = fs.openSync(good, "r");
    const [s0, e0, n0, s1, e1] = frames;
    try {
      expect(checkFrames(fd, [s0!, e0!, n0! - 1], z, room())).toBe(`the zstd frame at byte ${s0} holds ${n0} bytes, its header says ${n0! - 1}`);
      expect(checkFrames(fd, [s0!, e0!, n0! - 2], z, room())).toBe(`the zstd frame at byte ${s0} does not decode: libzstd: Destination buffer is too small`);
      expect(checkFrames(fd, [s0!, e0!, n0! + 1], z, room())).toBe(`the zstd frame at byte ${s0} holds ${n0} bytes, its header says ${n0! + 1}`);
      expect(checkFrames(fd, [s1! + 1, e1!, n0!], z, room())).toMatch(new RegExp(`^the zstd frame at byte ${s1! + 1} does not decode`));
      const size = fs.fstatSync(fd).size;
      expect(checkFrames(fd, [size - 10, size + 10, 5], z, room())).toBe(`the file ends within the zstd frame at byte ${size - 10}`);
    } finally {
      fs.closeSync(fd);
    }
  });
});
