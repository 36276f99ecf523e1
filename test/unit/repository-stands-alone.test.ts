import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

/**
 * A clone of the repository on its own must pass its tests, so no file it runs may read a path
 * outside it: not the developers' shared folder that happens to sit beside it, not an absolute
 * path on one machine. Code and scripts only; prose may mention such paths.
 */
const root = path.resolve(fileURLToPath(new URL("../..", import.meta.url)));

const CODE = /\.(ts|mts|js|mjs|cjs|sh|json|ya?ml)$|^run\.sh$|^\.ci\/run$|Dockerfile/;

function trackedCodeFiles(): string[] {
  const out = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], {
    cwd: root,
    encoding: "utf8",
  });
  return out
    .split("\n")
    .filter((f) => f !== "" && CODE.test(f) && !f.startsWith("test/fixtures/recorded/"))
    .filter((f) => !f.endsWith("package-lock.json"));
}

/** Relative paths a file resolves against its own location: `new URL("…", import.meta.url)`. */
const URL_LITERAL = /new URL\(\s*["'`](\.{1,2}\/[^"'`]*)["'`]\s*,\s*import\.meta\.url/g;
/** Text that names a place outside any clone: the developers' shared folder or this machine's. */
const OUTSIDE_TEXT = /(^|[^.\w])\.\.\/shared\b|\/work\/(shared|main)\b/;

function outsideReferences(file: string, text: string): string[] {
  const found: string[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    const trimmed = line.trim();
    const isComment =
      trimmed.startsWith("//") || trimmed.startsWith("#") || trimmed.startsWith("*");
    if (!isComment && OUTSIDE_TEXT.test(line)) {
      found.push(`${file}:${i + 1}: ${trimmed}`);
    }
    for (const m of line.matchAll(URL_LITERAL)) {
      const target = path.resolve(path.dirname(path.join(root, file)), m[1] ?? "");
      if (target !== root && !target.startsWith(root + path.sep)) {
        found.push(`${file}:${i + 1}: ${m[1]} resolves outside the repository`);
      }
    }
  });
  return found;
}

describe("the repository stands alone", () => {
  it("has no code, script or configuration that reads a path outside the repository", () => {
    const found = trackedCodeFiles().flatMap((f) =>
      outsideReferences(f, readFileSync(path.join(root, f), "utf8")),
    );
    expect(found).toEqual([]);
  });

  it("would catch a test reading the shared folder or resolving a URL above the root", () => {
    // Built from pieces so that this file does not match its own rule.
    const up = ["..", "..", "..", "shared", "fixtures/"].join("/");
    expect(
      outsideReferences("test/unit/x.test.ts", `const f = new URL("${up}", import.meta.url);`),
    ).toHaveLength(2);
    const abs = ["", "work", "shared", "fixtures", "a.json"].join("/");
    expect(outsideReferences("scripts/x.sh", `cp ${abs} .`)).toHaveLength(1);
    expect(
      outsideReferences("test/unit/x.test.ts", 'new URL("../fixtures/recorded/", import.meta.url)'),
    ).toEqual([]);
  });
});
