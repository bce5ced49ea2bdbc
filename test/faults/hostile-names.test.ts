/**
 * A compromised server chooses archive names and writes the records that name them. Whatever
 * it names, the backup host never lets a name decide which copy is newest: a name dated in the
 * future is refused (FUTURE_NAME) and nothing is pulled; copies are ordered by when they were
 * verified; the copy verified last is never removed, in that run or a later one, also when an
 * earlier version of shoot left a copy dated 9999 behind. The servers here are backup
 * directories crafted by the test and pulled over the local-path mode the demo uses.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { runClient, writeClientConfig } from "../helpers/client.ts";
import { tempDir } from "../helpers/fixture.ts";
import { randomBytes, writeArchive, writeServerStatus } from "../helpers/serverdir.ts";
import { runShoot } from "../helpers/cli.ts";
import { faultFile, injected } from "../helpers/faults.ts";
import { archiveName, md5Line } from "../../src/core/state/naming.ts";
import { COPY_INDEX, heldCopies } from "../../src/core/state/copies.ts";

faultFile(import.meta.path);

const T = 60_000;
const base = tempDir("shoot-hostile-names-");
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** One crafted server pulled by one client: publish an archive under any name, pull, look at the copies. */
class Lane {
  readonly server: string;
  readonly dest: string;
  readonly copies: string;
  readonly config: string;
  /** Bytes of every genuine archive published, by name. */
  readonly bytes = new Map<string, Uint8Array>();
  constructor(readonly name: string, keep: number) {
    this.server = path.join(base, name, "server");
    this.dest = path.join(base, name, "dest");
    this.copies = path.join(this.dest, name);
    fs.mkdirSync(this.server, { recursive: true, mode: 0o700 });
    this.config = writeClientConfig(path.join(base, name, "client.toml"), { dest: this.dest, keep, sources: [{ name, remote: this.server }] });
  }

  /** An archive named as at `namedAt`, in a status whose records are `recordAgeMs` old. */
  async publish(namedAt: Date | string, recordAgeMs = 0): Promise<string> {
    const file = typeof namedAt === "string" ? namedAt : archiveName(this.name, namedAt, "gzip");
    const info = await writeArchive(this.server, file, randomBytes(8 * 1024));
    this.bytes.set(file, fs.readFileSync(path.join(this.server, file)));
    writeServerStatus(this.server, info, { final: "NEW_ARCHIVE", ageMs: recordAgeMs });
    return file;
  }

  async pull() {
    return runClient(this.config, this.dest);
  }

  /** The copies held, oldest first in the product's order; each must be a genuine archive, whole. */
  held(): string[] {
    const copies = heldCopies(this.copies);
    for (const c of copies) expect({ c, same: Buffer.compare(fs.readFileSync(path.join(this.copies, c)), this.bytes.get(c) ?? new Uint8Array()) }).toEqual({ c, same: 0 });
    return copies;
  }
}

const inFuture = (ms: number) => new Date(Date.now() + ms);

