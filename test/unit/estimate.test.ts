import { describe, expect, test } from "bun:test";
import { estimateSize } from "../../src/core/server/server.ts";

const MiB = 1024 * 1024;

describe("the archive size the free-space check expects", () => {
  test("without an earlier archive: the whole tar stream, headers included", () => {
    // 1,000 entries of 2 KiB tar overhead each, the end-of-archive record, and the content
    expect(estimateSize({ compression: "gzip" }, { bytes: 10 * MiB, entries: 1000 })).toBe(10 * MiB + 1000 * 2048 + 10240);
    expect(estimateSize({ compression: "none" }, { bytes: 0, entries: 100_000 })).toBe(100_000 * 2048 + 10240);
  });

  test("with one: scaled by how well it compressed its own tar stream, with a margin", () => {
    const previous = { bytes: 100 * MiB, entries: 1000, size: 25 * MiB };
    const ratio = (25 * MiB) / (100 * MiB + 1000 * 2048 + 10240);
    expect(estimateSize({ compression: "gzip" }, { bytes: 200 * MiB, entries: 2000 }, previous)).toBe(Math.ceil((200 * MiB + 2000 * 2048 + 10240) * ratio * 1.1) + MiB);
  });

  test("a tiny earlier archive, bigger than its content, does not blow the estimate up", () => {
    // 7 small files: the archive (600 bytes) is larger than their content (500 bytes)
    const previous = { bytes: 500, entries: 7, size: 600 };
    const e = estimateSize({ compression: "gzip" }, { bytes: 4 * MiB, entries: 3000 }, previous);
    expect(e).toBeLessThan(2 * MiB);
    expect(e).toBeGreaterThan(MiB);
  });

  test("never below the tar stream when the data stopped compressing", () => {
    const previous = { bytes: 1000 * MiB, entries: 10, size: 1001 * MiB };
    const now = { bytes: 500 * MiB, entries: 10 };
    expect(estimateSize({ compression: "zstd" }, now, previous)).toBeGreaterThanOrEqual(500 * MiB + 10 * 2048 + 10240);
  });
});
