import { readdir, readFile } from "node:fs/promises";
import { cpus } from "node:os";

/**
 * Where the CPU went during a bench run, from Linux's /proc: the machine's busy share, and the
 * CPU time of each party (the broker processes named, PostgreSQL, RabbitMQ, this bench process
 * with its load generator). On a machine whose every part shares the same cores, this is what
 * says whether a rate is bound by CPU (the machine is busy, and by whom) or by waiting.
 */
export interface CpuAccount {
  /** Share of all cores' time that was not idle over the run, 0-1 (every process counted). */
  readonly busy: number;
  /** CPU time per party over the run, ms. */
  readonly ms: Readonly<Record<string, number>>;
}

/** Linux's USER_HZ: /proc's clock ticks are 1/100 s on every architecture Node runs on. */
const TICK_MS = 10;

async function stat(pid: number | string): Promise<string[] | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    return [
      text.slice(text.indexOf("(") + 1, text.lastIndexOf(")")),
      ...text.slice(text.lastIndexOf(")") + 2).split(" "),
    ];
  } catch {
    return undefined; // the process has exited
  }
}

/** utime + stime of a process, and (`children`) of its waited-for children, in ticks. */
function ticks(fields: string[], children: boolean): number {
  // fields[0] is comm; /proc's field n (1-based, pid = 1) is fields[n - 2] here.
  const n = (k: number): number => Number(fields[k - 2]);
  return n(14) + n(15) + (children ? n(16) + n(17) : 0);
}

async function machineTicks(): Promise<{ idle: number; total: number }> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { idle: v[3]! + v[4]!, total };
}

/** CPU ticks of every process named `comm`, with the exited children of the eldest one. */
async function byCommand(comm: string): Promise<number> {
  let sum = 0;
  const entries = await readdir("/proc");
  for (const e of entries) {
    if (!/^\d+$/.test(e)) {
      continue;
    }
    const f = await stat(e);
    if (f === undefined || f[0] !== comm) {
      continue;
    }
    const parent = await stat(f[2]!);
    // The server's first process reaps its workers (PostgreSQL's autovacuum workers come and
    // go): their time is in its children's fields.
    sum += ticks(f, parent?.[0] !== comm);
  }
  return sum;
}

interface Snapshot {
  readonly machine: { idle: number; total: number };
  readonly parties: Map<string, number>;
}

async function snapshot(pids: Readonly<Record<string, number>>): Promise<Snapshot> {
  const parties = new Map<string, number>();
  for (const [name, pid] of Object.entries(pids)) {
    const f = await stat(pid);
    parties.set(name, f === undefined ? Number.NaN : ticks(f, false));
  }
  parties.set("PostgreSQL", await byCommand("postgres"));
  parties.set("RabbitMQ", await byCommand("beam.smp"));
  const own = process.cpuUsage();
  parties.set("bench + load generator", (own.user + own.system) / 1000 / TICK_MS);
  return { machine: await machineTicks(), parties };
}

/**
 * Runs `body` and accounts for the CPU it cost: `pids` names the broker processes to count on
 * their own (e.g. `{ "ttn-webhook": child.pid }`).
 */
export async function accountCpu<T>(
  pids: Readonly<Record<string, number>>,
  body: () => Promise<T>,
): Promise<{ result: T; cpu: CpuAccount }> {
  const before = await snapshot(pids);
  const result = await body();
  const after = await snapshot(pids);
  const ms: Record<string, number> = {};
  for (const [name, t] of after.parties) {
    ms[name] = (t - (before.parties.get(name) ?? Number.NaN)) * TICK_MS;
  }
  const total = after.machine.total - before.machine.total;
  const idle = after.machine.idle - before.machine.idle;
  return { result, cpu: { busy: total > 0 ? 1 - idle / total : Number.NaN, ms } };
}

/** Cores of this machine, for reading {@link CpuAccount.busy}. */
export const CORES = cpus().length;
