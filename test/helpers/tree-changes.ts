/**
 * A small tree and seeded random changes to it, of every kind an incremental archive must
 * carry: files created, rewritten (also at the same size with the old mtime put back), deleted
 * and renamed; directories created empty, deleted and renamed whole; a name turning from file
 * to directory to symbolic link and back; mode-only, owner-only and mtime-only changes; hard
 * links added and removed; names with spaces, newlines and non-ASCII letters.
 */
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "./random.ts";

const NAMES = ["a", "b", "c.txt", "data.bin", "notes", "x y", "new\nline", "ünï", "deep", "log.1", "z"];
const MODES = [0o644, 0o600, 0o640, 0o755, 0o700, 0o444];
const DIR_MODES = [0o755, 0o700, 0o750, 0o775];
const OWNERS = [0, 1000, 1001, 4242];

type Rand = () => number;
const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

interface Inventory {
  dirs: string[];
  files: string[];
  links: string[];
}

/** Every entry under `root` (the root itself among the directories), by kind. */
function inventory(root: string): Inventory {
  const inv: Inventory = { dirs: [], files: [], links: [] };
  const visit = (p: string) => {
    const st = fs.lstatSync(p);
    if (st.isSymbolicLink()) inv.links.push(p);
    else if (st.isFile()) inv.files.push(p);
    else if (st.isDirectory()) {
      inv.dirs.push(p);
      for (const n of fs.readdirSync(p).sort()) visit(path.join(p, n));
    }
  };
  visit(root);
  return inv;
}

function content(rand: Rand): Uint8Array {
  const n = pick(rand, [0, 1, 100, 511, 512, 513, 4096, 20_000, 70_000]);
  return randomBytes(rand, n);
}

/** A name not yet taken in `dir`. */
function freshName(dir: string, rand: Rand): string {
  for (let i = 0; ; i++) {
    const n = i === 0 ? pick(rand, NAMES) : `${pick(rand, NAMES)}-${i}`;
    if (!fs.lstatSync(path.join(dir, n), { throwIfNoEntry: false })) return n;
  }
}

/**
 * A target for a symbolic link at `at`, never its own name: a link to itself is a loop, which a
 * restore refuses as it refuses any link it cannot follow inside the target.
 */
function linkTarget(at: string, rand: Rand, targets: readonly string[]): string {
  const t = pick(rand, targets);
  return t === path.basename(at) ? `../${t}` : t;
}

/** The first tree: a few directories with files, links, hard links and an empty directory. */
export function seedChangeTree(root: string, rand: Rand): void {
  fs.mkdirSync(root, { recursive: true });
  for (const d of ["etc", "home/ann", "home/bob/empty", "var/log", "srv/www/img"]) fs.mkdirSync(path.join(root, d), { recursive: true });
  for (const f of ["etc/hosts", "etc/app.conf", "home/ann/notes", "home/ann/new\nline", "var/log/syslog", "srv/www/index.html", "srv/www/img/logo.bin", "home/bob/ünï"]) {
    fs.writeFileSync(path.join(root, f), content(rand));
  }
  for (const d of ["etc", "home/ann", "var/log", "srv/www"]) for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(root, d, `file${i}`), content(rand));
  fs.linkSync(path.join(root, "etc/hosts"), path.join(root, "srv/hosts.hard"));
  fs.symlinkSync("../etc/hosts", path.join(root, "srv/hosts.link"));
  fs.symlinkSync("www", path.join(root, "srv/current"));
}

