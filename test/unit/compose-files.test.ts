import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

/**
 * The Compose files, checked mechanically since no Docker engine runs here and Debian's
 * docker-compose 1.29 rejects the `env_file: [{path, required: false}]` form (Compose 2.24+):
 * each file, and each overlay merged over the base, against the Compose Specification's JSON
 * schema (the copy the `dclint` package ships, a devDependency; validated with Ajv), then
 * cross-references a schema cannot see (dependencies and their healthchecks, overlays, mounted
 * files, named volumes, the Prometheus scrape list) and values it leaves as free strings.
 */

const SCHEMA_FILE = join(
  dirname(createRequire(import.meta.url).resolve("dclint/package.json")),
  "schemas",
  "compose.schema.json",
);
const validateCompose = new Ajv({ allErrors: true, strict: false }).compile({
  ...(JSON.parse(readFileSync(SCHEMA_FILE, "utf8")) as object),
  // Draft-07, which the file names by its https address; Ajv knows it by the canonical one.
  $schema: "http://json-schema.org/draft-07/schema#",
});

/** The schema's complaints about a Compose model, one line each; none when it is valid. */
function schemaProblems(model: unknown): string[] {
  return validateCompose(model)
    ? []
    : (validateCompose.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""}`);
}

const COMPOSE = new URL("../../compose/", import.meta.url).pathname;

type Service = Record<string, unknown>;
interface ComposeFile {
  services?: Record<string, Service>;
  volumes?: Record<string, unknown>;
  [key: string]: unknown;
}

function load(name: string): ComposeFile {
  return parse(readFileSync(join(COMPOSE, name), "utf8"), { merge: true }) as ComposeFile;
}

const RESTART = new Set(["no", "always", "on-failure", "unless-stopped"]);
const CONDITIONS = new Set([
  "service_started",
  "service_healthy",
  "service_completed_successfully",
]);

/** `${VAR:-default}` → default, `${VAR}` → "" (what Compose substitutes with VAR unset). */
function substituted(value: string): string {
  return value.replace(
    /\$\{[A-Z_][A-Z0-9_]*(?::?-([^}]*))?\}/g,
    (_, d: string | undefined) => d ?? "",
  );
}

/** Problems of one service as the base file and `overlay` together define it. */
function serviceProblems(name: string, s: Service, all: Record<string, Service>): string[] {
  const problems: string[] = [];
  if (s.image === undefined && s.build === undefined) {
    problems.push(`${name}: neither image nor build`);
  }
  if (s.restart !== undefined && !RESTART.has(String(s.restart))) {
    problems.push(`${name}: restart ${String(s.restart)}`);
  }
  const deps = s.depends_on;
  const depNames = Array.isArray(deps) ? (deps as string[]) : Object.keys((deps as object) ?? {});
  for (const dep of depNames) {
    if (!(dep in all)) {
      problems.push(`${name}: depends on unknown service ${dep}`);
      continue;
    }
    const condition = Array.isArray(deps)
      ? "service_started"
      : String(
          (deps as Record<string, { condition?: string }>)[dep]?.condition ?? "service_started",
        );
    if (!CONDITIONS.has(condition)) {
      problems.push(`${name}: depends_on condition ${condition}`);
    }
    const hc = all[dep]!.healthcheck as { disable?: boolean } | undefined;
    if (condition === "service_healthy" && (!hc || hc.disable)) {
      problems.push(`${name}: waits for ${dep} to be healthy, which has no healthcheck`);
    }
  }
  for (const port of (s.ports as unknown[] | undefined) ?? []) {
    if (!/^(\d+\.\d+\.\d+\.\d+:)?\d+:\d+$/.test(String(port))) {
      problems.push(`${name}: port ${String(port)}`);
    }
  }
  for (const p of (s.expose as unknown[] | undefined) ?? []) {
    if (!/^\d+$/.test(String(p))) {
      problems.push(`${name}: expose ${String(p)}`);
    }
  }
  const hc = s.healthcheck as { test?: unknown; disable?: boolean } | undefined;
  if (hc && !hc.disable) {
    const test = hc.test;
    if (!(Array.isArray(test) && ["CMD", "CMD-SHELL", "NONE"].includes(String(test[0])))) {
      problems.push(`${name}: healthcheck test ${JSON.stringify(test)}`);
    }
  }
  return problems;
}

/** Merges an overlay's services over the base's, key by key (as `docker compose -f a -f b`). */
function merged(base: ComposeFile, overlay: ComposeFile): ComposeFile {
  const services: Record<string, Service> = { ...base.services };
  for (const [name, s] of Object.entries(overlay.services ?? {})) {
    services[name] = { ...services[name], ...s };
  }
  return { ...base, ...overlay, services, volumes: { ...base.volumes, ...overlay.volumes } };
}

describe("Compose files", () => {
  const base = load("docker-compose.yml");

  for (const name of ["docker-compose.yml", "production.yml", "test.yml"]) {
    it(`${name} is valid against the Compose Specification's JSON schema`, () => {
      expect(schemaProblems(load(name))).toEqual([]);
    });
  }

  it("the schema is the current one: it refuses what the specification refuses", () => {
    expect(
      schemaProblems({ services: { a: { image: "x", env_file: [{ required: false }] } } }),
    ).not.toEqual([]);
    expect(schemaProblems({ services: { a: { image: "x", no_such_key: 1 } } })).not.toEqual([]);
    expect(schemaProblems({ servics: {} })).not.toEqual([]);
  });

  for (const overlayName of ["production.yml", "test.yml"]) {
    it(`docker-compose.yml + ${overlayName} is a valid Compose model`, () => {
      const overlay = load(overlayName);
      const extra = Object.keys(overlay.services ?? {}).filter(
        (s) => !(s in (base.services ?? {})),
      );
      expect(extra, "overlay services missing from the base").toEqual([]);
      const model = merged(base, overlay);
      const problems = schemaProblems(model);
      const services = model.services ?? {};
      for (const [name, s] of Object.entries(services)) {
        problems.push(...serviceProblems(name, s, services));
        for (const v of (s.volumes as unknown[] | undefined) ?? []) {
          const source = substituted(String(v)).split(":")[0]!;
          if (source.startsWith(".")) {
            // Files of this repository mounted into a container must exist (data directories
            // such as the DataBolt share are the operator's).
            if (
              /\.(ya?ml|json|conf)$/.test(source) ||
              source.endsWith("provisioning") ||
              source.endsWith("dashboards")
            ) {
              if (!existsSync(join(COMPOSE, source))) {
                problems.push(`${name}: mounts ${source}, which does not exist`);
              }
            }
          } else if (!source.startsWith("/") && !(source in (model.volumes ?? {}))) {
            problems.push(`${name}: named volume ${source} is not declared`);
          }
        }
      }
      expect(problems).toEqual([]);
    });
  }

  it("Prometheus scrapes every broker service of the Compose file on its metrics port", () => {
    const prometheus = parse(
      readFileSync(join(COMPOSE, "prometheus", "prometheus.yml"), "utf8"),
    ) as {
      scrape_configs: { job_name: string; dns_sd_configs?: { names: string[]; port: number }[] }[];
    };
    const job = prometheus.scrape_configs.find((j) => j.job_name === "iota-router")!;
    const scraped = job.dns_sd_configs!.flatMap((d) => d.names).sort();
    const brokerServices = Object.entries(base.services ?? {})
      .filter(([, s]) => s.image === "iota-router:local" && s.command !== undefined)
      .filter(([, s]) => JSON.stringify(s.command) !== JSON.stringify(["migrate"]))
      .map(([n]) => n)
      .sort();
    expect(scraped).toEqual(brokerServices);
    expect(job.dns_sd_configs!.every((d) => d.port === 9464)).toBe(true);
  });
});
