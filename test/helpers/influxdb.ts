import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { freePort } from "./private-servers.js";

/**
 * A real InfluxDB 1.x server of the test's own (Debian's `influxd`, installed by
 * scripts/setup.sh): its own config, data under a temporary directory, free loopback ports.
 */
export interface InfluxServer {
  readonly url: string;
  readonly port: number;
  /** Runs an InfluxQL statement (POST /query) and returns the parsed JSON. */
  query(q: string, db?: string): Promise<InfluxQueryResult>;
  stop(): Promise<void>;
}

export interface InfluxQueryResult {
  results: {
    series?: {
      name: string;
      tags?: Record<string, string>;
      columns: string[];
      values: unknown[][];
    }[];
    error?: string;
  }[];
}

export async function startInfluxd(): Promise<InfluxServer> {
  const dir = await mkdtemp(join(tmpdir(), "influxd-test-"));
  const port = await freePort();
  const rpc = await freePort();
  const config = `reporting-disabled = true
bind-address = "127.0.0.1:${rpc}"
[meta]
  dir = "${dir}/meta"
[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:${port}"
  auth-enabled = false
  log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
`;
  await writeFile(join(dir, "influxdb.conf"), config);
  const child: ChildProcess = spawn("influxd", ["-config", join(dir, "influxdb.conf")], {
    stdio: "ignore",
  });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/ping`)).status === 204) {
        break;
      }
    } catch {
      // not listening yet
    }
    if (i > 150 || child.exitCode !== null) {
      child.kill("SIGKILL");
      throw new Error(
        "influxd did not start (is the influxdb package installed? scripts/setup.sh installs it)",
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    async query(q, db) {
      const params = new URLSearchParams({ q, epoch: "ns", ...(db ? { db } : {}) });
      const res = await fetch(`${url}/query?${params}`, { method: "POST" });
      return (await res.json()) as InfluxQueryResult;
    },
    async stop() {
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null) {
        child.kill("SIGKILL");
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
