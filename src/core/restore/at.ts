/**
 * File calls relative to an open directory that never follow a symbolic link: openat,
 * mkdirat, unlinkat, linkat, symlinkat, fchownat, utimensat, futimens, readlinkat and statx,
 * from the C library through bun:ffi (node:fs has none of them). A restore reaches every name
 * through descriptors of directories it opened one component at a time with O_NOFOLLOW, and
 * changes what it made through their descriptors or with AT_SYMLINK_NOFOLLOW: whatever an
 * archive claims, it can only act on what the disk holds below the target.
 *
 * Errors are thrown as Node's are (an Error with `code` "ENOENT", "ELOOP", …), so that
 * errnoCode() reads them. Descriptors are plain numbers: node:fs writes, fchmods and closes them.
 */
import fs from "node:fs";
import os from "node:os";
import util from "node:util";

export type DiskKind = "none" | "dir" | "file" | "symlink" | "other";

export interface At {
  /** A directory below `dirfd`, opened without following a link (ENOTDIR or ELOOP when `name` is one). */
  openDir(dirfd: number, name: string): number;
  /** The directory at an absolute path (the restore's target), opened without following a last link. */
  openRoot(path: string): number;
  /** A new file, created only where nothing is (O_EXCL), never through a link, writable. */
  createFile(dirfd: number, name: string, mode: number): number;
  mkdir(dirfd: number, name: string, mode: number): void;
  /** Remove a name that is not a directory (a link is removed, never followed). */
  unlink(dirfd: number, name: string): void;
  /** A hard link to what `fromName` is (a link itself is not followed). */
  link(fromDirfd: number, fromName: string, toDirfd: number, toName: string): void;
  symlink(target: string, dirfd: number, name: string): void;
  /** Owner of the name itself, not of what a link points to. */
  lchown(dirfd: number, name: string, uid: number, gid: number): void;
  /** Modification (and access) time of the name itself, in nanoseconds. */
  lutimes(dirfd: number, name: string, ns: bigint): void;
  futimes(fd: number, ns: bigint): void;
  /** What the name is, not following a link. */
  kind(dirfd: number, name: string): DiskKind;
  readlink(dirfd: number, name: string): string;
  /** Close a descriptor one of these opened (quietly: nothing is worth more than what led here). */
  close(fd: number): void;
}

const linux = process.platform === "linux";
/** AT_* flags and O_CLOEXEC, which fs.constants does not carry: Linux's, else macOS's. */
const AT_FDCWD = linux ? -100 : -2;
const AT_SYMLINK_NOFOLLOW = linux ? 0x100 : 0x20;
const O_CLOEXEC = linux ? 0o2000000 : 0x1000000;
const C = fs.constants;
const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | O_CLOEXEC;
const CREATE_FLAGS = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | O_CLOEXEC;

/** The longest path a call takes (PATH_MAX, with its NUL). */
const PATH_ROOM = 4096;

type Fn = (...args: unknown[]) => number;

function systemError(call: string, name: string, errno: number): Error {
  const [code, text] = util.getSystemErrorMap().get(-errno) ?? [`E${errno}`, `error ${errno}`];
  return Object.assign(new Error(`${call} ${JSON.stringify(name)}: ${text} (${code})`), { code, errno: -errno, syscall: call });
}

/** The libc functions this needs, from the first library that has them all. */
function load(): Record<string, Fn> {
  const ffi = require("bun:ffi") as typeof import("bun:ffi");
  const T = ffi.FFIType;
  const common = {
    openat: { args: [T.i32, T.ptr, T.i32, T.u32], returns: T.i32 },
    mkdirat: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
    unlinkat: { args: [T.i32, T.ptr, T.i32], returns: T.i32 },
    linkat: { args: [T.i32, T.ptr, T.i32, T.ptr, T.i32], returns: T.i32 },
    symlinkat: { args: [T.ptr, T.i32, T.ptr], returns: T.i32 },
    fchownat: { args: [T.i32, T.ptr, T.u32, T.u32, T.i32], returns: T.i32 },
    utimensat: { args: [T.i32, T.ptr, T.ptr, T.i32], returns: T.i32 },
    futimens: { args: [T.i32, T.ptr], returns: T.i32 },
    readlinkat: { args: [T.i32, T.ptr, T.ptr, T.u64], returns: T.i64 },
  } as const;
  const libs = linux ? ["libc.so.6", "libc.so"] : ["libSystem.B.dylib", "/usr/lib/libSystem.B.dylib"];
  let last: unknown;
  for (const lib of libs) {
    try {
      const errnoSym = linux ? "__errno_location" : "__error";
      const base = ffi.dlopen(lib, { ...common, [errnoSym]: { args: [], returns: T.ptr } });
      const syms = base.symbols as unknown as Record<string, Fn>;
      const out: Record<string, Fn> = { ...syms, errno: () => ffi.read.i32(syms[errnoSym]!() as unknown as import("bun:ffi").Pointer, 0) };
      try {
        const sx = ffi.dlopen(lib, { statx: { args: [T.i32, T.ptr, T.i32, T.u32, T.ptr], returns: T.i32 } });
        out.statx = sx.symbols.statx as unknown as Fn;
      } catch {
        // no statx (macOS, old musl): kind() falls back to lstat by path
      }
      return out;
    } catch (e) {
      last = e;
    }
  }
  throw new Error(`the C library's openat and friends cannot be loaded (${last instanceof Error ? last.message : String(last)})`);
}

let loaded: Record<string, Fn> | undefined;

