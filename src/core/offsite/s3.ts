/**
 * The S3 calls the offsite copies need, signed with SigV4 (sigv4.ts) and sent with fetch, on
 * path-style URLs (endpoint/bucket/key), which AWS, Ceph RGW and MinIO all serve. Every
 * failure becomes an S3Failure of one kind: the store could not be reached, it refused the
 * credentials, the bucket is missing, it rejected a checksum, a lock refused a delete, or
 * something else. Reading whole objects back is left to Bun's own S3 client (download.ts).
 */
import { createHash } from "node:crypto";
import { EMPTY_SHA256, UNSIGNED_PAYLOAD, amzDate, authorization, uriEncode, uriEncodePath, type Credentials } from "./sigv4.ts";

export interface StoreTarget {
  endpoint: string;
  region: string;
  bucket: string;
  creds: Credentials;
  /** Milliseconds a request may take before it is given up. */
  timeoutMs: number;
}

export type FailureKind = "unreachable" | "credentials" | "bucket" | "checksum" | "locked" | "missing" | "other";

export class S3Failure extends Error {
  constructor(readonly kind: FailureKind, message: string, readonly status?: number, readonly s3Code?: string) {
    super(message);
    this.name = "S3Failure";
  }
}

export interface RequestSpec {
  method: "GET" | "PUT" | "POST" | "DELETE" | "HEAD";
  /** Object key; undefined for a call on the bucket itself. */
  key?: string;
  query?: ReadonlyArray<readonly [string, string]>;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Hex SHA-256 of body when already known (saves hashing it twice). */
  bodySha256?: string;
}

const CREDENTIAL_CODES = new Set(["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed", "RequestTimeTooSkewed"]);
const CHECKSUM_CODES = new Set(["BadDigest", "InvalidDigest", "InvalidPart", "XAmzContentSHA256Mismatch", "EntityTooSmall"]);

/** XML text of the first <tag>…</tag>, entities decoded. */
export function xmlValue(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return m ? xmlUnescape(m[1]!) : undefined;
}

