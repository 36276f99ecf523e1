import { Agent, request } from "node:http";

/** What an open-loop run measured. */
export interface OpenLoopResult {
  /** Per request: answer time minus the time it was due to be sent (queueing included), ms. */
  readonly latenciesMs: number[];
  /** Requests answered other than 204, or failed on the socket. */
  readonly failures: number;
  /** From the first due time to the last answer, s. */
  readonly seconds: number;
}

/**
 * An open-loop load: request i is due at start + i / rate, whatever the answers so far, so a
 * slow server meets a growing queue instead of a politely waiting client (a closed loop hides
 * that delay). Latency counts from the due time, not from when the socket got to send it.
 * Keep-alive sockets, as The Things Stack uses.
 */
export async function openLoop(
  url: string,
  ratePerSecond: number,
  count: number,
  body: (i: number) => string,
): Promise<OpenLoopResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1024 });
  const target = new URL(url);
  const latenciesMs: number[] = [];
  let failures = 0;
  let answered = 0;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const settle = (): void => {
    if (++answered === count) {
      done();
    }
  };
  const send = (i: number, due: number): void => {
    const payload = body(i);
    const req = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => {
          latenciesMs.push(performance.now() - due);
          if (res.statusCode !== 204) {
            failures++;
          }
          settle();
        });
      },
    );
    req.on("error", () => {
      failures++;
      settle();
    });
    req.end(payload);
  };
  const start = performance.now() + 5;
  const interval = 1000 / ratePerSecond;
  let next = 0;
  while (next < count) {
    const now = performance.now();
    while (next < count && start + next * interval <= now) {
      send(next, start + next * interval);
      next++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await finished;
  agent.destroy();
  return { latenciesMs, failures, seconds: (performance.now() - start) / 1000 };
}
