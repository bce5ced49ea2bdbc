/**
 * Worker threads whose code is a typed file of the project. From source a worker is found
 * beside the module that starts it; inside a compiled binary by its path relative to src/,
 * because every worker file is an entry point of its own (scripts/build.ts ENTRYPOINTS).
 */

const IN_BINARY = import.meta.url.startsWith("file:///$bunfs/");

/**
 * @param fromSrc the worker's path relative to src/, e.g. "./core/archive/sink.worker.ts"
 * @param beside its URL from source: `new URL("./sink.worker.ts", import.meta.url)`
 */
export function startWorkerFile(fromSrc: string, beside: URL): Worker {
  return new Worker(IN_BINARY ? fromSrc : beside.href, { smol: true });
}
