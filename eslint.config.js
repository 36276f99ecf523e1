import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "coverage/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_" },
      ],
      curly: "error",
      "no-restricted-imports": [
        "error",
        {
          paths: [
            { name: "amqplib", message: "amqplib is used only inside src/bus/." },
            { name: "mqtt", message: "mqtt is used only inside its transport adapter." },
          ],
        },
      ],
    },
  },
  { files: ["src/bus/**/*.ts"], rules: { "no-restricted-imports": "off" } },
  { files: ["src/mqtt/**/*.ts"], rules: { "no-restricted-imports": "off" } },
  { files: ["test/**/*.ts", "bench/**/*.ts"], rules: { "no-restricted-imports": "off" } },
  // The web app's own browser modules (served as they are, no build step).
  { files: ["web/static/**/*.js"], languageOptions: { globals: globals.browser } },
);
