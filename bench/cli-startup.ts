/**
 * CLI start-up: wall time of one `broker` call from dist/, as an operator's loop over hundreds
 * of devices runs it (`node dist/src/cli/main.js pd get --puid 1`), beside bare `node` and
 * `broker --version` (start-up without any command's code). Target: `pd get` under 250 ms.
 * Runs sequentially, one process at a time. BENCH_CLI_RUNS (default 20) runs per case.
 */
import { spawn } from "node:child_process";

import { percentile } from "./stats.js";

const RUNS = Number(process.env.BENCH_CLI_RUNS ?? 20);

export interface StartupFigures {
  readonly name: string;
  readonly runs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly minMs: number;
}

function once(args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) {
        reject(new Error(`${args.join(" ")} exited ${code}: ${stderr.trim()}`));
        return;
      }
      resolve(performance.now() - started);
    });
  });
}

async function measure(
  name: string,
  args: string[],
  env: Record<string, string>,
): Promise<StartupFigures> {
  await once(args, env); // warm the file cache
  const times: number[] = [];
  for (let i = 0; i < RUNS; i += 1) {
    times.push(await once(args, env));
  }
  times.sort((a, b) => a - b);
  return {
    name,
    runs: RUNS,
    p50Ms: percentile(times, 50),
    p90Ms: percentile(times, 90),
    minMs: times[0]!,
  };
}

/** Measures the cases against the database `env` names (which holds physical device 1). */
export async function cliStartup(env: Record<string, string>): Promise<StartupFigures[]> {
  const cli = "dist/src/cli/main.js";
  return [
    await measure("node -e 0 (bare Node)", ["-e", "0"], env),
    await measure("broker --version", [cli, "--version"], env),
    await measure("broker pd get --puid 1", [cli, "pd", "get", "--puid", "1"], env),
  ];
}

export function printStartup(rows: readonly StartupFigures[]): void {
  console.log("\n| CLI start-up | runs | p50 ms | p90 ms | min ms |");
  console.log("|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.runs} | ${r.p50Ms.toFixed(0)} | ${r.p90Ms.toFixed(0)} | ${r.minMs.toFixed(0)} |`,
    );
  }
  console.log("CLI target: `broker pd get` p50 under 250 ms.");
}
