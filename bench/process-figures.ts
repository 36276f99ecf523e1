import { readdir, readFile, readlink } from "node:fs/promises";

/** What Linux's /proc says about one process at one moment. */
export interface ProcessFigures {
  /** Resident set size now (VmRSS), in MB (10^6 bytes: the stricter reading of "300 MB"). */
  readonly rssMb: number;
  /** Highest resident set size since the process started (VmHWM), in MB (10^6 bytes). */
  readonly hwmMb: number;
  /** Threads (libuv's pool and V8's helpers as well as the main thread). */
  readonly threads: number;
  /** Open file descriptors: entries of /proc/<pid>/fd (sockets, files, pipes, epoll). */
  readonly fds: number;
  /**
   * Of {@link fds}, the sockets: HTTP keep-alive connections come and go with the load (the
   * load generator opens more when answers are slow), so a leak shows in the others first.
   */
  readonly sockets: number;
}

export async function processFigures(pid: number): Promise<ProcessFigures> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status);
    if (!m) {
      throw new Error(`no ${name} in /proc/${pid}/status`);
    }
    return Number(m[1]);
  };
  // /proc reports kB meaning KiB.
  const mb = (kib: number): number => (kib * 1024) / 1e6;
  return {
    rssMb: mb(field("VmRSS")),
    hwmMb: mb(field("VmHWM")),
    threads: field("Threads"),
    ...(await descriptors(pid)),
  };
}

async function descriptors(pid: number): Promise<{ fds: number; sockets: number }> {
  const entries = await readdir(`/proc/${pid}/fd`);
  let sockets = 0;
  for (const fd of entries) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    if (target.startsWith("socket:")) {
      sockets++;
    }
  }
  return { fds: entries.length, sockets };
}
