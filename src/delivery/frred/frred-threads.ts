import { Worker } from "node:worker_threads";

import { workerEntry } from "../../runtime/worker-entry.js";
import type { FileEntry, FileJob, FileReply, WriteResult } from "./frred-thread-protocol.js";

/**
 * Jobs sent to one thread before it has answered the first, so it goes on to the next without
 * waiting for the main thread's event loop (which is busy with intake and the database).
 */
const IN_FLIGHT_PER_THREAD = 2;

/**
 * Fewest directories a share holds: a small batch (a steady flow is batches of a few messages)
 * goes to fewer threads, because each share costs a message to a thread and its wake-up, which
 * on the main thread cost more than the rest of a few messages' work. A backlog's batches of
 * 250 are still shared among every thread.
 */
const MIN_SHARE = 8;

/** A message directory whose write failed in a file thread; `cause` carries the errno code. */
export class FileWriteError extends Error {
  readonly target: string;
  constructor(target: string, cause: Error) {
    super(cause.message, { cause });
    this.target = target;
  }
}

interface Pending {
  readonly job: FileJob;
  readonly resolve: (results: WriteResult[]) => void;
  readonly reject: (err: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  readonly jobs: Map<number, Pending>;
  dead: boolean;
}

/**
 * The FRRED writer's file threads (frred-thread.ts): up to `size` worker threads, started when
 * first needed, each writing the directories of the jobs it is sent with synchronous calls.
 * A thread that dies fails only the jobs it had (their temporary directories are removed when
 * stale) and is replaced by the next job. Idle threads do not keep the process alive.
 */
export class FileThreads {
  readonly #size: number;
  readonly #slots: Slot[] = [];
  readonly #queue: Pending[] = [];
  #nextId = 0;
  #closed = false;

  constructor(size: number) {
    this.#size = Math.max(1, size);
  }

  /**
   * Writes `entries` under `dir`, shared among the threads; one result per entry, in order.
   * Rejects (with {@link FileWriteError} for a failed directory) only once every share has
   * finished, so nothing of this call is still being written when the caller retries.
   * `baseSynced`: the call went to one thread, which also fsynced `dir` after its renames;
   * otherwise the caller must.
   */
  async write(
    dir: string,
    entries: readonly FileEntry[],
  ): Promise<{ results: WriteResult[]; baseSynced: boolean }> {
    const shares = Math.min(this.#size, Math.ceil(entries.length / MIN_SHARE));
    const per = Math.ceil(entries.length / shares);
    const syncBase = shares === 1;
    const settled = await Promise.allSettled(
      Array.from({ length: shares }, (_, i) =>
        this.#run(dir, entries.slice(i * per, (i + 1) * per), syncBase),
      ),
    );
    const results: WriteResult[] = [];
    for (const s of settled) {
      if (s.status === "rejected") {
        throw s.reason;
      }
      results.push(...s.value);
    }
    return { results, baseSynced: syncBase };
  }

  /** Stops the threads; jobs not answered yet fail. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const p of this.#queue.splice(0)) {
      p.reject(new Error("FRRED file threads closed"));
    }
    await Promise.all([...this.#slots].map((slot) => this.#end(slot)));
  }

  #run(dir: string, entries: readonly FileEntry[], syncBase: boolean): Promise<WriteResult[]> {
    if (entries.length === 0) {
      return Promise.resolve([]);
    }
    return new Promise((resolve, reject) => {
      if (this.#closed) {
        reject(new Error("FRRED file threads closed"));
        return;
      }
      this.#queue.push({ job: { id: this.#nextId++, dir, entries, syncBase }, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      const slot = this.#available();
      if (slot === undefined) {
        if (this.#slots.length === 0) {
          // Not even one thread could start: fail now rather than wait for nothing.
          for (const p of this.#queue.splice(0)) {
            p.reject(new Error("cannot start a FRRED file thread"));
          }
        }
        return;
      }
      const pending = this.#queue.shift()!;
      if (slot.jobs.size === 0) {
        slot.worker.ref();
      }
      slot.jobs.set(pending.job.id, pending);
      slot.worker.postMessage(pending.job);
    }
  }

  /** An idle thread, a new one while there are fewer than `size`, else the least busy with room. */
  #available(): Slot | undefined {
    let best: Slot | undefined;
    for (const slot of this.#slots) {
      if (best === undefined || slot.jobs.size < best.jobs.size) {
        best = slot;
      }
    }
    if ((best === undefined || best.jobs.size > 0) && this.#slots.length < this.#size) {
      best = this.#spawn() ?? best;
    }
    return best !== undefined && best.jobs.size < IN_FLIGHT_PER_THREAD ? best : undefined;
  }

  #spawn(): Slot | undefined {
    const entry = workerEntry(import.meta.url, "frred-thread");
    let worker: Worker;
    try {
      worker = new Worker(entry.script, {
        eval: entry.eval,
        // Nothing of the process's environment (secrets) reaches the thread. No heap limit:
        // a job holds its messages, which may be large, and the code is our own.
        env: {},
      });
    } catch {
      return undefined;
    }
    worker.unref();
    const slot: Slot = { worker, jobs: new Map(), dead: false };
    this.#slots.push(slot);
    worker.on("message", (reply: FileReply) => {
      const pending = slot.jobs.get(reply.id);
      slot.jobs.delete(reply.id);
      if (slot.jobs.size === 0) {
        worker.unref();
      }
      if (pending !== undefined) {
        if ("failure" in reply) {
          const { target, message, code } = reply.failure;
          pending.reject(new FileWriteError(target, Object.assign(new Error(message), { code })));
        } else {
          pending.resolve(reply.results);
        }
      }
      this.#pump();
    });
    worker.on("error", (err: Error) => this.#lose(slot, err));
    worker.on("exit", (code) => this.#lose(slot, new Error(`FRRED file thread exited (${code})`)));
    return slot;
  }

  /** A thread died: its jobs fail (the caller retries the batch), the next job starts another. */
  #lose(slot: Slot, err: Error): void {
    if (slot.dead) {
      return;
    }
    slot.dead = true;
    this.#slots.splice(this.#slots.indexOf(slot), 1);
    for (const pending of slot.jobs.values()) {
      pending.reject(new Error(`FRRED file thread failed: ${err.message}`, { cause: err }));
    }
    slot.jobs.clear();
    if (!this.#closed) {
      this.#pump();
    }
  }

  async #end(slot: Slot): Promise<void> {
    const stopped = slot.worker.terminate();
    this.#lose(slot, new Error("closed"));
    await stopped;
  }
}
