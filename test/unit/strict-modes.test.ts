import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { exposedSecret, unsafeDir, userName } from "../../src/core/state/strict-modes.ts";
import { tempDir } from "../helpers/fixture.ts";

const root = tempDir("shoot-strict-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const me = process.getuid!();
const myName = userName(me);
const OTHER = 54321;

/** A directory under a fresh parent of mode 0700, with the given mode (set after umask). */
function dirWith(name: string, mode: number, parentMode = 0o700): string {
  const parent = path.join(root, `${name}-parent`);
  fs.mkdirSync(parent);
  fs.chmodSync(parent, parentMode);
  const dir = path.join(parent, name);
  fs.mkdirSync(dir);
  fs.chmodSync(dir, mode);
  return dir;
}

describe("unsafeDir", () => {
  // what, dir mode, parent mode, uid running, what the answer says (undefined: safe)
  const cases: Array<[string, number, number, number, ((d: string) => string) | undefined]> = [
    ["owner only", 0o700, 0o700, me, undefined],
    ["readable by all", 0o755, 0o755, me, undefined],
    ["writable by its group", 0o775, 0o700, me, (d) => `dest_dir ${d} can be written by its group (mode 0775): run chmod go-w ${d}`],
    ["writable by all", 0o777, 0o700, me, (d) => `dest_dir ${d} can be written by its group and all other users (mode 0777): run chmod go-w ${d}`],
    ["writable by others only", 0o757, 0o700, me, (d) => `dest_dir ${d} can be written by all other users (mode 0757): run chmod go-w ${d}`],
    ["sticky but writable by all: the directory itself must not be", 0o1777, 0o700, me, (d) => `dest_dir ${d} can be written by its group and all other users (mode 1777): run chmod go-w ${d}`],
    ["the directory above writable by all", 0o700, 0o777, me, (d) => `the directory ${path.dirname(d)} above dest_dir ${d} can be written by its group and all other users (mode 0777), who could put another directory in its place: run chmod go-w ${path.dirname(d)} (or chmod +t ${path.dirname(d)})`],
    ["the directory above writable by all, with its sticky bit (as /tmp)", 0o700, 0o1777, me, undefined],
    ["another user runs shoot", 0o700, 0o755, OTHER, (d) => `dest_dir ${d} belongs to ${myName}, not to ${userName(OTHER)}, who runs shoot: run chown ${OTHER} ${d} (or run shoot as ${myName})`],
  ];
  for (const [what, mode, parentMode, uid, want] of cases) {
    test(what, () => {
      const dir = dirWith(what.replace(/\W+/g, "-"), mode, parentMode);
      expect(unsafeDir(dir, "dest_dir", uid)).toBe(want?.(dir));
    });
  }

  test("a directory that does not exist yet is fine (shoot creates it for its user alone)", () => {
    expect(unsafeDir(path.join(root, "not-there"), "dest_dir", me)).toBeUndefined();
  });

  test("a directory above that belongs to another user (not root) is refused", () => {
    const dir = dirWith("other-parent", 0o700, 0o755);
    expect(unsafeDir(dir, "backup_dir", OTHER)).toContain("belongs to"); // the directory itself first
    if (me === 0) {
      fs.chownSync(path.dirname(dir), OTHER, OTHER);
      expect(unsafeDir(dir, "backup_dir", me)).toBe(`the directory ${path.dirname(dir)} above backup_dir ${dir} belongs to ${userName(OTHER)}, who could put another directory in its place: run chown root ${path.dirname(dir)}, or move backup_dir elsewhere`);
    }
  });

  test("a path with a space is quoted in the command", () => {
    const dir = dirWith("with space", 0o770);
    expect(unsafeDir(dir, "the mail spool", me)).toEndWith(`run chmod go-w '${dir}'`);
  });

  test("a link to a directory is judged by the directory and the directories above it", () => {
    const target = dirWith("link-target", 0o700, 0o777);
    const link = path.join(root, "a-link");
    fs.symlinkSync(target, link);
    expect(unsafeDir(link, "dest_dir", me)).toContain(`the directory ${path.dirname(target)} above dest_dir ${link}`);
  });
});

describe("exposedSecret", () => {
  const file = (name: string, mode: number) => {
    const f = path.join(root, name);
    fs.writeFileSync(f, "secret\n");
    fs.chmodSync(f, mode);
    return f;
  };
  const cases: Array<[string, number, number, ((f: string) => string) | undefined]> = [
    ["0600", 0o600, me, undefined],
    ["0400", 0o400, me, undefined],
    ["readable by its group", 0o640, me, (f) => `password_file ${f} can be read or written by its group (mode 0640): run chmod 600 ${f}`],
    ["readable by all", 0o644, me, (f) => `password_file ${f} can be read or written by its group and all other users (mode 0644): run chmod 600 ${f}`],
    ["writable by others", 0o602, me, (f) => `password_file ${f} can be read or written by all other users (mode 0602): run chmod 600 ${f}`],
  ];
  for (const [what, mode, uid, want] of cases) {
    test(what, () => {
      const f = file(`pw-${what.replace(/\W+/g, "-")}`, mode);
      expect(exposedSecret(f, "password_file", uid)).toBe(want?.(f));
    });
  }
  test("belonging to another user", () => {
    const f = file("pw-other", 0o600);
    expect(exposedSecret(f, "password_file", OTHER)).toBe(`password_file ${f} belongs to ${myName}, not to ${userName(OTHER)}, who runs shoot: run chown ${OTHER} ${f} and chmod 600 ${f}`);
  });
  test("missing: nothing to say here (reading it fails with its own message)", () => {
    expect(exposedSecret(path.join(root, "nope"), "password_file", me)).toBeUndefined();
  });
});
