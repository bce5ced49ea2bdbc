/**
 * A sandbox full of canaries around a restore's target: files (one owned by the unprivileged
 * user, so that a mode set through a link would take; one writable by all), directories (one
 * writable by all, so that the unprivileged user could create names there), a symbolic link
 * and a hard link. `outside()` records everything about everything outside the target:
 * type, content, mode, owner, times (modification and change), link count, link target, and
 * which names exist. Two records that differ name what a restore did where it must not.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

export const NOBODY = 65534;

export interface Sandbox {
  /** Everything watched is below here. */
  base: string;
  /** base/box: the canaries, and the target. */
  box: string;
  target: string;
  canary: string;
}

export function makeSandbox(base: string): Sandbox {
  const box = path.join(base, "box");
  const canary = path.join(box, "canary");
  const target = path.join(box, "target");
  fs.mkdirSync(path.join(canary, "dir"), { recursive: true });
  fs.mkdirSync(path.join(canary, "open"));
  fs.mkdirSync(target);
  fs.chmodSync(base, 0o755);
  fs.chmodSync(box, 0o755);
  fs.writeFileSync(path.join(canary, "file"), "canary file\n");
  fs.writeFileSync(path.join(canary, "setuid-me"), "a file the unprivileged user owns\n");
  fs.chownSync(path.join(canary, "setuid-me"), NOBODY, NOBODY);
  fs.writeFileSync(path.join(canary, "world"), "writable by all\n");
  fs.chmodSync(path.join(canary, "world"), 0o666);
  fs.writeFileSync(path.join(canary, "dir", "inner"), "inner\n");
  fs.chownSync(path.join(canary, "dir", "inner"), NOBODY, NOBODY);
  fs.chownSync(path.join(canary, "dir"), NOBODY, NOBODY);
  fs.chmodSync(path.join(canary, "open"), 0o777);
  fs.symlinkSync("file", path.join(canary, "link"));
  fs.linkSync(path.join(canary, "file"), path.join(canary, "hard"));
  // times far in the past: a restore that set one would show
  const old = new Date("2001-02-03T04:05:06Z");
  for (const p of ["file", "setuid-me", "world", "dir/inner", "dir", "open", "hard"]) fs.utimesSync(path.join(canary, p), old, old);
  return { base, box, target, canary };
}

export interface Watched {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  nlink: number;
  ino: bigint;
  sha256?: string;
  link?: string;
}

/** Files larger than this are hashed from samples (a sparse file of a terabyte is not read whole). */
const WHOLE = 64 * 1024 * 1024;

