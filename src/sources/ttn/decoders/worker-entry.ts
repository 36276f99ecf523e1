import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

/**
 * How to start a worker. Built: the compiled decoder-worker.js beside this file. From source
 * (tsx, vitest): a two-line bootstrap that registers tsx's loader in the new thread (loaders
 * are per thread) and then imports decoder-worker.ts.
 */
export function workerEntry(): { script: string | URL; eval: boolean } {
  // This module sits beside decoder-worker, in src/ (.ts) and in dist/ (.js) alike.
  const here = import.meta.url;
  if (!here.endsWith(".ts")) {
    return { script: new URL("./decoder-worker.js", here), eval: false };
  }
  // tsx's ESM API; its package exports give require() the .cjs twin of the same file.
  const api = createRequire(here)
    .resolve("tsx/esm/api")
    .replace(/\.cjs$/, ".mjs");
  const target = new URL("./decoder-worker.ts", here).href;
  return {
    script: `import(${JSON.stringify(pathToFileURL(api).href)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`,
    eval: true,
  };
}
