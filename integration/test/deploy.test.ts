// What can be verified of the deployment files without a Docker engine: both Envoy bootstraps
// pass Envoy's own validator, and docker-compose.yaml and the Dockerfile agree with the
// workspace layout and the documented ports.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { parse } from "yaml";
import { findTool, REPO_ROOT } from "@envoyage/test-support";

const run = promisify(execFile);

interface ComposeService {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
}

async function compose(): Promise<Record<string, ComposeService>> {
  const document = parse(await readFile(join(REPO_ROOT, "docker-compose.yaml"), "utf8"), { merge: true }) as {
    services: Record<string, ComposeService>;
  };
  return document.services;
}

describe("Envoy bootstraps", () => {
  for (const file of ["envoy/bootstrap.yaml", "envoy/bootstrap.compose.yaml"]) {
    it(`${file} passes envoy --mode validate`, async () => {
      const { stdout, stderr } = await run(findTool("envoy"), ["--mode", "validate", "-c", join(REPO_ROOT, file)]);
      assert.match(stdout + stderr, /OK/);
    });
  }
});

describe("docker-compose.yaml", () => {
  it("runs the same stack as make up, on the same ports", async () => {
    const services = await compose();
    assert.deepEqual(Object.keys(services).sort(), ["api", "envoy", "nats", "upstream-a", "upstream-b", "xds-1", "xds-2"]);
    const ports = Object.values(services).flatMap((s) => s.ports ?? []);
    // host address : host port : container port, on loopback like make up
    assert.ok(ports.every((p) => p.startsWith("127.0.0.1:")), `published beyond loopback: ${ports.join(", ")}`);
    const published = ports.map((p) => p.split(":")[1]).sort();
    assert.deepEqual(published, ["10000", "4222", "5678", "5679", "8080", "9090", "9091", "9190", "9191", "9901"]);
    assert.equal(services["xds-1"]!.environment!["XDS_PORT"], "9090");
    assert.equal(services["xds-2"]!.environment!["XDS_PORT"], "9091");
    assert.equal(services["xds-2"]!.environment!["LISTENER_PORT"], "10000");
    assert.equal(services["xds-2"]!.environment!["NATS_URL"], "nats://nats:4222");
    assert.ok(services.envoy!.volumes!.some((v) => v.startsWith("./envoy/bootstrap.compose.yaml:")));
  });

  it("starts programs that the build produces and files that exist", async () => {
    const services = await compose();
    for (const [name, service] of Object.entries(services)) {
      const script = service.command?.find((part) => part.endsWith(".js") || part.includes("/bin/"));
      if (service.build) assert.ok(script && existsSync(join(REPO_ROOT, script)), `${name} runs ${script}, which the repository does not have`);
      for (const volume of service.volumes ?? []) {
        const source = volume.split(":")[0]!;
        if (source.startsWith("./")) assert.ok(existsSync(join(REPO_ROOT, source)), `${name} mounts missing ${source}`);
      }
    }
  });
});

describe("Dockerfile", () => {
  it("copies the manifest of every workspace before npm ci", async () => {
    const dockerfile = await readFile(join(REPO_ROOT, "Dockerfile"), "utf8");
    const { workspaces } = JSON.parse(await readFile(join(REPO_ROOT, "package.json"), "utf8")) as { workspaces: string[] };
    for (const workspace of workspaces) {
      assert.match(dockerfile, new RegExp(`COPY ${workspace}/package.json ${workspace}/`), `${workspace} is missing from the Dockerfile`);
    }
  });
});
