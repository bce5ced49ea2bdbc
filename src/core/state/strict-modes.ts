/**
 * Directories and secrets that other users may change are refused, as sshd's StrictModes
 * refuses a home directory or an authorized_keys file others can write: a user who may write in
 * dest_dir could plant a link where a copy is about to go, replace a verified copy, or fake a
 * report waiting in the spool. Each answer names the problem and the command that fixes it.
 *
 * A directory must belong to the user running shoot and be writable by no one else; each
 * directory above it must belong to root or to that user and be writable by no one else unless
 * its sticky bit is set (as /tmp's is: others cannot then move what they do not own). A secret
 * file must belong to that user and be readable by no one else.
 */
import fs from "node:fs";
import path from "node:path";

/** A path as it can be pasted into a shell. */
function shellWord(p: string): string {
  return /^[\w@%+=:,./-]+$/.test(p) ? p : `'${p.replace(/'/g, "'\\''")}'`;
}

let names: Map<number, string> | undefined;

/** A user's name from /etc/passwd, else `uid N`. */
export function userName(uid: number): string {
  if (!names) {
    names = new Map();
    try {
      for (const line of fs.readFileSync("/etc/passwd", "utf8").split("\n")) {
        const f = line.split(":");
        if (f.length > 3 && /^\d+$/.test(f[2]!) && !names.has(Number(f[2]))) names.set(Number(f[2]), f[0]!);
      }
    } catch {
      // no passwd file: numbers it is
    }
  }
  return names.get(uid) ?? `uid ${uid}`;
}

/** The user as chown takes it: the name, else the number. */
function chownUser(uid: number): string {
  const n = userName(uid);
  return n.startsWith("uid ") ? String(uid) : shellWord(n);
}

function writers(mode: number): string {
  const g = (mode & 0o020) !== 0;
  const o = (mode & 0o002) !== 0;
  return g && o ? "its group and all other users" : g ? "its group" : "all other users";
}

const modeText = (mode: number) => (mode & 0o7777).toString(8).padStart(4, "0");

function stat(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
}

/**
 * Why shoot must not write in `dir` (what: "dest_dir", "backup_dir", …), with the fix; undefined
 * when it is safe, and when it does not exist yet (shoot creates it for its user alone).
 */
export function unsafeDir(dir: string, what: string, uid = process.getuid?.()): string | undefined {
  if (uid === undefined) return undefined;
  const st = stat(dir);
  if (!st) return undefined;
  const me = userName(uid);
  if (st.uid !== uid) {
    return `${what} ${dir} belongs to ${userName(st.uid)}, not to ${me}, who runs shoot: run chown ${chownUser(uid)} ${shellWord(dir)} (or run shoot as ${userName(st.uid)})`;
  }
  if ((st.mode & 0o022) !== 0) {
    return `${what} ${dir} can be written by ${writers(st.mode)} (mode ${modeText(st.mode)}): run chmod go-w ${shellWord(dir)}`;
  }
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch {
    return undefined;
  }
  for (let up = path.dirname(real), below = real; up !== below; below = up, up = path.dirname(up)) {
    const s = stat(up);
    if (!s) continue;
    if (s.uid !== 0 && s.uid !== uid) {
      return `the directory ${up} above ${what} ${dir} belongs to ${userName(s.uid)}, who could put another directory in its place: run chown root ${shellWord(up)}, or move ${what} elsewhere`;
    }
    if ((s.mode & 0o022) !== 0 && (s.mode & 0o1000) === 0) {
      return `the directory ${up} above ${what} ${dir} can be written by ${writers(s.mode)} (mode ${modeText(s.mode)}), who could put another directory in its place: run chmod go-w ${shellWord(up)} (or chmod +t ${shellWord(up)})`;
    }
  }
  return undefined;
}

/** Why a secret file (what: "password_file") is exposed, with the fix; undefined when only its user may read it, or when it does not exist. */
export function exposedSecret(file: string, what: string, uid = process.getuid?.()): string | undefined {
  if (uid === undefined) return undefined;
  const st = stat(file);
  if (!st) return undefined;
  const me = userName(uid);
  if (st.uid !== uid) {
    return `${what} ${file} belongs to ${userName(st.uid)}, not to ${me}, who runs shoot: run chown ${chownUser(uid)} ${shellWord(file)} and chmod 600 ${shellWord(file)}`;
  }
  if ((st.mode & 0o077) !== 0) {
    const who = (st.mode & 0o070) !== 0 && (st.mode & 0o007) !== 0 ? "its group and all other users" : (st.mode & 0o070) !== 0 ? "its group" : "all other users";
    return `${what} ${file} can be read or written by ${who} (mode ${modeText(st.mode)}): run chmod 600 ${shellWord(file)}`;
  }
  return undefined;
}
