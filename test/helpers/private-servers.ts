import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

import pg from "pg";

import { freePort } from "./ports.js";

export { freePort };

/**
 * PostgreSQL and RabbitMQ servers of a run's own (Debian's binaries, own ports and data
 * directories under /tmp), which the run may kill and restart without touching the shared servers
 * every other test uses. Each `stop()` is idempotent and kills what is left with SIGKILL.
 */

const exec = promisify(execFile);
const PG_BIN = "/usr/lib/postgresql/15/bin";
/** The server scripts themselves: /usr/sbin's wrappers switch to the rabbitmq user and its HOME. */
const RABBIT_BIN = "/usr/lib/rabbitmq/bin";

/** Sends `sig` to `pid`; false when there is no such process. */
function signal(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` (a throw counts as false) until true; throws "`what` within N ms" after `timeoutMs`. */
export async function until(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) {
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} within ${timeoutMs} ms`);
}

/** PostgreSQL refuses to run as root: as root, its files belong to and it runs as `postgres`. */
const asRoot = process.getuid?.() === 0;

async function runPg(tool: string, args: string[]): Promise<void> {
  const [cmd, argv] = asRoot
    ? ["runuser", ["-u", "postgres", "--", join(PG_BIN, tool), ...args]]
    : [join(PG_BIN, tool), args];
  await exec(cmd, argv, { timeout: 60_000 });
}

async function ownedByPostgres(path: string): Promise<void> {
  if (asRoot) {
    const { stdout } = await exec("id", ["-u", "postgres"]);
    const { stdout: gid } = await exec("id", ["-g", "postgres"]);
    await chown(path, Number(stdout.trim()), Number(gid.trim()));
  }
}

