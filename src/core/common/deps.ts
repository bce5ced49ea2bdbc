/**
 * The edges the core talks to, as small interfaces: tests pass plain objects instead of
 * mocking modules. `realDeps()` wires the real ones.
 */
import fs from "node:fs";
import os from "node:os";
import { spawner, type Spawner } from "../../io/process.ts";

export interface Clock {
  now(): Date;
}

export interface Disk {
  /** Bytes available to this user on the file system holding `path`. */
  freeBytes(path: string): number;
}

export interface Log {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface Deps {
  clock: Clock;
  disk: Disk;
  spawner: Spawner;
  log: Log;
  hostname: string;
  env: Record<string, string | undefined>;
}

export const systemClock: Clock = { now: () => new Date() };

export const systemDisk: Disk = {
  freeBytes(p: string): number {
    const s = fs.statfsSync(p);
    return Number(s.bavail) * Number(s.bsize);
  },
};

export const silentLog: Log = { info() {}, warn() {}, error() {} };

export function realDeps(log: Log): Deps {
  return {
    clock: systemClock,
    disk: systemDisk,
    spawner,
    log,
    hostname: os.hostname(),
    env: process.env,
  };
}
