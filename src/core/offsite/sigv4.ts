/**
 * AWS Signature Version 4 for S3 requests: an HMAC-SHA256 (node:crypto) over a canonical form
 * of the request. Used for the calls Bun's S3 client does not make (bucket creation, Object
 * Lock headers, multipart listings, per-part Content-MD5). Pure: the time and the payload's
 * hash come in, the Authorization header goes out.
 */
import { createHash, createHmac } from "node:crypto";

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface SignRequest {
  method: string;
  /** The URI path as sent, already encoded (uriEncodePath). */
  path: string;
  /** Query parameters, not encoded; a bare name has the value "". */
  query: ReadonlyArray<readonly [string, string]>;
  /** Header names in lower case; every one of them is signed. */
  headers: Readonly<Record<string, string>>;
  /** Hex SHA-256 of the body, or "UNSIGNED-PAYLOAD". */
  payloadHash: string;
  region: string;
  service?: string;
  /** YYYYMMDD'T'HHMMSS'Z'. */
  amzDate: string;
}

export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~ as %XX (upper case). */
export function uriEncode(s: string, keepSlash = false): string {
  let out = "";
  for (const byte of Buffer.from(s, "utf8")) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === "/")) out += c;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** A path of segments, each encoded once, slashes kept. */
export function uriEncodePath(p: string): string {
  return uriEncode(p, true);
}

export function canonicalQuery(query: ReadonlyArray<readonly [string, string]>): string {
  return query
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

function signedHeaderNames(headers: Readonly<Record<string, string>>): string[] {
  return Object.keys(headers).map((h) => h.toLowerCase()).sort();
}

export function canonicalRequest(r: SignRequest): string {
  const names = signedHeaderNames(r.headers);
  const lower = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k.toLowerCase(), v]));
  const headerLines = names.map((n) => `${n}:${lower[n]!.trim().replace(/\s+/g, " ")}\n`).join("");
  return [r.method, r.path, canonicalQuery(r.query), headerLines, names.join(";"), r.payloadHash].join("\n");
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function scope(r: SignRequest): string {
  return `${r.amzDate.slice(0, 8)}/${r.region}/${r.service ?? "s3"}/aws4_request`;
}

export function stringToSign(r: SignRequest): string {
  return ["AWS4-HMAC-SHA256", r.amzDate, scope(r), sha256Hex(canonicalRequest(r))].join("\n");
}

export function signature(r: SignRequest, secretAccessKey: string): string {
  const kDate = hmac(`AWS4${secretAccessKey}`, r.amzDate.slice(0, 8));
  const kRegion = hmac(kDate, r.region);
  const kService = hmac(kRegion, r.service ?? "s3");
  const kSigning = hmac(kService, "aws4_request");
  return createHmac("sha256", kSigning).update(stringToSign(r), "utf8").digest("hex");
}

/** The Authorization header's value. */
export function authorization(r: SignRequest, creds: Credentials): string {
  return `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope(r)},SignedHeaders=${signedHeaderNames(r.headers).join(";")},Signature=${signature(r, creds.secretAccessKey)}`;
}

/** 2013-05-24T00:00:00.000Z → 20130524T000000Z */
export function amzDate(d: Date): string {
  return d.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}
