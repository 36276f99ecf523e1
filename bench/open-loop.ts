import { Agent, request } from "node:http";

/** What an open-loop run measured. */
export interface OpenLoopResult {
  /** Per request: answer time minus the time it was due to be sent (queueing included), ms. */
  readonly latenciesMs: number[];
  /** Requests answered other than 204 (shed ones apart), or failed on the socket. */
  readonly failures: number;
  /** The failures by HTTP status or socket error code (`503`, `ECONNRESET`). */
  readonly failuresBy: Readonly<Record<string, number>>;
  /**
   * Requests the webhook shed (503 `overloaded`, TTN_WEBHOOK_MAX_WAITING): intended above
   * capacity, the sender retries them; not counted in `failures`.
   */
  readonly shed: number;
  /** From the first due time to the last answer, s. */
  readonly seconds: number;
}

/**
 * Idle keep-alive sockets are closed after this long, ms: The Things Stack's (Go's http.Transport
 * default), under the servers' 95 s (src/runtime/http.ts), so the client closes first and never
 * reuses a connection the server is closing. Without it Node 20's agent keeps idle sockets for
 * ever: it heeds the server's `Keep-Alive: timeout` hint only when `timeout` is set.
 */
const IDLE_TIMEOUT_MS = 90_000;

/** The keep-alive pool an open-loop run uses. */
export function newAgent(): Agent {
  // `timeout` applies to busy sockets too, but the agent destroys only idle ones on it.
  return new Agent({ keepAlive: true, maxSockets: 1024, timeout: IDLE_TIMEOUT_MS });
}

/**
 * An open-loop load: request i is due at start + i / rate, whatever the answers so far, so a
 * slow server meets a growing queue instead of a politely waiting client (a closed loop hides
 * that delay). Latency counts from the due time, not from when the socket got to send it.
 * Keep-alive sockets, as The Things Stack uses: a pool of the run's own, or `shared` (left open,
 * so runs one after another keep their connections, as one long-lived sender would).
 */
export async function openLoop(
  url: string,
  ratePerSecond: number,
  count: number,
  body: (i: number) => string,
  shared?: Agent,
): Promise<OpenLoopResult> {
  const agent = shared ?? newAgent();
  const target = new URL(url);
  const latenciesMs: number[] = [];
  let failures = 0;
  let shed = 0;
  const failuresBy: Record<string, number> = {};
  const fail = (kind: string): void => {
    failures++;
    failuresBy[kind] = (failuresBy[kind] ?? 0) + 1;
  };
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
        // Only a 503's body is read: it tells a shed request from an outage's.
        let text = "";
        if (res.statusCode === 503) {
          res.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
        } else {
          res.resume();
        }
        res.on("end", () => {
          latenciesMs.push(performance.now() - due);
          if (res.statusCode === 503 && text.includes('"error":"overloaded"')) {
            shed++;
          } else if (res.statusCode !== 204) {
            fail(String(res.statusCode));
          }
          settle();
        });
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) => {
      fail(err.code ?? err.message);
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
  if (shared === undefined) {
    agent.destroy();
  }
  return { latenciesMs, failures, failuresBy, shed, seconds: (performance.now() - start) / 1000 };
}
