// The README's workflow, as a new user runs it: make up, the three demo targets, make down —
// the real Makefile and scripts, on free ports and a state folder of the test's own, so a stack
// a developer has running on the documented ports is left alone.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { assertPortsFree, freePort, isPortFree, REPO_ROOT, startEnvoy, waitFor } from "@envoyage/test-support";

const run = promisify(execFile);

/** A free port whose successor is free too (the stack's second replica takes the next port). */
async function freePair(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port < 65535 && (await isPortFree(port + 1))) return port;
  }
}

describe("make up, make test-add / test-switch / test-remove, make down", () => {
  let runDir: string;
  let ports: Record<string, number>;
  const env = (extra: Record<string, string>) => ({ ...process.env, ENVOYAGE_RUN_DIR: runDir, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])), ...extra });
  const make = async (target: string, extra: Record<string, string> = {}) => {
    try {
      const { stdout } = await run("make", ["--no-print-directory", target], { cwd: REPO_ROOT, env: env(extra), timeout: 180_000 });
      return stdout;
    } catch (error) {
      const { stdout, stderr } = error as { stdout?: string; stderr?: string };
      assert.fail(`make ${target} failed:\n${stdout ?? ""}${stderr ?? ""}`);
    }
  };
  /** make status, which fails (exit status 3) while any part of the stack is stopped. */
  const stoppedStatus = async (extra: Record<string, string> = {}) => {
    const failed = await run("make", ["--no-print-directory", "status"], { cwd: REPO_ROOT, env: env(extra), timeout: 30_000 }).then(
      () => assert.fail("make status succeeded with parts of the stack stopped"),
      (error: { stdout: string; stderr: string }) => error,
    );
    assert.match(failed.stderr, /process\(es\) stopped: make up starts them/);
    assert.match(failed.stderr, /Error 3/);
    return failed.stdout;
  };

  before(async () => {
    runDir = await mkdtemp(join(tmpdir(), "envoyage-make-"));
    ports = {
      NATS_PORT: await freePort(),
      API_PORT: await freePort(),
      XDS_PORT: await freePair(),
      XDS_HTTP_PORT: await freePair(),
      LISTENER_PORT: await freePort(),
      ENVOY_ADMIN_PORT: await freePort(),
      UPSTREAM_A_PORT: await freePort(),
      UPSTREAM_B_PORT: await freePort(),
    };
  });

  after(async () => {
    if (runDir) {
      await make("down").catch(() => undefined);
      await rm(runDir, { recursive: true, force: true });
    }
  });

  it("refuses make restart of a process it does not know, or with no stack running, before building anything", async () => {
    for (const [P, refusal] of [["xds-3", /restart what\? P=nats/], ["xds-1", /the stack does not run: make up/]] as const) {
      const failed = await run("make", ["--no-print-directory", "restart"], { cwd: REPO_ROOT, env: env({ P }), timeout: 30_000 }).then(
        () => assert.fail(`make restart P=${P} succeeded`),
        (error: { stdout: string; stderr: string }) => error,
      );
      assert.match(failed.stderr, refusal);
      assert.doesNotMatch(failed.stdout, /npm run build|tsc/, `P=${P}: refused before the build`);
    }
  });

  it("brings the stack up, adds, switches and removes web.example.com through Envoy, and stops everything", async () => {
    // ADS over TLS set for replicas elsewhere: the stack's Envoy speaks plaintext, so its replicas do too.
    const up = await make("up", { XDS_TLS_CERT: "/nonexistent/xds.pem", XDS_TLS_KEY: "/nonexistent/xds-key.pem" });
    assert.match(up, /\[stack\] up\. Try: make test-add ENVOYAGE_RUN_DIR=\S+ && make test-switch ENVOYAGE_RUN_DIR=\S+/, "the hint names the stack's folder");
    assert.match(up, /XDS_TLS_CERT ignored: the stack's Envoy speaks plaintext xDS/);
    assert.match(await readFile(join(runDir, "bootstrap.yaml"), "utf8"), /api_type: DELTA_GRPC # ENVOY_ADS=delta/, "delta by default");
    const status = await make("status");
    for (const name of ["nats", "api", "xds-1", "xds-2", "upstream-a", "upstream-b", "envoy"]) {
      assert.match(status, new RegExp(`^ {2}${name} +running \\(pid \\d+\\); ready$`, "m"));
    }
    await assert.rejects(make("up", { ENVOY_ADS: "sotw" }), /Envoy runs with ENVOY_ADS=delta; make down first to change it/);
    await assert.rejects(make("restart", { P: "nats-1" }), /the stack runs a single nats-server: P=nats/);
    // Another port given to make status: it still looks at the stack that runs, and says so.
    const elsewhere = await make("status", { API_PORT: String(ports["API_PORT"]! + 1) });
    assert.match(elsewhere, /API_PORT=\d+ ignored: the stack runs with API_PORT=\d+/);
    assert.match(elsewhere, /^ {2}api +running \(pid \d+\); ready$/m);

    const add = await make("test-add");
    assert.match(add, /ok: web\.example\.com answers from upstream A \([\d.]+ ms/);
    const switched = await make("test-switch");
    assert.match(switched, /ok: web\.example\.com answers from upstream B \([\d.]+ ms/);
    const removed = await make("test-remove");
    assert.match(removed, /ok: web\.example\.com answers 404 \([\d.]+ ms/);
    for (const output of [add, switched, removed]) assert.match(output, /up \d+s: not restarted since it was started/);
    assert.match(await make("test-remove"), /web was not registered: nothing to remove[^]*ok: web\.example\.com answers 404/, "a second remove checks again");

    const down = await make("down");
    assert.match(down, /\[stack\] down/);
    assert.match(await stoppedStatus(), /^ {2}envoy {7}stopped$/m);
    assert.match(await make("down", { ENVOYAGE_RUN_DIR: join(runDir, "misspelt") }), /no stack in \S+misspelt: nothing to stop/);
    const all = Object.values(ports);
    await assertPortsFree([...all, ports["XDS_PORT"]! + 1, ports["XDS_HTTP_PORT"]! + 1]);
  });

  it("runs the demo against an API that takes bearer tokens (API_TOKENS_FILE)", async () => {
    const tokens = join(runDir, "tokens");
    await writeFile(tokens, "# the demo sends the first\ndemo-token-0123456789abcdef\n");
    await make("up", { API_TOKENS_FILE: tokens });
    try {
      const refused = await fetch(`http://127.0.0.1:${ports["API_PORT"]}/v1/services`);
      assert.equal(refused.status, 401);
      // As the README says to run the demo: the setting comes from .run/settings, not the command line.
      assert.match(await make("test-add", { API_TOKENS_FILE: "" }), /ok: web\.example\.com answers from upstream A/);
      assert.match(await make("test-remove", { API_TOKENS_FILE: "" }), /ok: web\.example\.com answers 404/);
    } finally {
      await make("down", { API_TOKENS_FILE: "" });
    }
  });

  it("brings a dead Envoy back on the xDS variant the stack was started with", async () => {
    await make("up", { ENVOY_ADS: "sotw" });
    try {
      process.kill(Number(await readFile(join(runDir, "envoy.pid"), "utf8")), "SIGKILL");
      await make("up");
      assert.match(await readFile(join(runDir, "bootstrap.yaml"), "utf8"), /api_type: GRPC # ENVOY_ADS=sotw/);
      assert.match(await make("status"), /Envoy +http:\/\/127\.0\.0\.1:\d+ \(admin http:\/\/127\.0\.0\.1:\d+\), xDS sotw$/m);
    } finally {
      await make("down");
    }
  });

  it("restarts the stack's Envoy while an Envoy of the operator's own shares its listener port", async () => {
    await make("up");
    // README, "Your own Envoys": a copied bootstrap, its own node id, the stack's replicas.
    const own = await startEnvoy({ xdsPorts: [ports["XDS_PORT"]!], nodeId: "own-envoy" });
    try {
      await waitFor("the own Envoy's listener", async () => ((await own.stat("listener_manager.total_listeners_active")) >= 1 ? true : undefined));
      assert.match(await make("restart", { P: "envoy" }), /envoy stopped[^]*sharing :\d+ with Envoy pid=\d+[^]*envoy started[^]*\[stack\] up\./);
      // make up said "up." for the stack's own Envoy: its listener is bound, though the port was taken.
      const stats = await (await fetch(`http://127.0.0.1:${ports["ENVOY_ADMIN_PORT"]}/stats?filter=listener_manager.total_listeners_active`)).text();
      assert.match(stats, /total_listeners_active: 1\n/);
      await own.stop();
      assert.match(await make("test-add"), /ok: web\.example\.com/, "through the stack's Envoy alone");
    } finally {
      await own.stop();
      await make("down");
    }
  });

  it("restarts a stopped process with the settings the stack was started with, and refuses others until make down", async () => {
    await make("up", { COMMIT_STANDBY_MS: "7" });
    try {
      const pid = Number(await readFile(join(runDir, "xds-1.pid"), "utf8"));
      // As the README says to restart a process: neither setting given.
      const restart = await make("restart", { P: "xds-1", LISTENER_PORT: "", COMMIT_STANDBY_MS: "" });
      assert.match(restart, /xds-1 stopped[^]*xds-1 started[^]*\[stack\] up\./);
      assert.match(restart, /COMMIT_STANDBY_MS=7, as the stack was started \(kept in \S+\/settings until make down\)/);
      const restarted = Number(await readFile(join(runDir, "xds-1.pid"), "utf8"));
      assert.notEqual(restarted, pid);
      const environ = (await readFile(`/proc/${restarted}/environ`, "utf8")).split("\0");
      assert.ok(environ.includes(`LISTENER_PORT=${ports["LISTENER_PORT"]}`), "Envoy's listener stays where it was");
      assert.ok(environ.includes("COMMIT_STANDBY_MS=7"));
      assert.match(await make("status", { LISTENER_PORT: "" }), new RegExp(`Envoy +http://127\\.0\\.0\\.1:${ports["LISTENER_PORT"]} `));
      // The demo finds the stack's ports too, none given.
      const none = Object.fromEntries(Object.keys(ports).map((name) => [name, ""]));
      assert.match(await make("test-add", none), /ok: web\.example\.com answers from upstream A/);
      await assert.rejects(make("up", { LISTENER_PORT: String(ports["LISTENER_PORT"]! + 1) }), /the stack runs with LISTENER_PORT=\d+ \(kept in \S+\/settings\); make down first to change it/);
      await assert.rejects(make("up", { COMMIT_STANDBY_MS: "9" }), /the stack runs with COMMIT_STANDBY_MS=7 \(kept in \S+\/settings\); make down first/);
    } finally {
      await make("down");
    }
  });

  it("names every taken port with the variable that sets it, and starts nothing", async () => {
    const blockers = [ports["API_PORT"]!, ports["ENVOY_ADMIN_PORT"]!].map((port) => createServer().listen(port, "127.0.0.1"));
    await Promise.all(blockers.map((blocker) => once(blocker, "listening")));
    try {
      const failed = await run("make", ["--no-print-directory", "up"], { cwd: REPO_ROOT, env: env({ ENVOY_ADS: "sotw" }), timeout: 120_000 }).then(
        () => assert.fail("make up succeeded with the API's and Envoy's admin ports taken"),
        (error: { stderr: string }) => error,
      );
      assert.match(failed.stderr, new RegExp(`port ${ports["API_PORT"]} \\(for api, set by API_PORT\\) is already in use`));
      assert.match(failed.stderr, new RegExp(`port ${ports["ENVOY_ADMIN_PORT"]} \\(for envoy admin, set by ENVOY_ADMIN_PORT\\) is already in use`));
      assert.match(failed.stderr, /nothing was started/);
      assert.equal(existsSync(join(runDir, "nats.pid")), false, "nats-server was not started");
    } finally {
      for (const blocker of blockers) blocker.close();
    }
    try {
      // Nothing ran, so nothing was kept: another variant needs no make down.
      await make("up", { ENVOY_ADS: "delta" });
      assert.match(await readFile(join(runDir, "bootstrap.yaml"), "utf8"), /api_type: DELTA_GRPC # ENVOY_ADS=delta/);
    } finally {
      await make("down");
    }
  });

  it("checks every node's ports before starting any of a NATS cluster", async () => {
    // nats-2's client port is NATS_PORT + 1: a base whose next port is free for the test to
    // hold (the port after the stack's own NATS_PORT may be anyone's, a client's ephemeral one).
    const natsPort = await freePair();
    const taken = natsPort + 1;
    const blocker = createServer().listen(taken, "127.0.0.1");
    await once(blocker, "listening");
    try {
      const failed = await run("make", ["--no-print-directory", "up"], {
        cwd: REPO_ROOT,
        env: env({ NATS_CLUSTER: "3", NATS_PORT: String(natsPort), NATS_ROUTE_PORT: String(await freePort()) }),
        timeout: 60_000,
      }).then(
        () => assert.fail(`make up succeeded with nats-2's port ${taken} taken`),
        (error: { stderr: string }) => error,
      );
      assert.match(failed.stderr, new RegExp(`port ${taken} \\(for nats-2, set by NATS_PORT \\+ 1\\) is already in use`));
      assert.equal(existsSync(join(runDir, "nats-1.pid")), false, "nats-1 was not started alone");
    } finally {
      blocker.close();
      await make("down");
    }
  });

  it("fails at once, with the process's own message, when a process exits on a malformed setting", async () => {
    const failed = await run("make", ["--no-print-directory", "up"], { cwd: REPO_ROOT, env: env({ COMMIT_BATCH_MS: "-1" }), timeout: 60_000 }).then(
      () => assert.fail("make up succeeded with COMMIT_BATCH_MS=-1"),
      (error: { stderr: string }) => error,
    );
    try {
      assert.doesNotMatch(failed.stderr, /did not come up within/, "failed at once, not after the readiness timeout");
      assert.match(failed.stderr, /COMMIT_BATCH_MS must be an integer from 0 to 600000, got "-1"/);
      assert.match(failed.stderr, /xds-1 exited while starting; .*make down stops the rest of the stack and forgets the settings it was started with/);
    } finally {
      await make("down");
    }
  });

  it("ignores the NATS mode a crashed stack left behind", async () => {
    await writeFile(join(runDir, "nats-cluster"), "3\n");
    const status = await stoppedStatus();
    assert.match(status, /^ {2}nats {8}stopped$/m, "status reads the single-server stack, not a cluster nobody runs");
    assert.doesNotMatch(status, /nats-1/);
    assert.equal(existsSync(join(runDir, "nats-cluster")), false, "the stale file is dropped");
  });

  for (const survivor of ["nats-2", "api"]) {
    it(`keeps cluster mode while any process of the stack runs (${survivor}), nats-1 dead or every node`, async () => {
      const alive = spawn("sleep", ["60"], { stdio: "ignore" }); // stands for the survivor
      try {
        await writeFile(join(runDir, "nats-cluster"), "3\n");
        await writeFile(join(runDir, `${survivor}.pid`), `${alive.pid}\n`);
        const status = await stoppedStatus();
        assert.match(status, /^ {2}nats-1 {6}stopped$/m);
        // The stand-in answers no readiness probe: reported as hung.
        assert.match(status, new RegExp(`^ {2}${survivor} +running \\(pid ${alive.pid}\\); not answering$`, "m"));
        assert.doesNotMatch(status, /^ {2}nats {8}/m, "not read as a single-server stack");
        // Another mode asked of status is named and ignored: it looks at the stack that runs.
        assert.match(await stoppedStatus({ NATS_CLUSTER: "1" }), /^ {2}nats-1 {6}stopped$/m);
        assert.equal(existsSync(join(runDir, "nats-cluster")), true, "the mode is kept");
      } finally {
        alive.kill();
        await rm(join(runDir, `${survivor}.pid`), { force: true });
        await rm(join(runDir, "nats-cluster"), { force: true });
      }
    });
  }

  it("takes a pid the system gave to another process since for stopped, and make down leaves that process alone", async () => {
    const stranger = spawn("sleep", ["60"], { stdio: "ignore" }); // holds the pid the API once had
    try {
      await writeFile(join(runDir, "api.pid"), `${stranger.pid}\n`);
      await writeFile(join(runDir, "api.pid-start"), "1\n"); // when the API process started: long before
      assert.match(await stoppedStatus(), /^ {2}api {9}stopped$/m);
      await make("down");
      await new Promise((resolve) => setTimeout(resolve, 200)); // a signal's exit would be seen by now
      assert.equal(stranger.exitCode, null, "make down did not signal it");
      assert.equal(stranger.signalCode, null, "make down did not signal it");
    } finally {
      stranger.kill();
      await rm(join(runDir, "api.pid"), { force: true });
      await rm(join(runDir, "api.pid-start"), { force: true });
    }
  });
});
