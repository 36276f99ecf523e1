import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Where the web app's files are: our own under `web/static` at the package root (found by
 * walking up, so it works from `src/` under tsx and from `dist/src/` once built), the map and
 * chart libraries in their npm packages. Nothing comes from a CDN.
 */
export interface AssetDirs {
  readonly own: string;
  readonly leaflet: string;
  readonly uplot: string;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "web", "static", "index.html"))) {
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error("web/static/index.html not found above " + fileURLToPath(import.meta.url));
    }
    dir = parent;
  }
  return dir;
}

export function assetDirs(): AssetDirs {
  const require = createRequire(import.meta.url);
  return {
    own: join(packageRoot(), "web", "static"),
    leaflet: join(dirname(require.resolve("leaflet/package.json")), "dist"),
    uplot: join(dirname(require.resolve("uplot/package.json")), "dist"),
  };
}