/** The calls, bound once per process. Throws where the C library cannot be reached. */
export function openAt(): At {
  loaded ??= load();
  return new LibcAt(loaded);
}

class LibcAt implements At {
  private readonly enc = new TextEncoder();
  private readonly a = new Uint8Array(PATH_ROOM + 1);
  private readonly b = new Uint8Array(PATH_ROOM + 1);
  private readonly times = new BigInt64Array(4);
  private readonly statBuf = new Uint8Array(256);
  private readonly linkBuf = new Uint8Array(PATH_ROOM);
  /** Paths of the directory descriptors opened here, for kind() where there is no statx. */
  private readonly dirPaths = new Map<number, string>();

  constructor(private readonly f: Record<string, Fn>) {}

  /** `s` as a NUL-terminated C string in one of the two buffers. */
  private c(s: string, buf: Uint8Array, call: string): Uint8Array {
    const { read, written } = this.enc.encodeInto(s, buf);
    if (read !== s.length || written >= PATH_ROOM) throw systemError(call, s.slice(0, 64), os.constants.errno.ENAMETOOLONG);
    if (s.includes("\0")) throw systemError(call, s, os.constants.errno.EINVAL);
    buf[written] = 0;
    return buf;
  }

  private check(r: number, call: string, name: string): number {
    if (r < 0) throw systemError(call, name, this.f.errno!());
    return r;
  }

  openDir(dirfd: number, name: string): number {
    const fd = this.check(this.f.openat!(dirfd, this.c(name, this.a, "openat"), DIR_FLAGS, 0), "openat", name);
    if (!this.f.statx) this.dirPaths.set(fd, `${this.dirPaths.get(dirfd) ?? "?"}/${name}`);
    return fd;
  }

  openRoot(path: string): number {
    const fd = this.check(this.f.openat!(AT_FDCWD, this.c(path, this.a, "open"), DIR_FLAGS, 0), "open", path);
    if (!this.f.statx) this.dirPaths.set(fd, path);
    return fd;
  }

  createFile(dirfd: number, name: string, mode: number): number {
    return this.check(this.f.openat!(dirfd, this.c(name, this.a, "openat"), CREATE_FLAGS, mode), "openat", name);
  }

  mkdir(dirfd: number, name: string, mode: number): void {
    this.check(this.f.mkdirat!(dirfd, this.c(name, this.a, "mkdirat"), mode), "mkdirat", name);
  }

  unlink(dirfd: number, name: string): void {
    this.check(this.f.unlinkat!(dirfd, this.c(name, this.a, "unlinkat"), 0), "unlinkat", name);
  }

  link(fromDirfd: number, fromName: string, toDirfd: number, toName: string): void {
    this.check(this.f.linkat!(fromDirfd, this.c(fromName, this.a, "linkat"), toDirfd, this.c(toName, this.b, "linkat"), 0), "linkat", toName);
  }

  symlink(target: string, dirfd: number, name: string): void {
    this.check(this.f.symlinkat!(this.c(target, this.a, "symlinkat"), dirfd, this.c(name, this.b, "symlinkat")), "symlinkat", name);
  }

  lchown(dirfd: number, name: string, uid: number, gid: number): void {
    this.check(this.f.fchownat!(dirfd, this.c(name, this.a, "fchownat"), uid, gid, AT_SYMLINK_NOFOLLOW), "fchownat", name);
  }

  private setTimes(ns: bigint): BigInt64Array {
    const sec = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
    const t = this.times;
    t[0] = t[2] = sec;
    t[1] = t[3] = ns - sec * 1_000_000_000n;
    return t;
  }

  lutimes(dirfd: number, name: string, ns: bigint): void {
    this.check(this.f.utimensat!(dirfd, this.c(name, this.a, "utimensat"), this.setTimes(ns), AT_SYMLINK_NOFOLLOW), "utimensat", name);
  }

  futimes(fd: number, ns: bigint): void {
    this.check(this.f.futimens!(fd, this.setTimes(ns)), "futimens", String(fd));
  }

  kind(dirfd: number, name: string): DiskKind {
    if (!this.f.statx) return kindByPath(`${this.dirPaths.get(dirfd) ?? "?"}/${name}`);
    // STATX_TYPE only; the type is in stx_mode (16 bits at byte 28)
    const r = this.f.statx(dirfd, this.c(name, this.a, "statx"), AT_SYMLINK_NOFOLLOW, 0x1, this.statBuf);
    if (r < 0) {
      const errno = this.f.errno!();
      if (errno === os.constants.errno.ENOENT) return "none";
      throw systemError("statx", name, errno);
    }
    const type = (this.statBuf[28]! | (this.statBuf[29]! << 8)) & 0o170000;
    return type === 0o040000 ? "dir" : type === 0o100000 ? "file" : type === 0o120000 ? "symlink" : "other";
  }

  close(fd: number): void {
    this.dirPaths.delete(fd);
    closeQuietly(fd);
  }

  readlink(dirfd: number, name: string): string {
    const n = Number(this.check(Number(this.f.readlinkat!(dirfd, this.c(name, this.a, "readlinkat"), this.linkBuf, this.linkBuf.length)), "readlinkat", name));
    return new TextDecoder().decode(this.linkBuf.subarray(0, n));
  }
}

function kindByPath(p: string): DiskKind {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (!st) return "none";
  return st.isDirectory() ? "dir" : st.isFile() ? "file" : st.isSymbolicLink() ? "symlink" : "other";
}

/** Close a descriptor these calls opened; a failure to close is not worth more than the error that led here. */
export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}
