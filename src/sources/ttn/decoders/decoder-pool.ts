import { join, resolve } from "node:path";
import { Worker } from "node:worker_threads";

import type { Logger } from "../../../core/logger.js";
import type {
  DecodeReply,
  DecodeRequest,
  DecoderFailureReason,
  DecoderInput,
  WorkerData,
  WorkerReady,
} from "./protocol.js";
import { workerEntry } from "../../../runtime/worker-entry.js";

export interface DecoderPoolOptions {
  /** Directory holding `uplink/<name>.js` (TTN_DECODERS_DIR). */
  readonly dir: string;
  /** Time limit of one decodeUplink call, ms (TTN_DECODER_TIMEOUT_MS). */
  readonly timeoutMs: number;
  /**
   * Memory each decoder may allocate, MB (TTN_DECODER_MEMORY_MB): the cap of its QuickJS
   * interpreter's WebAssembly memory beyond the interpreter's own fixed 16 MB.
   */
  readonly memoryMb: number;
  /** Worker threads at most (TTN_DECODER_WORKERS); started when first needed. */
  readonly workers: number;
  readonly logger: Logger;
  /**
   * Time a ready worker may take beyond `timeoutMs` to answer (reading and compiling a file)
   * before it is terminated and replaced, ms. Default 2 000.
   */
  readonly graceMs?: number;
}

export type DecodeResult = Omit<Extract<DecodeReply, { ok: true }>, "id"> | DecodeFailure;
export interface DecodeFailure {
  readonly ok: false;
  readonly reason: DecoderFailureReason;
  readonly error: string;
}

/**
 * Decodings sent to one worker before it has answered the first. The worker runs them one after
 * another without waiting for this thread, whose event loop is busy with the webhook: one at a
 * time, every decoding cost two thread wake-ups, which on a loaded machine limited the webhook.
 */
const IN_FLIGHT_PER_WORKER = 8;

/** How long a new worker may take to say it is ready, ms. */
const STARTUP_LIMIT_MS = 30_000;

/** TTN application ids are lower-case letters, digits and dashes; anything path-like is refused. */
const DECODER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

interface Task {
  readonly request: DecodeRequest;
  readonly resolve: (result: DecodeResult) => void;
}

interface Slot {
  readonly worker: Worker;
  /** The worker has said it is ready; before that its tasks' watchdog has not started. */
  ready: boolean;
  /** Sent to the worker, in order; it runs them one at a time, the first being under way. */
  readonly tasks: Task[];
  timer?: NodeJS.Timeout;
  dead: boolean;
}

/**
 * Runs TTN-style `decodeUplink` decoders on a few worker threads, each running the calls it is
 * sent one at a time; inside a worker each decoder runs in its own QuickJS sandbox (quickjs-sandbox.ts). The
 * threads keep a runaway decoder off the event loop: a worker that dies or does not answer in
 * time is terminated and replaced, and only the uplink it was decoding fails. `decode` never
 * rejects: every outcome is a {@link DecodeResult}.
 */
export class DecoderPool {
  readonly #o: DecoderPoolOptions;
  readonly #dir: string;
  readonly #queue: Task[] = [];
  readonly #slots: Slot[] = [];
  #nextId = 1;
  #closed = false;

  constructor(options: DecoderPoolOptions) {
    this.#o = options;
    this.#dir = resolve(options.dir);
  }

  /** Starts the workers ahead of the first uplink (decoding starts them anyway). */
  warm(): void {
    while (!this.#closed && this.#slots.length < this.#o.workers) {
      if (!this.#spawn()) {
        return;
      }
    }
  }

  /** Runs `uplink/<name>.js` on `input`. */
  decode(name: string, input: DecoderInput): Promise<DecodeResult> {
    if (!DECODER_NAME.test(name) || name.includes("..")) {
      return Promise.resolve(
        failure("decoder_not_found", `unusable decoder name ${JSON.stringify(name)}`),
      );
    }
    if (this.#closed) {
      return Promise.resolve(failure("decoder_crashed", "the decoder pool is stopped"));
    }
    const request: DecodeRequest = {
      id: this.#nextId++,
      file: join(this.#dir, "uplink", `${name}.js`),
      input,
      timeoutMs: this.#o.timeoutMs,
    };
    return new Promise((resolve) => {
      this.#queue.push({ request, resolve });
      this.#dispatch();
    });
  }

  /** Terminates every worker; queued and running decodings fail. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const task of this.#queue.splice(0)) {
      task.resolve(failure("decoder_crashed", "the decoder pool is stopping"));
    }
    await Promise.all(
      [...this.#slots].map((slot) => this.#fail(slot, "decoder_crashed", "stopping")),
    );
  }

  #dispatch(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      let slot = this.#leastBusy();
      if ((slot === undefined || slot.tasks.length > 0) && this.#slots.length < this.#o.workers) {
        // A new worker rather than a queue behind a busy one.
        slot = this.#spawn() ?? slot;
        if (slot === undefined && this.#slots.length === 0) {
          // No worker at all: fail the uplink rather than keep it waiting for ever.
          this.#queue.shift()!.resolve(failure("decoder_crashed", "cannot start a decoder worker"));
          continue;
        }
      }
      if (!slot) {
        return;
      }
      this.#assign(slot, this.#queue.shift()!);
    }
  }

  /** The live worker with the fewest decodings in hand, if one can take another. */
  #leastBusy(): Slot | undefined {
    let best: Slot | undefined;
    for (const slot of this.#slots) {
      if (!slot.dead && slot.tasks.length < IN_FLIGHT_PER_WORKER) {
        if (best === undefined || slot.tasks.length < best.tasks.length) {
          best = slot;
        }
      }
    }
    return best;
  }

