import { defineConfig } from "vitest/config";

/** Test files that start private servers and whole systems of processes. */
const HEAVY = [
  "test/integration/chaos.test.ts",
  "test/integration/monitoring.test.ts",
  "test/integration/rabbitmq-cluster.test.ts",
];

export default defineConfig({
  test: {
    globals: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["test/unit/**/*.test.ts"], sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          exclude: HEAVY,
          globalSetup: ["test/helpers/global-setup.ts"],
          // Two cores: more parallel files only contend for the same PostgreSQL and RabbitMQ.
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: "servers",
          include: HEAVY,
          globalSetup: ["test/helpers/global-setup.ts"],
          // Each starts servers of its own (PostgreSQL, RabbitMQ nodes, Prometheus) and a whole
          // system of processes: run after the rest, one at a time, so their load does not push
          // the other files' start-up and shutdown deadlines.
          maxWorkers: 1,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