export interface PrivatePostgres {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** `pg_ctl stop -m immediate` (a crash: no checkpoint) then start on the same data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** initdb, then a server on its own port with trust auth on loopback, fsync on. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = await mkdtemp(join(tmpdir(), "private-pg-"));
  await chmod(dir, 0o755);
  await ownedByPostgres(dir);
  const data = join(dir, "data");
  const port = await freePort();
  await runPg("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync"]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`;
  const start = async (): Promise<void> => {
    await runPg("pg_ctl", ["-D", data, "-o", options, "-l", join(dir, "log"), "-w", "start"]);
  };
  await start();
  let stopped = false;
  return {
    host: "127.0.0.1",
    port,
    dir,
    async restart() {
      await runPg("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      // Stopped for good meanwhile (a run torn down mid-fault): stay stopped.
      if (!stopped) {
        await start();
      }
    },
    async stop() {
      if (stopped) {
        return;
      }
      stopped = true;
      await runPg("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Creates `database` on a private server and returns a client pool on it. */
export async function createPrivateDatabase(
  server: { host: string; port: number },
  database: string,
): Promise<pg.Pool> {
  const admin = new pg.Client({ host: server.host, port: server.port, user: "postgres" });
  await admin.connect();
  try {
    await admin.query(`create database ${database}`);
  } finally {
    await admin.end();
  }
  return new pg.Pool({ host: server.host, port: server.port, user: "postgres", database, max: 4 });
}

export interface RabbitNodeSpec {
  /** Short node name, `<name>@localhost`. */
  readonly name: string;
  readonly amqpPort: number;
  readonly distPort: number;
}

export interface PrivateRabbit {
  readonly node: RabbitNodeSpec;
  readonly url: string;
  /** `rabbitmqctl -n <node> <args>` with the run's Erlang cookie; returns stdout. */
  ctl(...args: string[]): Promise<string>;
  /** SIGKILL of the Erlang VM (no clean shutdown), then a fresh start on the same data. */
  restart(): Promise<void>;
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface PrivateRabbitOptions {
  /** Directory holding the shared `.erlang.cookie` (a cluster's nodes share it). */
  readonly home?: string;
  readonly node?: RabbitNodeSpec;
  /** Extra rabbitmq.conf lines. */
  readonly conf?: readonly string[];
  /** Plugins to enable (none by default), e.g. `rabbitmq_prometheus`. */
  readonly plugins?: readonly string[];
}

/** A fresh home with an Erlang cookie of its own, for one node or for every node of a cluster. */
export async function rabbitHome(): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), "private-rabbit-home-"));
  const cookie = join(home, ".erlang.cookie");
  await writeFile(cookie, `PRIVATE${Math.random().toString(36).slice(2).toUpperCase()}`);
  await chmod(cookie, 0o400);
  return home;
}

/** A RabbitMQ node with its own name, AMQP and distribution ports, config, plugins and data. */
export async function startPrivateRabbit(
  options: PrivateRabbitOptions = {},
): Promise<PrivateRabbit> {
  const home = options.home ?? (await rabbitHome());
  const node = options.node ?? {
    name: `private${process.pid}x${Math.random().toString(36).slice(2, 8)}`,
    amqpPort: await freePort(),
    distPort: await freePort(),
  };
  const dir = await mkdtemp(join(tmpdir(), `private-rabbit-${node.name}-`));
  const conf = join(dir, "rabbitmq.conf");
  const plugins = join(dir, "enabled_plugins");
  await writeFile(
    conf,
    [
      `listeners.tcp.default = 127.0.0.1:${node.amqpPort}`,
      "loopback_users = none",
      // The shared machine's disk is what it is: the default 50 MB free-space alarm is kept.
      ...(options.conf ?? []),
    ].join("\n") + "\n",
  );
  await writeFile(plugins, `[${(options.plugins ?? []).join(",")}].\n`);
  await mkdir(join(dir, "log"), { recursive: true });
  const nodeName = `${node.name}@localhost`;
  const env = {
    ...process.env,
    HOME: home,
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_NODE_PORT: String(node.amqpPort),
    RABBITMQ_DIST_PORT: String(node.distPort),
    RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
    RABBITMQ_LOG_BASE: join(dir, "log"),
    RABBITMQ_CONFIG_FILE: conf,
    RABBITMQ_ENABLED_PLUGINS_FILE: plugins,
    RABBITMQ_PID_FILE: join(dir, "pid"),
  };
  const ctl = async (...args: string[]): Promise<string> => {
    const { stdout } = await exec(join(RABBIT_BIN, "rabbitmqctl"), ["-n", nodeName, ...args], {
      env,
      timeout: 60_000,
    });
    return stdout;
  };
  let child: ChildProcess | undefined;
  let stopped = false;
  const url = `amqp://guest:guest@127.0.0.1:${node.amqpPort}/%2F`;
  const start = async (): Promise<void> => {
    if (stopped) {
      // Stopped for good meanwhile (a run torn down mid-fault): stay stopped.
      return;
    }
    // In its own directory: a node that fails to start leaves its erl_crash.dump there.
    child = spawn(join(RABBIT_BIN, "rabbitmq-server"), [], { env, stdio: "ignore", cwd: dir });
    const proc = child;
    await until(`RabbitMQ node ${nodeName} did not start`, 180_000, async () => {
      if (proc.exitCode !== null) {
        return true;
      }
      await ctl("-q", "await_startup", "--timeout", "5");
      return true;
    });
    if (proc.exitCode !== null) {
      throw new Error(`RabbitMQ node ${nodeName} exited with ${proc.exitCode} while starting`);
    }
  };
  const pidFile = join(dir, "pid");
  const kill = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc) {
      return;
    }
    // The start script runs the Erlang VM as a child of its own; the VM writes its pid here.
    const vm = Number((await readFile(pidFile, "utf8").catch(() => "")).trim());
    proc.kill("SIGKILL");
    if (vm > 0) {
      signal(vm, "SIGKILL");
      await until(`RabbitMQ node ${nodeName} (pid ${vm}) did not die`, 30_000, async () => {
        return !signal(vm, 0);
      });
    }
    await rm(pidFile, { force: true });
  };
  await start();
  return {
    node,
    url,
    ctl,
    start,
    kill,
    async restart() {
      await kill();
      await start();
    },
    async stop() {
      if (stopped) {
        return;
      }
      stopped = true;
      await kill();
      await rm(dir, { recursive: true, force: true });
      if (!options.home) {
        await rm(home, { recursive: true, force: true });
      }
    },
  };
}