function sha256(p: string | Buffer): string {
  const h = crypto.createHash("sha256");
  const fd = fs.openSync(p, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.min(size, 1 << 20));
    if (size <= WHOLE) {
      for (let at = 0, n; (n = fs.readSync(fd, buf, 0, buf.length, at)) > 0; at += n) h.update(buf.subarray(0, n));
    } else {
      // its size, then 64 KiB at the start and at 256 places spread over it
      h.update(`${size}:`);
      for (let i = 0; i <= 256; i++) {
        const at = i === 0 ? 0 : Math.floor((size / 256) * i) - 65_536;
        const n = fs.readSync(fd, buf, 0, 65_536, Math.max(0, at));
        h.update(buf.subarray(0, n));
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest("hex");
}

/**
 * Everything below `base` but the paths left out (a target, whose own entry is left out too: a
 * restore may set its mode; scratch directories others write into).
 */
export function outside(base: string, leftOut: readonly string[]): Map<string, Watched> {
  const out = new Map<string, Watched>();
  const skip = new Set(leftOut);
  const visit = (p: string) => {
    if (skip.has(p)) return;
    const st = fs.lstatSync(p, { bigint: true });
    const type = st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other";
    out.set(path.relative(base, p) || ".", {
      type, mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs,
      nlink: Number(st.nlink), ino: st.ino, sha256: type === "file" ? sha256(p) : undefined, link: type === "symlink" ? fs.readlinkSync(p) : undefined,
    });
    if (type === "dir") for (const n of fs.readdirSync(p)) visit(path.join(p, n));
  };
  visit(base);
  return out;
}

/** What changed between two records, as readable lines. */
export function changes(before: Map<string, Watched>, after: Map<string, Watched>): string[] {
  const out: string[] = [];
  for (const k of after.keys()) if (!before.has(k)) out.push(`new: ${k}`);
  for (const [k, b] of before) {
    const a = after.get(k);
    if (!a) {
      out.push(`gone: ${k}`);
      continue;
    }
    for (const f of ["type", "mode", "uid", "gid", "size", "mtimeNs", "ctimeNs", "nlink", "ino", "sha256", "link"] as const) {
      if (a[f] !== b[f]) out.push(`${k}: ${f} ${String(b[f])} → ${String(a[f])}`);
    }
  }
  return out;
}

/** Remove a tree, however deep (rm walks by descriptors; a path-based walk stops at PATH_MAX). */
export function removeTree(...paths: string[]): void {
  if (paths.length === 0) return;
  const r = Bun.spawnSync(["rm", "-rf", "--one-file-system", ...paths]);
  if (r.exitCode !== 0) throw new Error(`rm -rf ${paths.join(" ")}: ${r.stderr.toString()}`);
}

/** Remove everything in `dir` (names that are not UTF-8 too, trees deeper than PATH_MAX too), and give it to `uid` with mode 0755. */
export function emptyDir(dir: string, uid = 0): void {
  try {
    for (const n of fs.readdirSync(dir, { encoding: "buffer" })) fs.rmSync(Buffer.concat([Buffer.from(`${dir}/`), n]), { recursive: true, force: true });
  } catch {
    // too deep for a walk by path: find walks by descriptors
    const r = Bun.spawnSync(["find", dir, "-mindepth", "1", "-delete"]);
    if (r.exitCode !== 0) throw new Error(`emptying ${dir}: ${r.stderr.toString()}`);
  }
  fs.chownSync(dir, uid, uid);
  fs.chmodSync(dir, 0o755);
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A name as a key: its text, or where it is not UTF-8 its bytes written out, so that it never passes for another. */
function nameKey(b: Buffer): string {
  try {
    return strictUtf8.decode(b);
  } catch {
    return [...b].map((c) => (c < 0x80 ? String.fromCharCode(c) : `\\x${c.toString(16)}`)).join("");
  }
}

export interface Restored {
  type: "dir" | "file" | "symlink" | "other";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  sha256?: string;
  link?: string;
}

/**
 * What a restore made below `dir`, by path relative to it. Each directory is held open and its
 * names looked up through /proc/self/fd, so that trees deeper than PATH_MAX are read whole.
 */
export function restored(dir: string): Map<string, Restored> {
  const out = new Map<string, Restored>();
  const C = fs.constants;
  const visit = (dirFd: number, rel: string) => {
    let names: Buffer[];
    try {
      names = fs.readdirSync(`/proc/self/fd/${dirFd}`, { encoding: "buffer" });
    } catch {
      return; // a directory of mode 0 read by someone else than root: what is in it is not known
    }
    for (const raw of names) {
      const n = nameKey(raw);
      const p = Buffer.concat([Buffer.from(`/proc/self/fd/${dirFd}/`), raw]);
      const r = rel ? `${rel}/${n}` : n;
      const st = fs.lstatSync(p, { bigint: true });
      const type = st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other";
      out.set(r, {
        type, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), size: type === "file" ? Number(st.size) : 0, mtimeNs: st.mtimeNs,
        sha256: type === "file" ? sha256(p) : undefined, link: type === "symlink" ? fs.readlinkSync(p) : undefined,
      });
      if (type !== "dir") continue;
      const fd = fs.openSync(p, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
      try {
        visit(fd, r);
      } finally {
        fs.closeSync(fd);
      }
    }
  };
  const top = fs.openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    visit(top, "");
  } finally {
    fs.closeSync(top);
  }
  return out;
}
