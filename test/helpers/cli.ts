import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { fileURLToPath } from "node:url";

import { PG } from "./env.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * Starts `broker <args>` from source as ONE process (node with tsx as its loader). The `tsx`
 * command would run the program in a child of its own, so a signal sent to it — SIGKILL above
 * all — would not reach the broker, which would live on as an orphan.
 */
export function spawnBroker(args: string[], options: SpawnOptions = {}): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], {
    cwd: ROOT,
    ...options,
  });
}

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
    const child = spawnBroker(args, {
      stdio: ["pipe", "pipe", "pipe"],
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
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin!.end(options.stdin ?? "");
  });
}
