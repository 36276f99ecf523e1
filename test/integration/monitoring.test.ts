import { execFile, spawn, type ChildProcess } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { InfluxStandIn } from "../../bench/chaos/influx-standin.js";
import { cleanupAmqp, isolatedAmqpConfig, waitFor } from "../helpers/bus.js";
import { ROOT, spawnBroker } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { freePort, startPrivateRabbit, type PrivateRabbit } from "../helpers/private-servers.js";
import { brokerEnv } from "../helpers/system.js";
import { deliverUplink, netvoxUplink } from "../helpers/ttn.js";

/**
 * A real Prometheus (Debian's package) with the shipped local scrape configuration and alert rules,
 * against a running local system: every process is scraped, the rules load and evaluate, and every
 * metric the Grafana dashboard and the rules name is one the components (or RabbitMQ's
 * rabbitmq_prometheus plugin) really export.
 */

const exec = promisify(execFile);
const PROM_DIR = join(ROOT, "compose", "prometheus");
const DASHBOARD = join(ROOT, "compose", "grafana", "dashboards", "iota-router.json");

let db: TestDatabase;
let rabbit: PrivateRabbit;
let influx: InfluxStandIn;
let work: string;
let prometheus: ChildProcess | undefined;
let promUrl: string;
const processes: ChildProcess[] = [];
/** Each broker process's metrics port, by what it runs. */
const targets = new Map<string, number>();
let rabbitMetricsPort: number;
let webhookPort: number;
const amqpConfig = isolatedAmqpConfig();

async function promApi<T>(path: string): Promise<T> {
  const res = await fetch(`${promUrl}/api/v1/${path}`);
  const body = (await res.json()) as { status: string; data: T };
  expect(body.status).toBe("success");
  return body.data;
}

/** Metric names a `/metrics` text declares (`# TYPE`), histograms and summaries expanded. */
function declaredNames(text: string): string[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("# TYPE "))
    .flatMap((l) => {
      const [, , name, type] = l.split(" ");
      return type === "histogram"
        ? [`${name}_bucket`, `${name}_sum`, `${name}_count`]
        : type === "summary"
          ? [name!, `${name}_sum`, `${name}_count`]
          : [name!];
    });
}

const PROMQL_WORDS = new Set([
  "sum",
  "max",
  "min",
  "by",
  "rate",
  "increase",
  "delta",
  "changes",
  "timestamp",
  "time",
  "vector",
  "label_replace",
  "histogram_quantile",
  "max_over_time",
  "and",
  "or",
  "on",
  "offset",
  "group_left",
  "humanizeDuration",
]);

/** The metric names a PromQL expression reads (labels, strings and durations removed). */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, "{}")
    .replace(/\[[^\]]*\]/g, "[]")
    .replace(/\b(by|on|group_left)\s*\([^)]*\)/g, "");
  return [...bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)]
    .map((m) => m[0])
    .filter(
      (w) => !PROMQL_WORDS.has(w) && !/^\d/.test(w) && !["d", "w", "h", "m", "s"].includes(w),
    );
}

