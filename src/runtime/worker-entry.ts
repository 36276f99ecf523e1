import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

/**
 * How to start a worker thread whose module `name` sits beside the module at `here` (the
 * caller's `import.meta.url`). Built: the compiled `<name>.js`. From source (tsx, vitest): a
 * two-line bootstrap that registers tsx's loader in the new thread (loaders are per thread) and
 * then imports `<name>.ts`.
 */
export function workerEntry(here: string, name: string): { script: string | URL; eval: boolean } {
  if (!here.endsWith(".ts")) {
    return { script: new URL(`./${name}.js`, here), eval: false };
  }
  // tsx's ESM API; its package exports give require() the .cjs twin of the same file.
  const api = createRequire(here)
    .resolve("tsx/esm/api")
    .replace(/\.cjs$/, ".mjs");
  const target = new URL(`./${name}.ts`, here).href;
  return {
    script: `import(${JSON.stringify(pathToFileURL(api).href)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`,
    eval: true,
  };
}
