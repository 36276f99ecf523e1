import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Batcher, mayStartBatch } from "../../src/core/batcher.js";

/** A process function whose batches end only when the test says so. */
function heldProcess() {
  const batches: { items: number[]; finish: () => void; fail: (err: Error) => void }[] = [];
  const process = (items: number[]): Promise<string[]> =>
    new Promise((resolve, reject) => {
      batches.push({
        items,
        finish: () => resolve(items.map((i) => `done ${i}`)),
        fail: reject,
      });
    });
  return { batches, process };
}

describe("Batcher", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("gathers items for maxWaitMs, answers each with its own result, and starts at maxSize at once", async () => {
    const { batches, process } = heldProcess();
    const b = new Batcher({ process, maxSize: 3, maxWaitMs: 5, concurrency: 4 });
    const first = [b.submit(1), b.submit(2)];
    expect(batches).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(5);
    expect(batches.map((x) => x.items)).toEqual([[1, 2]]);
    const full = [b.submit(3), b.submit(4), b.submit(5)];
    expect(batches.map((x) => x.items)).toEqual([
      [1, 2],
      [3, 4, 5],
    ]);
    batches.forEach((x) => x.finish());
    expect(await Promise.all([...first, ...full])).toEqual([
      "done 1",
      "done 2",
      "done 3",
      "done 4",
      "done 5",
    ]);
  });

  it("fails every item of a failed batch, and only those", async () => {
    const { batches, process } = heldProcess();
    const b = new Batcher({ process, maxSize: 2, maxWaitMs: 1, concurrency: 2 });
    const failed = [b.submit(1), b.submit(2)].map((p) => p.catch((err: Error) => err.message));
    const fine = [b.submit(3), b.submit(4)];
    batches[0]!.fail(new Error("outage"));
    batches[1]!.finish();
    expect(await Promise.all(failed)).toEqual(["outage", "outage"]);
    expect(await Promise.all(fine)).toEqual(["done 3", "done 4"]);
  });

  it("runs at most `concurrency` batches; the rest wait and go when one ends", async () => {
    const { batches, process } = heldProcess();
    const b = new Batcher({ process, maxSize: 1, maxWaitMs: 1, concurrency: 2 });
    const all = [1, 2, 3, 4].map((i) => b.submit(i));
    expect(batches.map((x) => x.items)).toEqual([[1], [2]]);
    batches[0]!.finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(batches.map((x) => x.items)).toEqual([[1], [2], [3]]);
    batches[1]!.finish();
    batches[2]!.finish();
    await vi.advanceTimersByTimeAsync(0);
    batches[3]!.finish();
    expect(await Promise.all(all)).toHaveLength(4);
    await b.drained();
  });

  it("starts a batch beside a running one only once overlapAt items wait", async () => {
    const { batches, process } = heldProcess();
    const b = new Batcher({ process, maxSize: 10, maxWaitMs: 2, concurrency: 2, overlapAt: 3 });
    const all = [b.submit(1)];
    await vi.advanceTimersByTimeAsync(2);
    expect(batches.map((x) => x.items)).toEqual([[1]]);
    // Two wait while the first batch runs: too few for a second batch, past maxWaitMs too.
    all.push(b.submit(2), b.submit(3));
    await vi.advanceTimersByTimeAsync(10);
    expect(batches).toHaveLength(1);
    // A third makes enough.
    all.push(b.submit(4));
    await vi.advanceTimersByTimeAsync(2);
    expect(batches.map((x) => x.items)).toEqual([[1], [2, 3, 4]]);
    // Fewer than overlapAt wait again: while any batch runs, and they go when none does.
    all.push(b.submit(5));
    await vi.advanceTimersByTimeAsync(10);
    expect(batches).toHaveLength(2);
    batches[0]!.finish();
    await vi.advanceTimersByTimeAsync(10);
    expect(batches).toHaveLength(2);
    batches[1]!.finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(batches.map((x) => x.items)).toEqual([[1], [2, 3, 4], [5]]);
    batches[2]!.finish();
    expect(await Promise.all(all)).toHaveLength(5);
  });

  it("drained() waits for queued and running batches", async () => {
    const { batches, process } = heldProcess();
    const b = new Batcher({ process, maxSize: 5, maxWaitMs: 1, concurrency: 1 });
    await b.drained();
    const item = b.submit(1);
    let drained = false;
    const waiting = b.drained().then(() => {
      drained = true;
    });
    await vi.advanceTimersByTimeAsync(1);
    expect(drained).toBe(false);
    batches[0]!.finish();
    await waiting;
    expect(drained).toBe(true);
    await item;
  });

  it("mayStartBatch: a free slot and something waiting; beside a running batch, overlapAt waiting", () => {
    const limits = { concurrency: 3, overlapAt: 32 };
    expect(mayStartBatch(0, 0, limits)).toBe(false);
    expect(mayStartBatch(1, 0, limits)).toBe(true);
    expect(mayStartBatch(31, 1, limits)).toBe(false);
    expect(mayStartBatch(32, 1, limits)).toBe(true);
    expect(mayStartBatch(500, 3, limits)).toBe(false);
  });
});