beforeAll(async () => {
  db = await createTestDatabase();
  work = await mkdtemp(join(tmpdir(), "monitoring-"));
  rabbitMetricsPort = await freePort();
  rabbit = await startPrivateRabbit({
    plugins: ["rabbitmq_prometheus"],
    conf: [`prometheus.tcp.port = ${rabbitMetricsPort}`, "prometheus.tcp.ip = 127.0.0.1"],
  });
  influx = new InfluxStandIn("token", () => Date.now());
  const influxUrl = await influx.start();
  webhookPort = await freePort();
  const root = `mon${process.pid}`;
  const env = {
    ...brokerEnv(db, amqpConfig),
    AMQP_URL: rabbit.url,
    LOG_LEVEL: "warn",
    TTN_WEBHOOK_PORT: String(webhookPort),
    FRRED_DIR: work,
    INFLUXDB_URL: influxUrl,
    INFLUXDB_API: "v2",
    INFLUXDB_ORG: "o",
    INFLUXDB_BUCKET: "b",
    INFLUXDB_TOKEN: "token",
    YDOC_MQTT_TOPICS: `${root}/YDOC/+`,
    YDOC_MQTT_CLIENT_ID: `${root}-ydoc`,
    // Counted at every scrape, so the held uplinks below show at once.
    MAPPER_HELD_COUNT_SECONDS: "0",
    EAGLEIO_API_TOKEN: "t",
    // Nothing listens there: the poller's polls fail, and it counts them.
    EAGLEIO_API_URL: `http://127.0.0.1:${await freePort()}`,
  };
  for (const name of ["all", "ydoc", "influxdb", "eagleio"]) {
    const port = await freePort();
    targets.set(name, port);
    processes.push(
      spawnBroker(["run", name], { env: { ...env, METRICS_PORT: String(port) }, stdio: "ignore" }),
    );
  }
  await waitFor(
    async () => {
      const answers = await Promise.all(
        [...targets.values()].map((p) =>
          fetch(`http://127.0.0.1:${p}/readyz`).then(
            (r) => r.status,
            () => 0,
          ),
        ),
      );
      return answers.every((s) => s === 200 || s === 503);
    },
    60_000,
    "every process serving /metrics",
  );
  // A few messages, so the counters have samples; their device has no mapping, so they are held.
  const url = `http://127.0.0.1:${webhookPort}/ttn/webhook/up`;
  for (let i = 0; i < 5; i++) {
    await deliverUplink(
      url,
      netvoxUplink("00aa00aa00aa00aa", i, new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString()),
    );
  }

  const promDir = join(work, "prometheus");
  await mkdir(join(promDir, "local-targets", "rabbitmq"), { recursive: true });
  await copyFile(join(PROM_DIR, "prometheus-local.yml"), join(promDir, "prometheus.yml"));
  await copyFile(join(PROM_DIR, "alerts.yml"), join(promDir, "alerts.yml"));
  await writeFile(
    join(promDir, "local-targets", "broker.json"),
    JSON.stringify(
      [...targets].map(([service, port]) => ({
        targets: [`127.0.0.1:${port}`],
        labels: { service },
      })),
    ),
  );
  await writeFile(
    join(promDir, "local-targets", "rabbitmq", "node.json"),
    JSON.stringify([{ targets: [`127.0.0.1:${rabbitMetricsPort}`] }]),
  );
  const promPort = await freePort();
  promUrl = `http://127.0.0.1:${promPort}`;
  prometheus = spawn(
    "prometheus",
    [
      `--config.file=${join(promDir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(promDir, "data")}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdio: "ignore" },
  );
}, 240_000);

afterAll(async () => {
  prometheus?.kill("SIGKILL");
  for (const p of processes) {
    p.kill("SIGKILL");
  }
  await influx?.stop();
  await rabbit?.stop();
  await cleanupAmqp(amqpConfig).catch(() => undefined);
  await db?.drop();
  await rm(work, { recursive: true, force: true });
});

describe("dashboards and alerts", () => {
  it("promtool accepts the rules and both scrape configurations", async () => {
    await exec("promtool", ["check", "rules", join(PROM_DIR, "alerts.yml")]);
    // The Compose configuration names hosts that exist only inside Compose: syntax and rule files.
    await exec("promtool", ["check", "config", "--syntax-only", join(PROM_DIR, "prometheus.yml")]);
    await exec("promtool", ["check", "config", join(work, "prometheus", "prometheus.yml")]);
  });

  it("scrapes every broker process and RabbitMQ, and loads and evaluates every rule", async () => {
    type Targets = { activeTargets: { labels: Record<string, string>; health: string }[] };
    await waitFor(
      async () => {
        const t = await promApi<Targets>("targets").catch(() => ({ activeTargets: [] }));
        return (
          t.activeTargets.length === targets.size + 1 &&
          t.activeTargets.every((a) => a.health === "up")
        );
      },
      90_000,
      "every target up",
    );
    const t = await promApi<Targets>("targets");
    expect(
      t.activeTargets
        .filter((a) => a.labels.job === "iota-router")
        .map((a) => a.labels.service)
        .sort(),
    ).toEqual([...targets.keys()].sort());
    type Rules = {
      groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[];
    };
    await waitFor(
      async () => {
        const r = await promApi<Rules>("rules");
        return r.groups.flatMap((g) => g.rules).every((rule) => rule.health !== "unknown");
      },
      60_000,
      "every rule evaluated",
    );
    const rules = (await promApi<Rules>("rules")).groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.name)).toEqual(
      expect.arrayContaining([
        "ComponentDown",
        "DeadLettersGrowing",
        "WriterLagging",
        "SourceSilentLearned",
      ]),
    );
    expect(rules.filter((r) => r.health !== "ok")).toEqual([]);
    // The processes really report: the webhook's uplinks are in Prometheus.
    type Query = { result: { metric: Record<string, string>; value: [number, string] }[] };
    await waitFor(
      async () => {
        const q = await promApi<Query>(
          `query?query=${encodeURIComponent('broker_messages_in_total{component="ttn-webhook"}')}`,
        );
        return q.result.some((r) => Number(r.value[1]) >= 5);
      },
      30_000,
      "the uplinks counted",
    );
    // The mapper reports them held, by reason: the count of stored rows and its own decisions.
    await waitFor(
      async () => {
        const q = await promApi<Query>(
          `query?query=${encodeURIComponent('max(broker_mapper_held_messages{reason="no_mapping"}) >= 5 and max(broker_mapper_held_total{reason="no_mapping"}) >= 5')}`,
        );
        return q.result.length > 0;
      },
      30_000,
      "the held uplinks counted",
    );
  }, 200_000);

  it("names in the dashboard and the rules are metrics the components and RabbitMQ export", async () => {
    const exported = new Set<string>(["up"]);
    for (const port of [...targets.values(), rabbitMetricsPort]) {
      const path = port === rabbitMetricsPort ? "/metrics/per-object" : "/metrics";
      exported.add("up");
      for (const name of declaredNames(
        await (await fetch(`http://127.0.0.1:${port}${path}`)).text(),
      )) {
        exported.add(name);
      }
    }
    const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8")) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const rulesText = await readFile(join(PROM_DIR, "alerts.yml"), "utf8");
    const recorded = new Set([...rulesText.matchAll(/record: (\S+)/g)].map((m) => m[1]!));
    const ruleExprs = [...rulesText.matchAll(/expr: (?:>\n((?:\s{10}.*\n)+)|(.*)\n)/g)].map(
      (m) => (m[1] ?? m[2])!,
    );
    expect(ruleExprs.length).toBeGreaterThanOrEqual(10);
    const exprs = [...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)), ...ruleExprs];
    const unknown = [...new Set(exprs.flatMap(metricNames))].filter(
      (n) => !exported.has(n) && !recorded.has(n),
    );
    expect(unknown).toEqual([]);
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(10);
  });
});