/** The kinds of change, each a function that makes one (or returns false when it found nothing to change). */
const CHANGES: Record<string, (root: string, inv: Inventory, rand: Rand) => boolean> = {
  create(root, inv, rand) {
    const dir = pick(rand, inv.dirs);
    fs.writeFileSync(path.join(dir, freshName(dir, rand)), content(rand));
    return true;
  },
  rewrite(_root, inv, rand) {
    if (!inv.files.length) return false;
    fs.writeFileSync(pick(rand, inv.files), content(rand));
    return true;
  },
  sameSizeOldTime(_root, inv, rand) {
    const f = inv.files.find((p) => fs.statSync(p).size > 0 && rand() < 0.5);
    if (!f) return false;
    const st = fs.statSync(f);
    fs.writeFileSync(f, randomBytes(rand, st.size));
    fs.utimesSync(f, st.atime, st.mtime);
    return true;
  },
  append(_root, inv, rand) {
    if (!inv.files.length) return false;
    fs.appendFileSync(pick(rand, inv.files), randomBytes(rand, 1 + Math.floor(rand() * 3000)));
    return true;
  },
  delete(_root, inv, rand) {
    const all = [...inv.files, ...inv.links];
    if (!all.length) return false;
    fs.rmSync(pick(rand, all));
    return true;
  },
  deleteDir(root, inv, rand) {
    const dirs = inv.dirs.filter((d) => d !== root);
    if (!dirs.length) return false;
    fs.rmSync(pick(rand, dirs), { recursive: true });
    return true;
  },
  rename(_root, inv, rand) {
    const all = [...inv.files, ...inv.links];
    if (!all.length) return false;
    const to = pick(rand, inv.dirs);
    fs.renameSync(pick(rand, all), path.join(to, freshName(to, rand)));
    return true;
  },
  renameDir(root, inv, rand) {
    const dirs = inv.dirs.filter((d) => d !== root);
    if (!dirs.length) return false;
    const from = pick(rand, dirs);
    const to = pick(rand, inv.dirs.filter((d) => d !== from && !d.startsWith(`${from}/`)));
    fs.renameSync(from, path.join(to, freshName(to, rand)));
    return true;
  },
  emptyDir(_root, inv, rand) {
    const dir = pick(rand, inv.dirs);
    fs.mkdirSync(path.join(dir, freshName(dir, rand)), { mode: pick(rand, DIR_MODES) });
    return true;
  },
  fileToDir(_root, inv, rand) {
    if (!inv.files.length) return false;
    const f = pick(rand, inv.files);
    fs.rmSync(f);
    fs.mkdirSync(f);
    fs.writeFileSync(path.join(f, "inside"), content(rand));
    return true;
  },
  dirToFile(root, inv, rand) {
    const dirs = inv.dirs.filter((d) => d !== root);
    if (!dirs.length) return false;
    const d = pick(rand, dirs);
    fs.rmSync(d, { recursive: true });
    fs.writeFileSync(d, content(rand));
    return true;
  },
  fileToLink(_root, inv, rand) {
    if (!inv.files.length) return false;
    const f = pick(rand, inv.files);
    fs.rmSync(f);
    fs.symlinkSync(linkTarget(f, rand, ["hosts", "../etc", "missing-target", "a b"]), f);
    return true;
  },
  linkToFile(_root, inv, rand) {
    if (!inv.links.length) return false;
    const l = pick(rand, inv.links);
    fs.rmSync(l);
    fs.writeFileSync(l, content(rand));
    return true;
  },
  dirToLink(root, inv, rand) {
    const dirs = inv.dirs.filter((d) => d !== root);
    if (!dirs.length) return false;
    const d = pick(rand, dirs);
    fs.rmSync(d, { recursive: true });
    fs.symlinkSync(pick(rand, [".", "..", "elsewhere"]), d);
    return true;
  },
  linkToDir(_root, inv, rand) {
    if (!inv.links.length) return false;
    const l = pick(rand, inv.links);
    fs.rmSync(l);
    fs.mkdirSync(l);
    fs.writeFileSync(path.join(l, "was-a-link"), content(rand));
    return true;
  },
  retarget(_root, inv, rand) {
    if (!inv.links.length) return false;
    const l = pick(rand, inv.links);
    fs.rmSync(l);
    fs.symlinkSync(linkTarget(l, rand, ["notes", "../var", "new target", "x\ny"]), l);
    return true;
  },
  chmod(root, inv, rand) {
    if (rand() < 0.3) {
      fs.chmodSync(pick(rand, inv.dirs.filter((d) => d !== root).concat(root)), pick(rand, DIR_MODES));
      return true;
    }
    if (!inv.files.length) return false;
    fs.chmodSync(pick(rand, inv.files), pick(rand, MODES));
    return true;
  },
  chown(_root, inv, rand) {
    const all = [...inv.files, ...inv.links, ...inv.dirs];
    if (process.getuid?.() !== 0) return false;
    const p = pick(rand, all);
    fs.lchownSync(p, pick(rand, OWNERS), pick(rand, OWNERS));
    return true;
  },
  touch(_root, inv, rand) {
    const all = [...inv.files, ...inv.dirs];
    const p = pick(rand, all);
    const t = new Date(1_600_000_000_000 + Math.floor(rand() * 1e11));
    fs.utimesSync(p, t, t);
    return true;
  },
  hardLink(_root, inv, rand) {
    if (!inv.files.length) return false;
    const dir = pick(rand, inv.dirs);
    fs.linkSync(pick(rand, inv.files), path.join(dir, freshName(dir, rand)));
    return true;
  },
  unlinkOne(_root, inv, rand) {
    let linked = inv.files.find((f) => fs.statSync(f).nlink > 1);
    if (!linked && inv.files.length) {
      // none yet: give one a second name, then remove the first
      linked = pick(rand, inv.files);
      const dir = pick(rand, inv.dirs);
      fs.linkSync(linked, path.join(dir, freshName(dir, rand)));
    }
    if (!linked) return false;
    fs.rmSync(linked);
    return true;
  },
};

export const CHANGE_KINDS = Object.keys(CHANGES);
/** What a random change picks from: files are made more often than anything else, so that the tree does not run dry of them. */
const WEIGHTED = [...CHANGE_KINDS, "create", "create", "create", "rewrite", "append"];

/**
 * Make `n` random changes to the tree under `root`; returns their kinds, in order (what a
 * failure message needs). `due`: kinds not made yet, tried first (one that finds nothing to
 * change stays due), so that a short run still makes every kind.
 */
export function changeTree(root: string, rand: Rand, n: number, counts?: Map<string, number>, due?: string[]): string[] {
  const done: string[] = [];
  const make = (kind: string) => {
    if (!CHANGES[kind]!(root, inventory(root), rand)) return false;
    done.push(kind);
    counts?.set(kind, (counts.get(kind) ?? 0) + 1);
    return true;
  };
  const first = due?.findIndex((k) => make(k)) ?? -1;
  if (first >= 0) due!.splice(first, 1);
  for (let i = first >= 0 ? 1 : 0; i < n; i++) {
    const kind = pick(rand, WEIGHTED);
    if (make(kind)) due?.splice(due.indexOf(kind) >>> 0, due.includes(kind) ? 1 : 0);
  }
  return done;
}