describe("names from a compromised server", () => {
  test("a name dated after its record or this host's clock is refused with FUTURE_NAME, nothing pulled", async () => {
    const lane = new Lane("future", 2);
    const g1 = await lane.publish(inFuture(-2 * HOUR));
    expect((await lane.pull()).codes).toEqual({ future: 30 });
    const g2 = await lane.publish(inFuture(-HOUR));
    expect((await lane.pull()).codes).toEqual({ future: 4 });
    const good = [g1, g2];
    expect(lane.held()).toEqual(good);

    const cases: Array<[string, string | Date, number, string]> = [
      ["dated 9999", "future-99991231-235959.tar.gz", 0, "9999-12-31T23:59:59.000Z"],
      ["an hour ahead of its record and of the clock", inFuture(HOUR), 0, "later than the record"],
      ["after its record, which is two hours old", inFuture(-30 * MIN), 2 * HOUR, "later than the record that names it"],
      ["six minutes ahead: beyond the slack", inFuture(6 * MIN), 0, "by more than 5m"],
    ];
    for (const [what, named, recordAge, words] of cases) {
      const file = await lane.publish(named, recordAge);
      injected("name from the future");
      const r = await lane.pull();
      expect({ what, exit: r.code, codes: r.codes }).toEqual({ what, exit: 56, codes: { future: 56 } });
      expect(r.outcome.sources[0]!.message).toContain(file);
      expect(r.outcome.sources[0]!.message).toContain(words);
      // nothing of it arrived, and the good copies are untouched
      expect(fs.readdirSync(lane.copies).filter((n) => n.startsWith(file) || n.startsWith(".shoot-tmp"))).toEqual([]);
      expect(lane.held()).toEqual(good);
    }
  }, T);

  test("the copy verified last is never removed, whatever the names say (keep = 1), in that run and later ones", async () => {
    const lane = new Lane("order", 1);
    await lane.publish(inFuture(-HOUR));
    expect((await lane.pull()).codes).toEqual({ order: 30 });
    // within the slack: accepted, and it becomes the newest copy because it was verified last
    const ahead = await lane.publish(inFuture(4 * MIN));
    injected("names out of order", 5);
    expect((await lane.pull()).codes).toEqual({ order: 4 });
    expect(lane.held()).toEqual([ahead]);
    // the server is clean again: its names sort before the one above, yet each new good copy stays
    for (let i = 0; i < 3; i++) {
      const good = await lane.publish(inFuture(-(3 - i) * 1000));
      const r = await lane.pull();
      expect({ i, codes: r.codes }).toEqual({ i, codes: { order: 4 } });
      expect(lane.held()).toEqual([good]);
    }
    // a name from long ago: verified now, so it is the newest and the copy before it goes
    const ancient = await lane.publish(new Date(Date.UTC(2000, 0, 1)));
    expect((await lane.pull()).codes).toEqual({ order: 4 });
    expect(lane.held()).toEqual([ancient]);
    const index = JSON.parse(fs.readFileSync(path.join(lane.copies, COPY_INDEX), "utf8"));
    expect(index.copies.map((c: { file: string }) => c.file)).toEqual([ancient]);
  }, T);

  test("a copy dated 9999 that an earlier version kept: ordered by when it was verified, so it goes and good copies stay", async () => {
    const lane = new Lane("legacy", 2);
    // what an earlier version left: copies with their .md5, written when each was verified; no index
    fs.mkdirSync(lane.copies, { recursive: true, mode: 0o700 });
    const legacy: Array<[string, number]> = [
      [archiveName("legacy", inFuture(-3 * DAY), "gzip"), 3 * DAY],
      ["legacy-99991231-235959.tar.gz", 2 * DAY],
      [archiveName("legacy", inFuture(-DAY), "gzip"), DAY],
    ];
    for (const [file, age] of legacy) {
      const bytes = randomBytes(4096);
      lane.bytes.set(file, bytes);
      fs.writeFileSync(path.join(lane.copies, file), bytes, { mode: 0o600 });
      const md5 = new Bun.CryptoHasher("md5").update(bytes).digest("hex");
      fs.writeFileSync(path.join(lane.copies, `${file}.md5`), md5Line(md5, file), { mode: 0o600 });
      const when = new Date(Date.now() - age);
      fs.utimesSync(path.join(lane.copies, `${file}.md5`), when, when);
    }
    const [, dated9999, newestGood] = legacy.map(([f]) => f);
    expect(lane.held()).toEqual(legacy.map(([f]) => f));
    const next = await lane.publish(inFuture(-MIN));
    injected("copy dated 9999 held");
    expect((await lane.pull()).codes).toEqual({ legacy: 4 });
    // by name the 9999 copy would be the newest and keep = 2 would have removed newestGood
    expect(lane.held()).toEqual([newestGood!, next]);
    expect(fs.existsSync(path.join(lane.copies, dated9999!))).toBe(false);
    const later = await lane.publish(inFuture(-1000));
    expect((await lane.pull()).codes).toEqual({ legacy: 4 });
    expect(lane.held()).toEqual([next, later]);
    // shoot status names the copy verified last as the newest
    const status = await runShoot(["status", "--config", lane.config, "--json"]);
    const source = JSON.parse(status.stdout).roles[0].sources[0];
    expect({ newest: source.archive.file, copies: source.copies }).toEqual({ newest: later, copies: 2 });
  }, T);
});
