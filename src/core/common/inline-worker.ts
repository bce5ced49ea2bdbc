/**
 * Worker threads whose code is a string in this program, so that a compiled single-file
 * executable needs no file of its own for them.
 */
const workerUrls = new Map<string, string>();

export function startWorker(source: string): Worker {
  let url = workerUrls.get(source);
  if (!url) {
    // the worker loads its URL asynchronously: never revoked, one per process
    url = URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
    workerUrls.set(source, url);
  }
  return new Worker(url, { smol: true });
}
