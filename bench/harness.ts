import { spawn, type ChildProcess } from "node:child_process";

import type amqp from "amqplib";

export { freePort } from "../test/helpers/ports.js";

/**
 * Starts `broker run <components>` from dist/ (or BENCH_BROKER_DIST, another build's output, to
 * compare two builds in one session) as its own process, as production would.
 */
export function startBroker(components: string[], env: Record<string, string>): ChildProcess {
  const dist = process.env.BENCH_BROKER_DIST ?? "dist";
  // BENCH_PROFILE=<dir> writes a V8 CPU profile of each broker process there.
  const profile = process.env.BENCH_PROFILE
    ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`]
    : [];
  const child = spawn(
    process.execPath,
    [...profile, `${dist}/src/cli/main.js`, "run", ...components],
    {
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  return child;
}

/** Starts the bench relay (bench/relay.ts) as its own process; resolves once it consumes. */
export async function startRelay(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/relay.ts"], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      if (d.toString().includes("relay ready")) {
        resolve();
      }
    });
    child.once("exit", () => reject(new Error("relay exited")));
  });
  // Give the consumer a moment to subscribe after the connection opens.
  await new Promise((r) => setTimeout(r, 1_000));
  return child;
}

export async function stopBroker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) {
    return;
  }
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

export async function waitReady(port: number, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (res.status === 200) {
        return;
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`broker on port ${port} not ready within ${timeoutMs} ms`);
}

/**
 * Publishes `count` persistent messages with publisher confirms, keeping up to `window`
 * unconfirmed in flight (as a well-behaved producer does), and resolves when all are confirmed.
 * With `ratePerSecond`, message i is not sent before start + i / rate (a paced producer, as the
 * mapper is on the whole path), instead of as fast as the confirms allow.
 */
export async function publishConfirmed(
  ch: amqp.ConfirmChannel,
  exchange: string,
  count: number,
  body: (i: number) => object,
  window = 1000,
  ratePerSecond?: number,
): Promise<void> {
  const start = Date.now();
  let inFlight = 0;
  let wake: (() => void) | undefined;
  let failure: unknown;
  for (let i = 0; i < count; i++) {
    if (ratePerSecond !== undefined) {
      const due = start + (i * 1000) / ratePerSecond;
      if (due > Date.now()) {
        await new Promise((r) => setTimeout(r, due - Date.now()));
      }
    }
    while (inFlight >= window) {
      await new Promise<void>((r) => (wake = r));
    }
    if (failure) {
      throw failure;
    }
    inFlight++;
    const content = Buffer.from(JSON.stringify(body(i)));
    ch.publish(
      exchange,
      "",
      content,
      { persistent: true, contentType: "application/json" },
      (err) => {
        if (err) {
          failure = err;
        }
        inFlight--;
        wake?.();
      },
    );
  }
  await ch.waitForConfirms();
  if (failure) {
    throw failure;
  }
}

/** Consumes a queue, acking in batches, calling `onMessage` for each body. */
export async function consumeCounting(
  conn: amqp.ChannelModel,
  queue: string,
  onMessage: (body: Record<string, unknown>, receivedAt: number) => void,
  prefetch = 500,
): Promise<() => Promise<void>> {
  const ch = await conn.createChannel();
  await ch.prefetch(prefetch);
  let unacked = 0;
  let last: amqp.ConsumeMessage | undefined;
  const flush = (): void => {
    if (last && unacked > 0) {
      ch.ack(last, true);
      unacked = 0;
    }
  };
  const timer = setInterval(flush, 5);
  const { consumerTag } = await ch.consume(queue, (m) => {
    if (!m) {
      return;
    }
    onMessage(JSON.parse(m.content.toString()) as Record<string, unknown>, Date.now());
    last = m;
    if (++unacked >= 100) {
      flush();
    }
  });
  return async () => {
    clearInterval(timer);
    flush();
    await ch.cancel(consumerTag);
    await ch.close();
  };
}