export interface PrivateCluster {
  readonly nodes: PrivateRabbit[];
  /** Every node's AMQP URL, comma-separated: the form AMQP_URL takes for a cluster. */
  readonly urls: string;
  stop(): Promise<void>;
}

/**
 * `size` RabbitMQ nodes on this machine joined into one cluster: each with its own node name,
 * AMQP and distribution ports, config, plugins file and data directory, all with one Erlang
 * cookie. The second and later nodes join the first (`join_cluster`).
 */
export async function startPrivateCluster(size = 3): Promise<PrivateCluster> {
  const home = await rabbitHome();
  const tag = `c${process.pid}x${Math.random().toString(36).slice(2, 6)}`;
  const nodes: PrivateRabbit[] = [];
  const stop = async (): Promise<void> => {
    for (const n of nodes) {
      await n.stop().catch(() => undefined);
    }
    await rm(home, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < size; i++) {
      nodes.push(
        await startPrivateRabbit({
          home,
          node: { name: `${tag}n${i}`, amqpPort: await freePort(), distPort: await freePort() },
          // A minority partition pauses instead of diverging.
          conf: ["cluster_partition_handling = pause_minority"],
        }),
      );
    }
    const first = `${nodes[0]!.node.name}@localhost`;
    for (const n of nodes.slice(1)) {
      await n.ctl("stop_app");
      await n.ctl("join_cluster", first);
      await n.ctl("start_app");
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes, urls: nodes.map((n) => n.url).join(","), stop };
}

export interface PrivateMosquitto {
  readonly port: number;
  readonly url: string;
  /**
   * A broker restart: SIGTERM (Mosquitto saves its sessions and queued QoS 1 messages to its
   * persistence file on the way out), then a fresh start on the same file.
   */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A Mosquitto broker of a run's own (Debian's binary, its own port and persistence directory
 * under /tmp), which the run may restart without touching the shared broker on 1883.
 */
export async function startPrivateMosquitto(): Promise<PrivateMosquitto> {
  const dir = await mkdtemp(join(tmpdir(), "private-mosquitto-"));
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  await writeFile(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      "persistence true",
      `persistence_location ${dir}/`,
      // Queued QoS 1 messages for an offline persistent session are kept, however many.
      "max_queued_messages 0",
      // As root Mosquitto would switch to the mosquitto user, who cannot write this directory.
      ...(asRoot ? ["user root"] : []),
      "log_dest stderr",
      "log_type error",
      "log_type warning",
    ].join("\n") + "\n",
  );
  let child: ChildProcess | undefined;
  let stopped = false;
  const listening = async (): Promise<boolean> => {
    const { connect } = await import("node:net");
    return new Promise((resolve) => {
      const s = connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
  };
  const start = async (): Promise<void> => {
    if (stopped) {
      return;
    }
    child = spawn("/usr/sbin/mosquitto", ["-c", conf], { stdio: "ignore", cwd: dir });
    const proc = child;
    await until(`Mosquitto on port ${port} did not start`, 30_000, async () => {
      if (proc.exitCode !== null) {
        throw new Error(`Mosquitto exited with ${proc.exitCode} while starting`);
      }
      return listening();
    });
  };
  const terminate = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
      return;
    }
    const gone = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    await gone;
    clearTimeout(timer);
  };
  await start();
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    async restart() {
      await terminate();
      await start();
    },
    async stop() {
      if (stopped) {
        return;
      }
      stopped = true;
      await terminate();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
