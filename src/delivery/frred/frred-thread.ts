import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fchmodSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { parentPort } from "node:worker_threads";

import {
  DIRECTORY_MODE,
  FILE_MODE,
  TEMPORARY_PREFIX,
  type FileEntry,
  type FileJob,
  type FileReply,
  type WriteResult,
} from "./frred-thread-protocol.js";

/**
 * A FRRED file thread (see frred-threads.ts): writes each message directory of the jobs it is
 * sent with synchronous calls, one directory after another. On the main thread every one of the
 * dozen file-system calls per message was a round trip through libuv's pool (4 threads) and a
 * promise, about half of the main thread's work, with at most 4 fsyncs waiting at once
 * (doc/benchmarks.md § FRRED writer alone). Here a job costs one round trip, and a blocking
 * fsync holds only this thread.
 */

/**
 * Part of every temporary name this thread makes, with a counter after it: unique among the
 * threads and processes writing into one base directory without a random draw per message.
 */
const unique = `${process.pid.toString(36)}${randomBytes(4).toString("hex")}`;
let counter = 0;

/**
 * Whether mkdir and open need a chmod after them: only when the process umask strips bits of
 * the wanted modes (the usual 022 strips none). Read from /proc rather than process.umask(),
 * which sets the umask twice to read it, racing every other thread creating files; when it
 * cannot be read, always chmod.
 */
const chmodNeeded = ((): boolean => {
  try {
    const umask = /^Umask:\s*([0-7]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    return umask === undefined || (parseInt(umask, 8) & (DIRECTORY_MODE | FILE_MODE)) !== 0;
  } catch {
    return true;
  }
})();

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function syncDirectory(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes one message directory: the file is written and fsynced inside a temporary sibling
 * directory, which is fsynced and renamed into place. The caller fsyncs the base directory.
 */
function writeOne(dir: string, entry: FileEntry): WriteResult {
  const target = join(dir, entry.name);
  // throwIfNoEntry: the usual answer, "not there", costs no exception.
  if (lstatSync(target, { throwIfNoEntry: false }) !== undefined) {
    return "exists";
  }
  const temporary = join(
    dir,
    `${TEMPORARY_PREFIX}${entry.name}-${unique}${(counter++).toString(36)}`,
  );
  mkdirSync(temporary, { mode: DIRECTORY_MODE });
  try {
    if (chmodNeeded) {
      chmodSync(temporary, DIRECTORY_MODE);
    }
    const fd = openSync(join(temporary, entry.file), "wx", FILE_MODE);
    try {
      if (chmodNeeded) {
        fchmodSync(fd, FILE_MODE);
      }
      writeFileSync(fd, entry.content, "utf8");
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    syncDirectory(temporary);
    try {
      renameSync(temporary, target);
    } catch (err) {
      const code = codeOf(err);
      if (code === "ENOTEMPTY" || code === "EEXIST") {
        // Another copy of this writer finished the same message first.
        rmSync(temporary, { recursive: true, force: true });
        return "exists";
      }
      throw err;
    }
    return "written";
  } catch (err) {
    try {
      rmSync(temporary, { recursive: true, force: true });
    } catch {
      // Left for removeStaleTemporaries.
    }
    throw err;
  }
}

function run(job: FileJob): FileReply {
  const results: WriteResult[] = [];
  for (const entry of job.entries) {
    try {
      results.push(writeOne(job.dir, entry));
    } catch (err) {
      // The directories before this one stay and count as `exists` on the retry.
      return {
        id: job.id,
        results,
        failure: {
          target: join(job.dir, entry.name),
          message: err instanceof Error ? err.message : String(err),
          code: codeOf(err),
        },
      };
    }
  }
  if (job.syncBase) {
    try {
      syncDirectory(job.dir);
    } catch (err) {
      return {
        id: job.id,
        results,
        failure: {
          target: job.dir,
          message: `cannot fsync the base directory: ${err instanceof Error ? err.message : String(err)}`,
          code: codeOf(err),
        },
      };
    }
  }
  return { id: job.id, results };
}

parentPort?.on("message", (job: FileJob) => {
  parentPort?.postMessage(run(job));
});
