/**
 * One configured offsite store: its credentials, how a copy's objects are named in it, and
 * which named code each kind of failure is.
 *
 * Keys: <prefix><source>/<archive>, <archive>.md5 and <archive>.list beside it; an encrypted
 * copy is <archive>.age (and <archive>.list.age), its .md5 stays the plaintext's md5sum line so
 * that `md5sum -c` works on what `age -d` gives back.
 */
import fs from "node:fs";
import type { CodeName } from "../common/codes.ts";
import type { OffsiteConfig } from "../common/config.ts";
import { ShootError, errorMessage } from "../common/errors.ts";
import { CHECKSUM_SUFFIX, LIST_SUFFIX, parseArchiveName } from "../state/naming.ts";
import { S3, S3Failure, type FailureKind } from "./s3.ts";
import type { Credentials } from "./sigv4.ts";

export const AGE_SUFFIX = ".age";

/** Metadata every archive object carries (x-amz-meta-…): what the server recorded. */
export const META = { sha256: "shoot-sha256", md5: "shoot-md5", size: "shoot-size", encrypted: "shoot-encrypted", verified: "shoot-verified" } as const;

const KIND_CODES: Record<FailureKind, CodeName> = {
  unreachable: "STORE_UNREACHABLE",
  credentials: "STORE_CREDENTIALS",
  bucket: "STORE_BUCKET_MISSING",
  checksum: "STORE_CHECKSUM_MISMATCH",
  locked: "STORE_LOCKED",
  missing: "STORE_OBJECT_MISSING",
  other: "STORE_FAILED",
};

export function codeOfKind(kind: FailureKind): CodeName {
  return KIND_CODES[kind];
}

/** The named code of anything an offsite operation threw. */
export function failureCode(e: unknown): CodeName {
  if (e instanceof S3Failure) return KIND_CODES[e.kind];
  if (e instanceof StoreError) return e.codeName;
  return "STORE_FAILED";
}

export class StoreError extends ShootError {
  constructor(readonly codeName: CodeName, message: string) {
    super(codeName, message);
    this.name = "StoreError";
  }
}

/** `key = value` lines (the AWS credentials file's form; [section] lines and comments ignored). */
export function parseCredentials(text: string): Partial<Credentials> {
  const out: Partial<Credentials> = {};
  for (const raw of text.split("\n")) {
    const m = /^\s*([A-Za-z_]+)\s*=\s*(.*?)\s*$/.exec(raw);
    if (!m) continue;
    const k = m[1]!.toLowerCase();
    if (k === "aws_access_key_id" || k === "access_key_id") out.accessKeyId = m[2];
    else if (k === "aws_secret_access_key" || k === "secret_access_key") out.secretAccessKey = m[2];
    else if (k === "aws_session_token" || k === "session_token") out.sessionToken = m[2];
  }
  return out;
}

export interface CredentialsRead {
  creds: Credentials;
  /** A warning about the file's mode, as for password_file. */
  warning?: string;
}

/** The store's credentials: credentials_file, else $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY. */
export function readCredentials(cfg: OffsiteConfig, env: Record<string, string | undefined>): CredentialsRead {
  const fail = (why: string): never => {
    throw new StoreError("STORE_CREDENTIALS", `store ${cfg.name}: ${why}`);
  };
  if (cfg.credentials_file) {
    let text: string;
    let mode: number;
    try {
      text = fs.readFileSync(cfg.credentials_file, "utf8");
      mode = fs.statSync(cfg.credentials_file).mode;
    } catch (e) {
      return fail(`credentials_file ${cfg.credentials_file} cannot be read: ${errorMessage(e)}`);
    }
    const c = parseCredentials(text);
    if (!c.accessKeyId || !c.secretAccessKey) return fail(`credentials_file ${cfg.credentials_file} lacks aws_access_key_id or aws_secret_access_key`);
    const warning = (mode & 0o077) !== 0 ? `credentials_file ${cfg.credentials_file} can be read by other users (mode ${(mode & 0o777).toString(8)}); chmod 600 it` : undefined;
    return { creds: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken }, warning };
  }
  if (!env.AWS_ACCESS_KEY_ID || !env.AWS_SECRET_ACCESS_KEY) return fail("no credentials: set credentials_file, or $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY");
  return { creds: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN || undefined } };
}

export interface Store {
  cfg: OffsiteConfig;
  s3: S3;
  warning?: string;
}

export function openStore(cfg: OffsiteConfig, env: Record<string, string | undefined>, clock: () => Date = () => new Date()): Store {
  const { creds, warning } = readCredentials(cfg, env);
  const s3 = new S3({ endpoint: cfg.endpoint, region: cfg.region, bucket: cfg.bucket, creds, timeoutMs: cfg.timeout }, clock);
  return { cfg, s3, warning };
}

export function encrypted(cfg: OffsiteConfig): boolean {
  return (cfg.encrypt_to?.length ?? 0) > 0;
}

/** The folder of a source's objects. */
export function sourcePrefix(cfg: OffsiteConfig, source: string): string {
  return `${cfg.prefix}${source}/`;
}

export interface CopyKeys {
  archive: string;
  md5: string;
  list: string;
}

export function keysOf(cfg: OffsiteConfig, source: string, file: string, isEncrypted = encrypted(cfg)): CopyKeys {
  const base = `${sourcePrefix(cfg, source)}${file}`;
  const enc = isEncrypted ? AGE_SUFFIX : "";
  return { archive: `${base}${enc}`, md5: `${base}${CHECKSUM_SUFFIX}`, list: `${base}${LIST_SUFFIX}${enc}` };
}

/** An object name in a source's folder that is an archive (plain or encrypted): its archive name. */
export function archiveOfKey(name: string): { file: string; encrypted: boolean } | undefined {
  const isEnc = name.endsWith(AGE_SUFFIX);
  const file = isEnc ? name.slice(0, -AGE_SUFFIX.length) : name;
  return parseArchiveName(file) ? { file, encrypted: isEnc } : undefined;
}

/** Does this store take copies of this source? */
export function storeTakes(cfg: OffsiteConfig, source: string): boolean {
  return !cfg.sources || cfg.sources.includes(source);
}
