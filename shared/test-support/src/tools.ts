// Where the real binaries are: an explicit environment variable, the project's .tools/bin
// (scripts/install-tools.sh), or PATH. A missing one is an error that says how to install it.
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file is shared/test-support/{src,dist/src}/tools.*). */
export const REPO_ROOT = fileURLToPath(new URL(import.meta.url.includes("/dist/") ? "../../../../" : "../../../", import.meta.url));

const OVERRIDES: Record<string, string> = { envoy: "ENVOY_BIN", "nats-server": "NATS_SERVER_BIN", nats: "NATS_BIN" };

export class MissingToolError extends Error {
  constructor(tool: string, looked: string[]) {
    super(
      `${tool} is required by this test but was not found (looked in: ${looked.join(", ")}). ` +
        "Install it with `make tools` (scripts/install-tools.sh).",
    );
    this.name = "MissingToolError";
  }
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function findTool(tool: string): string {
  const looked: string[] = [];
  const override = OVERRIDES[tool] ? process.env[OVERRIDES[tool]] : undefined;
  if (override) {
    if (executable(override)) return override;
    looked.push(`$${OVERRIDES[tool]}=${override}`);
  }
  const candidates = [join(REPO_ROOT, ".tools", "bin", tool), ...(process.env["PATH"] ?? "").split(delimiter).map((dir) => join(dir, tool))];
  for (const candidate of candidates) if (candidate && executable(candidate)) return candidate;
  looked.push(".tools/bin", "PATH");
  throw new MissingToolError(tool, looked);
}
