import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium, type BrowserContext } from "playwright-core";

import type { RunningSystem } from "../../src/app/root.js";
import { cleanupAmqp, isolatedAmqpConfig } from "./bus.js";
import { startApi, type ApiHarness } from "./api.js";
import { startTestSystem, testConfig } from "./system.js";

/** Debian's chromium (scripts/setup.sh installs it); playwright's own download is not used. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A fresh Chromium profile (its own user-data-dir), removed by close(). */
export async function launchBrowser(options: {
  viewport?: { width: number; height: number };
  timezoneId?: string;
}): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = await mkdtemp(join(tmpdir(), "web-test-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: ARGS,
    headless: true,
    viewport: options.viewport ?? { width: 1280, height: 900 },
    acceptDownloads: true,
    ...(options.timezoneId ? { timezoneId: options.timezoneId } : {}),
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** The REST API and the web app (a second system, as `broker run web` beside `broker run api`). */
export interface WebHarness {
  readonly api: ApiHarness;
  readonly web: RunningSystem;
  /** `http://127.0.0.1:<port>/iota` */
  readonly base: string;
  close(): Promise<void>;
}

/** `env`: the web process's settings; `apiEnv`: the API process's. */
export async function startWeb(
  env: Record<string, string> = {},
  apiEnv: Record<string, string> = {},
): Promise<WebHarness> {
  const api = await startApi({ env: apiEnv });
  const amqp = isolatedAmqpConfig();
  const web = await startTestSystem(
    ["web"],
    testConfig(api.db, amqp, { WEB_PORT: "0", WEB_API_URL: api.origin, ...env }),
  );
  const base = `http://127.0.0.1:${web.components[0]!.port!()}/iota`;
  return {
    api,
    web,
    base,
    async close() {
      await web.stop();
      await cleanupAmqp(amqp, []);
      await api.close();
    },
  };
}
