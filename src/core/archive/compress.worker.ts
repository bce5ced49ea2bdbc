/**
 * A compression worker of the archive writer (writer.ts): compresses each piece it is given,
 * proves the result decompresses to the piece (compress.ts), then sends the compressed bytes
 * and the piece to the sink and their length and hash to the main thread. A compiled binary
 * holds this file as an entry point of its own (scripts/build.ts).
 */
import { receiveMessageOnPort } from "node:worker_threads";
import { PieceCompressor } from "./compress.ts";
import { pieceHash, type CompressReply, type CompressRequest, type CompressSetup, type PieceToWrite } from "./pieces.ts";

declare const self: Worker;

let sink: MessagePort;
let compressor: PieceCompressor;

function reply(m: CompressReply, transfer: ArrayBuffer[] = []): void {
  self.postMessage(m, transfer);
}

function start(m: CompressSetup): void {
  compressor = new PieceCompressor(m.kind, m.level, m.maxPiece, m.systemZstd);
  sink = m.port;
  sink.onmessage = (ev) => compressor.giveBack((ev.data as { free: ArrayBuffer }).free);
  reply({ engine: compressor.zstd ? compressor.zstd.version : "" });
}

/**
 * Take the buffers the sink has handed back. While requests keep coming, this worker's port is
 * not served: without this, a new buffer was made for a piece whenever the pool ran dry, and
 * every one of them came back later, so memory grew with the archive's size.
 */
function takeBack(): void {
  for (let r = receiveMessageOnPort(sink); r !== undefined; r = receiveMessageOnPort(sink)) {
    compressor.giveBack((r.message as { free: ArrayBuffer }).free);
  }
}

function compressOne(m: CompressRequest): void {
  if (compressor.zstd && compressor.pooled === 0) takeBack();
  const input = new Uint8Array(m.buf, 0, m.len);
  let made;
  try {
    made = compressor.compress(input);
    compressor.checkRoundTrip(new Uint8Array(made.out, 0, made.len), input);
  } catch (err) {
    reply({ seq: m.seq, input: m.buf, error: err instanceof Error ? err.message : String(err) }, [m.buf]);
    return;
  }
  const outHash = pieceHash(new Uint8Array(made.out, 0, made.len));
  const copy = m.keep ? made.out.slice(0, made.len) : undefined;
  const piece: PieceToWrite = { seq: m.seq, out: made.out, outLen: made.len, input: m.buf, inLen: m.len, pooled: made.pooled };
  sink.postMessage(piece, [made.out, m.buf]);
  reply({ seq: m.seq, inLen: m.len, outLen: made.len, outHash, copy }, copy ? [copy] : []);
}

self.onmessage = (ev: MessageEvent<CompressSetup | CompressRequest>) => {
  const m = ev.data;
  if ("port" in m) start(m);
  else compressOne(m);
};
