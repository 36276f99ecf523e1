import type { ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";

import { spawnBroker } from "../../test/helpers/cli.js";

/**
 * One `broker run <component>` process of the chaos run, which the run kills with SIGKILL and
 * starts again. Its output goes to `<logDir>/<label>.log` (appended across restarts).
 */
export class ComponentProcess {
  readonly label: string;
  readonly #args: string[];
  readonly #env: NodeJS.ProcessEnv;
  readonly #log: WriteStream;
  #child: ChildProcess | undefined;
  #closed = false;
  /** Exits nobody asked for (a crash), by exit code or signal. */
  readonly unexpectedExits: string[] = [];
  starts = 0;

  constructor(label: string, args: string[], env: NodeJS.ProcessEnv, logDir: string) {
    this.label = label;
    this.#args = args;
    this.#env = env;
    this.#log = createWriteStream(join(logDir, `${label}.log`), { flags: "a" });
  }

  start(): void {
    if (this.#closed) {
      // The run is being torn down: a fault's late restart must not leave an orphan behind.
      return;
    }
    const child = spawnBroker(this.#args, { env: this.#env, stdio: ["ignore", "pipe", "pipe"] });
    this.starts++;
    child.stdout!.pipe(this.#log, { end: false });
    child.stderr!.pipe(this.#log, { end: false });
    child.once("exit", (code, signal) => {
      if (this.#child === child) {
        this.#child = undefined;
        this.unexpectedExits.push(signal ?? `exit ${code}`);
      }
    });
    this.#child = child;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** SIGKILL, and waits for the process to be gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    const gone = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await gone;
  }

  /** SIGTERM (the graceful stop), SIGKILL after `graceMs`. Idempotent. */
  async stop(graceMs = 10_000): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await gone;
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.stop();
    await new Promise((r) => this.#log.end(r));
  }
}
