import { existsSync, readFileSync } from "node:fs";
import { parseEnv } from "node:util";

/**
 * Loads `.env` from the working directory when there is one, as run.sh does: a variable already
 * set in the environment wins over the file. Returns the names it set.
 */
export function loadDotEnv(path = ".env", env: NodeJS.ProcessEnv = process.env): string[] {
  if (!existsSync(path)) {
    return [];
  }
  const values = parseEnv(readFileSync(path, "utf8"));
  const set: string[] = [];
  for (const [key, value] of Object.entries(values)) {
    if (env[key] === undefined && value !== undefined) {
      env[key] = value;
      set.push(key);
    }
  }
  return set;
}
