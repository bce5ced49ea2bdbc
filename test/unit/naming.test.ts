import { describe, expect, test } from "bun:test";
import { nextArchiveName } from "../../src/core/server/server.ts";
import { archiveTime, compressionOf, isArchiveName, parseArchiveName, sortArchives } from "../../src/core/state/naming.ts";
import { seeded } from "../helpers/random.ts";

const cfg = { name: "web1", compression: "gzip" } as const;
const at = (iso: string) => new Date(iso);

describe("nextArchiveName", () => {
  const cases: Array<[string, string, string[], string]> = [
    // what, now, names already there, the next name
    ["the first archive: now", "2026-11-26T02:15:03.900Z", [], "web1-20261126-021503.tar.gz"],
    ["later than the newest: now", "2026-11-26T02:15:03Z", ["web1-20261125-021503.tar.gz"], "web1-20261126-021503.tar.gz"],
    ["within the same second: the next second", "2026-11-26T02:15:03.500Z", ["web1-20261126-021503.tar.gz"], "web1-20261126-021504.tar.gz"],
    ["a third within it: the one after", "2026-11-26T02:15:03.700Z", ["web1-20261126-021503.tar.gz", "web1-20261126-021504.tar.gz"], "web1-20261126-021505.tar.gz"],
    ["clock set back: after the newest", "2026-11-20T00:00:00Z", ["web1-20261126-021503.tar.gz"], "web1-20261126-021504.tar.gz"],
    ["an old-style suffixed name is the newest: the second after it", "2026-11-26T02:15:03Z", ["web1-20261126-021503.tar.gz", "web1-20261126-021503-1.tar.gz"], "web1-20261126-021504.tar.gz"],
    ["a temporary of the name being written is taken too", "2026-11-26T02:15:03Z", [".shoot-tmp-web1-20261126-021503.tar.gz"], "web1-20261126-021504.tar.gz"],
    ["another compression in the same second", "2026-11-26T02:15:03Z", ["web1-20261126-021503.tar.zst"], "web1-20261126-021504.tar.gz"],
    ["another host's archives do not count", "2026-11-26T02:15:03Z", ["db1-20261127-000000.tar.gz"], "web1-20261126-021503.tar.gz"],
  ];
  test.each(cases)("%s", (_what, now, existing, want) => {
    expect(nextArchiveName(cfg, at(now), existing)).toBe(want);
  });

  test("names made in bursts and with a clock that jumps sort by age as plain text, and as sortArchives sorts them", () => {
    const rand = seeded(20261126);
    const names: string[] = [];
    let now = Date.parse("2026-11-26T00:00:00Z");
    for (let i = 0; i < 500; i++) {
      // mostly within the same second, sometimes a day later, sometimes the clock set back
      const r = rand();
      now += r < 0.6 ? Math.floor(rand() * 300) : r < 0.9 ? 86_400_000 : -Math.floor(rand() * 3600_000);
      names.push(nextArchiveName(cfg, new Date(now), names));
    }
    expect(new Set(names).size).toBe(names.length);
    expect([...names].sort()).toEqual(names);
    expect(sortArchives([...names].reverse())).toEqual(names);
    expect(names.every((n) => isArchiveName(n, "web1"))).toBe(true);
  });
});

describe("sortArchives", () => {
  test("old names with a sequence suffix take their place after the name without one", () => {
    const names = ["web1-20261126-021503-2.tar.gz", "web1-20261126-021504.tar.gz", "web1-20261126-021503.tar.gz", "web1-20261126-021503-1.tar.gz", "web1-20261125-000000.tar.zst"];
    expect(sortArchives(names)).toEqual([
      "web1-20261125-000000.tar.zst", "web1-20261126-021503.tar.gz", "web1-20261126-021503-1.tar.gz", "web1-20261126-021503-2.tar.gz", "web1-20261126-021504.tar.gz",
    ]);
    // as plain text they sort wrong: the reason new names never carry a suffix
    expect([...names].sort().indexOf("web1-20261126-021503-1.tar.gz")).toBeLessThan([...names].sort().indexOf("web1-20261126-021503.tar.gz"));
  });

  test("only names of the pattern count, optionally of one prefix", () => {
    expect(sortArchives(["web1-20261126-021503.tar.gz", "x.tar.gz", ".shoot-tmp-web1-20261126-021503.tar.gz", "db1-20261126-021503.tar"], "web1")).toEqual(["web1-20261126-021503.tar.gz"]);
    expect(parseArchiveName("web1-20261126-021503-1.tar.gz")?.key).toBe("202611260215030001");
    expect(archiveTime("web1-20261126-021503.tar.gz")?.toISOString()).toBe("2026-11-26T02:15:03.000Z");
  });
});

describe("compressionOf", () => {
  const cases: Array<[string, ReturnType<typeof compressionOf>]> = [
    ["web-20261204-010000.tar.gz", "gzip"],
    ["web-20261204-010000-L2.tar.zst", "zstd"],
    ["web-20261204-010000.tar", "none"],
    ["web-20261204-010000.tar.gz.list", undefined],
    ["web-20261204-010000.tar.gz.md5", undefined],
    ["notes.txt", undefined],
  ];
  for (const [file, want] of cases) test(file, () => expect(compressionOf(file)).toBe(want));
});
