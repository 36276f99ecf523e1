/** What `broker run` knows once it is up; each part is absent when its component is not run. */
export interface StartupFacts {
  readonly components: readonly string[];
  /** Port of /healthz, /readyz and /metrics. */
  readonly opsPort: number;
  readonly production: boolean;
  readonly rabbitmqConnected: boolean;
  readonly webhook?: {
    readonly port: number;
    /** Header the secret travels in, when a secret is required. */
    readonly secretHeader: string | undefined;
    readonly basic: boolean;
  };
  readonly api?: {
    readonly port: number;
    /** e.g. `/broker/api`. */
    readonly prefix: string;
    /** Valid, not read-only users; undefined when the database could not be asked. */
    readonly admins: number | undefined;
  };
  readonly frredDir?: string;
  /** Port of the operator's web app (served under /iota). */
  readonly webPort?: number;
  /** How to run the CLI from here, e.g. `node dist/src/cli/main.js`. */
  readonly brokerCommand: string;
}

export interface SummaryItem {
  readonly label: string;
  readonly lines: readonly string[];
}

/** The end of start-up for a newcomer: where to point The Things Stack, the API, the files. */
export function startupSummary(f: StartupFacts): SummaryItem[] {
  const items: SummaryItem[] = [];
  const local = (port: number, path: string): string => `http://localhost:${port}${path}`;
  if (f.webhook) {
    const auth =
      f.webhook.secretHeader !== undefined && f.webhook.basic
        ? `requires header ${f.webhook.secretHeader} and Basic credentials`
        : f.webhook.secretHeader !== undefined
          ? `requires header ${f.webhook.secretHeader}: add it under "Additional headers"`
          : f.webhook.basic
            ? 'requires Basic credentials: tick "Request authentication"'
            : "accepts anyone: set TTN_WEBHOOK_SECRET before exposing it";
    items.push({
      label: "TTN webhook",
      lines: [
        local(f.webhook.port, "/ttn/webhook/up"),
        `The Things Stack: Custom webhook, Base URL http://<this host's public address>:${f.webhook.port}/ttn/webhook, uplink path /up`,
        auth,
      ],
    });
  }
  if (f.api) {
    const lines = [
      local(f.api.port, f.api.prefix),
      `docs: ${local(f.api.port, `${f.api.prefix}/docs`)}`,
    ];
    if (f.api.admins === 0) {
      lines.push(
        `no admin user yet; create one: ${f.brokerCommand} users add -u admin -p '<password>' -a`,
      );
    } else if (f.api.admins === undefined) {
      lines.push("could not check for an admin user (is PostgreSQL up?)");
    }
    items.push({ label: "REST API", lines });
  }
  if (f.webPort !== undefined) {
    items.push({ label: "web app", lines: [local(f.webPort, "/iota")] });
  }
  if (f.frredDir !== undefined) {
    items.push({ label: "FRRED files", lines: [f.frredDir] });
  }
  items.push({
    label: "health",
    lines: [
      `${local(f.opsPort, "/readyz")} (metrics: /metrics)${f.rabbitmqConnected ? "" : "; RabbitMQ not connected yet, retrying"}`,
    ],
  });
  return items;
}

/** The summary as a block of text for a terminal. */
export function formatStartupSummary(f: StartupFacts): string {
  const items = startupSummary(f);
  const width = Math.max(...items.map((i) => i.label.length)) + 2;
  const mode = f.production ? "production" : "development (BROKER_ENV=production for a deployment)";
  const body = items.flatMap((item) =>
    item.lines.map((line, n) => `  ${(n === 0 ? item.label : "").padEnd(width)}${line}`),
  );
  return [
    "",
    `broker is running: ${f.components.join(", ")}`,
    `  ${"mode".padEnd(width)}${mode}`,
    ...body,
    `  ${"stop".padEnd(width)}Ctrl-C`,
    "",
  ].join("\n");
}