/** Every <tag>…</tag> block's inner text. */
export function xmlBlocks(xml: string, tag: string): string[] {
  return [...xml.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g"))].map((m) => m[1]!);
}

export function xmlUnescape(s: string): string {
  return s.replace(/&(lt|gt|quot|apos|amp|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) => {
    switch (e) {
      case "lt": return "<";
      case "gt": return ">";
      case "quot": return '"';
      case "apos": return "'";
      case "amp": return "&";
      default: return String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    }
  });
}

export function xmlEscape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** What an S3 error answer means for us: which kind, by status and the error's Code. */
export function classify(status: number, s3Code: string | undefined, method: string): FailureKind {
  if (s3Code === "NoSuchBucket") return "bucket";
  if (s3Code && CHECKSUM_CODES.has(s3Code)) return "checksum";
  if (s3Code === "NoSuchKey" || s3Code === "NoSuchUpload" || s3Code === "NoSuchVersion") return "missing";
  // a delete refused with AccessDenied by a store that accepts our other calls is the lock's refusal;
  // the caller knows which (it asked for the object's retention first) and says so
  if (method === "DELETE" && s3Code === "AccessDenied") return "locked";
  if (status === 401 || (s3Code && CREDENTIAL_CODES.has(s3Code)) || (status === 403 && !s3Code)) return "credentials";
  if (status === 404 && method === "HEAD") return "missing";
  return "other";
}

function describeNetworkError(e: unknown): string {
  const err = e as { code?: string; message?: string; name?: string };
  if (err?.name === "TimeoutError" || err?.name === "AbortError") return "no answer within the time-out";
  if (err?.code && err.message?.includes(err.code)) return err.message;
  return [err?.code, err?.message].filter(Boolean).join(": ") || String(e);
}

/** Pieces a large body is handed to fetch in. */
const BODY_PIECE = 256 * 1024;

/**
 * A large body as a stream of pieces of it, its length declared: handed over whole, fetch
 * keeps copies of it while it is sent, which took memory to about three times each part in
 * flight. Small bodies go as they are.
 */
function bodyOf(body: Uint8Array | undefined, headers: Record<string, string>): Uint8Array | ReadableStream<Uint8Array> | undefined {
  if (!body || body.length <= BODY_PIECE) return body;
  headers["content-length"] = String(body.length);
  let off = 0;
  return new ReadableStream<Uint8Array>({
    pull(ctl) {
      if (off >= body.length) return ctl.close();
      const end = Math.min(body.length, off + BODY_PIECE);
      ctl.enqueue(body.subarray(off, end));
      off = end;
    },
  });
}

export class S3 {
  readonly base: URL;

  constructor(readonly target: StoreTarget, private readonly clock: () => Date = () => new Date()) {
    this.base = new URL(target.endpoint.replace(/\/+$/, ""));
  }

  /** The URL path of a key (or of the bucket), encoded as it is sent and signed. */
  pathOf(key?: string): string {
    const prefix = this.base.pathname.replace(/\/+$/, "");
    return uriEncodePath(`${prefix}/${this.target.bucket}${key !== undefined ? `/${key}` : ""}`);
  }

  where(key?: string): string {
    return `${this.base.host}/${this.target.bucket}${key !== undefined ? `/${key}` : ""}`;
  }

  /** Send one signed request; a non-2xx answer (except HEAD 404 when allowed) throws an S3Failure. */
  async send(spec: RequestSpec, opts: { allow404?: boolean; signal?: AbortSignal } = {}): Promise<Response> {
    const path = this.pathOf(spec.key);
    const query = spec.query ?? [];
    const payloadHash = spec.body ? (spec.bodySha256 ?? createHash("sha256").update(spec.body).digest("hex")) : EMPTY_SHA256;
    const date = amzDate(this.clock());
    const headers: Record<string, string> = {
      host: this.base.host,
      "x-amz-date": date,
      "x-amz-content-sha256": payloadHash === UNSIGNED_PAYLOAD ? UNSIGNED_PAYLOAD : payloadHash,
      ...(this.target.creds.sessionToken ? { "x-amz-security-token": this.target.creds.sessionToken } : {}),
      ...Object.fromEntries(Object.entries(spec.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    };
    headers.authorization = authorization({ method: spec.method, path, query, headers, payloadHash, region: this.target.region, amzDate: date }, this.target.creds);
    const qs = query.length ? `?${query.map(([k, v]) => (v === "" ? uriEncode(k) : `${uriEncode(k)}=${uriEncode(v)}`)).join("&")}` : "";
    const url = `${this.base.protocol}//${this.base.host}${path}${qs}`;
    const { host: _, ...sent } = headers;
    const signal = opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(this.target.timeoutMs)]) : AbortSignal.timeout(this.target.timeoutMs);
    let res: Response;
    try {
      res = await fetch(url, { method: spec.method, headers: sent, body: bodyOf(spec.body, sent), signal, redirect: "manual", decompress: false, duplex: "half" } as RequestInit);
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      throw new S3Failure("unreachable", `${this.base.host} cannot be reached: ${describeNetworkError(e)}`);
    }
    if (res.ok || (opts.allow404 && res.status === 404)) return res;
    let text = "";
    try {
      text = spec.method === "HEAD" ? "" : (await res.text()).slice(0, 4096);
    } catch {
      // the error's body is only for the message
    }
    const s3Code = xmlValue(text, "Code") ?? (res.headers.get("x-amz-error-code") ?? undefined);
    const msg = xmlValue(text, "Message");
    const kind = classify(res.status, s3Code, spec.method);
    const why = msg ?? (kind === "credentials" ? "access denied (a wrong key or secret, or no permission)" : undefined);
    throw new S3Failure(kind, `${spec.method} ${this.where(spec.key)}: ${res.status}${s3Code ? ` ${s3Code}` : ""}${why ? `: ${why}` : ""}`, res.status, s3Code);
  }

  // --- buckets --------------------------------------------------------------------------------

  /** Create the bucket (with Object Lock when asked; that also turns versioning on). */
  async createBucket(opts: { objectLock?: boolean } = {}): Promise<void> {
    const body = this.target.region && this.target.region !== "us-east-1"
      ? new TextEncoder().encode(`<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>${xmlEscape(this.target.region)}</LocationConstraint></CreateBucketConfiguration>`)
      : undefined;
    await this.send({ method: "PUT", body, headers: opts.objectLock ? { "x-amz-bucket-object-lock-enabled": "true" } : {} });
  }

  /** Does the bucket answer to us? Throws the failure that says why not. */
  async checkBucket(): Promise<void> {
    const res = await this.send({ method: "HEAD" }, { allow404: true });
    if (res.status === 404) throw new S3Failure("bucket", `the bucket ${this.target.bucket} does not exist at ${this.base.host}`, 404, "NoSuchBucket");
  }
}