  #spawn(): Slot | undefined {
    const entry = workerEntry(import.meta.url, "decoder-worker");
    let worker: Worker;
    try {
      worker = new Worker(entry.script, {
        eval: entry.eval,
        workerData: { memoryMb: this.#o.memoryMb } satisfies WorkerData,
        // Nothing of the process's environment (secrets) reaches the thread.
        env: {},
        // The thread's own JavaScript heap (decoders' memories are WebAssembly memories
        // outside it, capped one by one). The stack runs the interpreter: it must hold
        // QuickJS's 256 KiB stack limit with room to spare.
        resourceLimits: {
          maxOldGenerationSizeMb: 64,
          maxYoungGenerationSizeMb: 16,
          stackSizeMb: 4,
        },
      });
    } catch (err) {
      this.#o.logger.error({ err }, "cannot start a decoder worker");
      return undefined;
    }
    worker.unref();
    const slot: Slot = { worker, ready: false, tasks: [], dead: false };
    worker.on("message", (reply: DecodeReply | WorkerReady) => {
      if ("ready" in reply) {
        slot.ready = true;
        this.#watch(slot);
      } else {
        this.#answer(slot, reply);
      }
    });
    worker.on("error", (err: Error & { code?: string }) => {
      // Decoders cannot fill the thread's own heap (their memory is capped apart), so
      // running out of it is a crash of ours, not a decoder's memory limit.
      void this.#fail(slot, "decoder_crashed", err.message);
    });
    worker.on(
      "exit",
      (code) => void this.#fail(slot, "decoder_crashed", `worker exited (${code})`),
    );
    setTimeout(() => {
      if (!slot.ready) {
        void this.#fail(slot, "decoder_crashed", "the decoder worker did not start");
      }
    }, STARTUP_LIMIT_MS).unref();
    this.#slots.push(slot);
    return slot;
  }

  #assign(slot: Slot, task: Task): void {
    slot.tasks.push(task);
    slot.worker.postMessage(task.request);
    this.#watch(slot);
  }

  /**
   * Starts the watchdog of a ready worker's first task (restarted at each answer, so it times
   * each decoding from about when the worker began it).
   */
  #watch(slot: Slot): void {
    if (!slot.ready || slot.tasks.length === 0 || slot.timer !== undefined) {
      return;
    }
    slot.timer = setTimeout(
      () =>
        void this.#fail(
          slot,
          "decoder_timeout",
          `the decoder did not finish within ${this.#o.timeoutMs} ms; its worker was replaced`,
        ),
      this.#o.timeoutMs + (this.#o.graceMs ?? 2_000),
    );
  }

  #answer(slot: Slot, reply: DecodeReply): void {
    const index = slot.tasks.findIndex((t) => t.request.id === reply.id);
    if (slot.dead || index < 0) {
      return;
    }
    const [task] = slot.tasks.splice(index, 1);
    clearTimeout(slot.timer);
    slot.timer = undefined;
    this.#watch(slot);
    const { id: _id, ...result } = reply;
    task!.resolve(result);
    this.#dispatch();
  }

  async #fail(slot: Slot, reason: DecoderFailureReason, error: string): Promise<void> {
    if (slot.dead) {
      return;
    }
    slot.dead = true;
    clearTimeout(slot.timer);
    this.#slots.splice(this.#slots.indexOf(slot), 1);
    // The first task was under way and fails; the others never started and go to another
    // worker, ahead of the tasks still queued.
    const [task, ...waiting] = slot.tasks.splice(0);
    if (this.#closed) {
      for (const w of waiting) {
        w.resolve(failure("decoder_crashed", "the decoder pool is stopping"));
      }
    } else {
      this.#queue.unshift(...waiting);
    }
    if (task) {
      if (!this.#closed) {
        this.#o.logger.warn({ reason, error }, "decoder worker replaced");
      }
      task.resolve(failure(reason, error));
    }
    this.#dispatch();
    await slot.worker.terminate().catch(() => undefined);
  }
}

function failure(reason: DecoderFailureReason, error: string): DecodeFailure {
  return { ok: false, reason, error };
}
