/**
 * The second check of an archive's proof (see pieces.ts): the tar stream, pushed in order as
 * it is written, parsed to its end; every entry compared with what the main thread read from
 * the sources (name, type, size, link target and CRC-32 of the content). After the end-of-
 * archive marker only zeros may follow. `failure` names the first thing that did not match.
 */
import { TarFormatError, TarParser, type TarListing } from "./tar.ts";
import type { Expectation } from "./pieces.ts";
import { crc32Of } from "./crc32.ts";

interface Parsed {
  name: string;
  type: string;
  size: number;
  linkTarget?: string;
  crc: number;
  /** An offset in the tar stream before the entry's header (the start of the bytes that held it). */
  at: number;
}

export class StreamProof {
  private readonly parser = new TarParser();
  private readonly parsed: Parsed[] = [];
  private readonly expected: Expectation[] = [];
  private current: Parsed | undefined;
  private pushedAt = 0;
  /** A streamed entry's content (streamed.ts), counted on the side until its header arrives. */
  private streaming: { crc: number; bytes: number; at: number } | undefined;
  /** Bytes pushed so far. */
  tarBytes = 0;
  entries = 0;
  failure: string | undefined;

  /** What the main thread put into the stream, in order. */
  expect(batch: readonly Expectation[]): void {
    for (const e of batch) this.expected.push(e);
    this.match();
  }

  /** The next bytes of the tar stream (`zeros`: they are known to be zeros, as a sparse file's are). */
  push(bytes: Uint8Array, zeros = false): void {
    if (this.failure) return;
    if (this.streaming) {
      this.streaming.crc = crc32Of(bytes, this.streaming.crc, zeros);
      this.streaming.bytes += bytes.length;
      this.tarBytes += bytes.length;
      return;
    }
    const start = this.tarBytes;
    this.pushedAt = start;
    this.tarBytes += bytes.length;
    if (this.parser.ended) return this.zerosOnly(bytes, start);
    try {
      const before = this.parser.offset;
      this.parser.push(bytes, (t) => this.onEntry(t), (piece) => (this.current!.crc = crc32Of(piece, this.current!.crc, zeros)));
      if (this.parser.ended) {
        this.closeCurrent();
        this.zerosOnly(bytes.subarray(this.parser.offset - before), start + this.parser.offset - before);
      }
    } catch (e) {
      this.failure = `the tar stream does not parse at byte ${this.parser.offset} of ${this.tarBytes}: ${e instanceof TarFormatError || e instanceof Error ? e.message : String(e)}`;
    }
  }

  /**
   * A streamed entry begins: its header comes last (streamEnd), its content and padding now.
   * The stream is at an entry boundary here (the writer cut a piece before it).
   */
  streamStart(): void {
    if (this.failure) return;
    if (this.parser.ended) {
      this.failure = `a streamed entry follows the end-of-archive marker at byte ${this.tarBytes}`;
      return;
    }
    this.closeCurrent();
    this.streaming = { crc: 0, bytes: 0, at: this.tarBytes };
  }

  /** The streamed entry's header block: its name, type and size against what was counted (content and padding; the CRC covers both). */
  streamEnd(header: Uint8Array): void {
    const s = this.streaming;
    this.streaming = undefined;
    if (this.failure || !s) {
      this.failure ??= "a streamed entry's header came without its content";
      return;
    }
    let listing: TarListing | undefined;
    try {
      new TarParser().push(header, (t) => (listing = t));
    } catch (e) {
      this.failure = `the header written for the streamed entry after byte ${s.at} does not parse: ${e instanceof Error ? e.message : String(e)}`;
      return;
    }
    if (!listing) {
      this.failure = `the header written for the streamed entry after byte ${s.at} holds no entry`;
      return;
    }
    const padded = Math.ceil(listing.size / 512) * 512;
    if (padded !== s.bytes) {
      this.failure = `${JSON.stringify(listing.name)}: its header says ${listing.size} bytes, ${s.bytes} bytes of content and padding were written`;
      return;
    }
    this.tarBytes += header.length;
    this.parsed.push({ name: listing.name, type: listing.type, size: listing.size, linkTarget: listing.linkTarget, crc: s.crc, at: s.at });
    this.entries++;
    this.match();
  }

  /** Call when everything was pushed and expected: the verdict (undefined: proven). */
  finish(): string | undefined {
    if (this.failure) return this.failure;
    if (!this.parser.ended) return `the tar stream ends after ${this.tarBytes} bytes without its end-of-archive marker`;
    this.match();
    if (this.failure) return this.failure;
    if (this.expected.length > 0) return `${this.expected.length} entries read from the sources are not in the tar stream, the first ${JSON.stringify(this.expected[0]!.name)}`;
    if (this.parsed.length > 0) return `the tar stream holds ${this.parsed.length} entries nothing was read for, the first ${JSON.stringify(this.parsed[0]!.name)}`;
    return undefined;
  }

  private onEntry(t: TarListing): void {
    this.closeCurrent();
    this.current = { name: t.name, type: t.type, size: t.size, linkTarget: t.linkTarget, crc: 0, at: this.pushedAt };
  }

  private closeCurrent(): void {
    if (!this.current) return;
    this.parsed.push(this.current);
    this.current = undefined;
    this.entries++;
    this.match();
  }

  private zerosOnly(bytes: Uint8Array, at: number): void {
    const i = bytes.findIndex((b) => b !== 0);
    if (i >= 0) this.failure = `byte ${at + i} of the tar stream, after its end-of-archive marker, is not zero`;
  }

  private match(): void {
    let n = 0;
    while (n < this.parsed.length && n < this.expected.length && !this.failure) {
      this.failure = difference(this.parsed[n]!, this.expected[n]!);
      n++;
    }
    if (n > 0) {
      this.parsed.splice(0, n);
      this.expected.splice(0, n);
    }
  }
}

function difference(got: Parsed, want: Expectation): string | undefined {
  const where = `the entry after byte ${got.at} of the tar stream`;
  if (got.name !== want.name) return `${where} is ${JSON.stringify(got.name)}, ${JSON.stringify(want.name)} was written there`;
  const what = JSON.stringify(want.name);
  if (got.type !== want.type) return `${what} reads back as a ${got.type}, a ${want.type} was written`;
  if (got.size !== want.size) return `${what} reads back with ${got.size} bytes, ${want.size} were read from the source`;
  if ((got.linkTarget ?? "") !== (want.linkTarget ?? "")) return `${what} reads back linking to ${JSON.stringify(got.linkTarget)}, not ${JSON.stringify(want.linkTarget)}`;
  if (got.crc !== want.crc) return `${what}: its content reads back with CRC-32 ${hex(got.crc)}, what was read from the source has ${hex(want.crc)}`;
  return undefined;
}

function hex(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}
