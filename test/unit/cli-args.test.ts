import { describe, expect, test } from "bun:test";
import { repeatedFlag } from "../../src/cli/args.ts";

describe("repeatedFlag", () => {
  const cases: Array<[string[], string[]]> = [
    [[], []],
    [["--source", "web1"], ["web1"]],
    [["--source", "web1", "--json", "--source=db1", "mail1"], ["web1", "db1"]],
    [["--config", "/etc/x.toml", "--source", "a", "--source", "b", "--source", "c"], ["a", "b", "c"]],
    [["--source"], []],
    [["--sources", "x", "--source-name", "y"], []],
    [["--", "--source", "x"], []],
  ];
  for (const [argv, want] of cases) test(JSON.stringify(argv), () => expect(repeatedFlag(argv, "source")).toEqual(want));
});
