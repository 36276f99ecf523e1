import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { PG } from "./env.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
// The local tsx binary rather than `npx tsx`: same program, without npx's own warnings on stderr.
const TSX = join(ROOT, "node_modules", ".bin", "tsx");

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `broker …` from source against `database`, the way an operator would. */
export function runBroker(
  args: string[],
  options: { database: string; stdin?: string; env?: Record<string, string> },
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, ["src/cli/main.ts", ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        PGHOST: PG.host,
        PGPORT: String(PG.port),
        PGUSER: PG.user,
        PGPASSWORD: PG.password,
        PGDATABASE: options.database,
        ...options.env,
      },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? "");
  });
}
