/**
 * What an interrupted run leaves: temporaries, and the checksum, list and piece index of an
 * archive that is gone. Nothing under an archive's own name, and nothing beside an archive
 * that is there, is ever removed.
 */
import { afterAll, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { removeLeftovers } from "../../src/core/state/leftovers.ts";
import { tempDir } from "../helpers/fixture.ts";

const root = tempDir("shoot-leftovers-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

test("removes temporaries and what is beside a missing archive; keeps archives and what is beside them", () => {
  const kept = "web1-20261203-020000.tar.gz";
  const gone = "web1-20261202-020000.tar.gz";
  const files = [
    kept, `${kept}.md5`, `${kept}.list`, `${kept}.pieces`,
    `${gone}.md5`, `${gone}.list`, `${gone}.pieces`,
    ".shoot-tmp-web1-20261204-020000.tar.gz", "server.status", "notes.pieces",
  ];
  for (const f of files) fs.writeFileSync(path.join(root, f), "x");
  const r = removeLeftovers(root);
  expect(r.failed).toEqual([]);
  expect(r.removed.sort()).toEqual([".shoot-tmp-web1-20261204-020000.tar.gz", `${gone}.list`, `${gone}.md5`, `${gone}.pieces`]);
  expect(fs.readdirSync(root).sort()).toEqual(["notes.pieces", "server.status", kept, `${kept}.list`, `${kept}.md5`, `${kept}.pieces`]);
});
