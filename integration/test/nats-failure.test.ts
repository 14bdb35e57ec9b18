// NATS failures during a stream of acknowledged writes and under traffic through a real Envoy:
// a single nats-server SIGKILLed and restarted, and the stream leader of a 3-node JetStream
// cluster SIGKILLed. Envoy keeps routing, the API answers 503 fast while it cannot write, the
// replicas resume by themselves, and not one write the API acknowledged is lost.
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import { connect } from "@nats-io/transport-node";
import { encodeRecord, openBucket } from "@envoyage/registry";
import {
  AdsClient,
  freePort,
  record,
  replicaStatus,
  sleep,
  startApi,
  startLoad,
  startNatsCluster,
  startStackServingWeb,
  startXds,
  upstreamGreeting,
  waitFor,
  type NatsCluster,
  type Stack,
  type XdsProcess,
} from "@envoyage/test-support";

const WEB = "web.example.com";

interface WriteLog {
  /** Services whose PUT was acknowledged (2xx), with the acknowledged revision. */
  acked: Map<string, number>;
  /** 503 answers, and the slowest of them. */
  unavailable: number;
  slowest503Ms: number;
  /** Anything else: other statuses or transport errors. */
  other: string[];
  /** Time of the first acknowledged write sent after `since` (see startWriter). */
  firstAckAfter(since: number): number | undefined;
}

/** Runs `step` over and over until the returned stop() or the test's end. */
function repeat(t: TestContext, step: () => Promise<void>): () => Promise<void> {
  let running = true;
  const loop = (async () => {
    while (running) await step();
  })();
  const stop = async () => {
    running = false;
    await loop;
  };
  t.after(stop);
  return stop;
}

/** Creates services `<prefix>-<n>` one after the other, as fast as the API answers, until stop() or the test's end. */
function startWriter(t: TestContext, stack: Stack, prefix: string): { log: WriteLog; stop(): Promise<WriteLog> } {
  const acks: { name: string; revision: number; sentAt: number }[] = [];
  const log: WriteLog = {
    acked: new Map(),
    unavailable: 0,
    slowest503Ms: 0,
    other: [],
    firstAckAfter: (since) => acks.find((a) => a.sentAt >= since)?.sentAt,
  };
  let n = 0;
  const stop = repeat(t, async () => {
    const name = `${prefix}-${n++}`;
    const sentAt = performance.now();
    try {
      const response = await stack.call("PUT", `/v1/services/${name}`, record(stack.upstreams.A, [`${name}.example.com`]));
      if (response.status === 201) {
        log.acked.set(name, response.body.revision);
        acks.push({ name, revision: response.body.revision, sentAt });
      } else if (response.status === 503) {
        log.unavailable++;
        log.slowest503Ms = Math.max(log.slowest503Ms, performance.now() - sentAt);
        await sleep(20);
      } else {
        log.other.push(`${name}: ${response.status} ${JSON.stringify(response.body)}`);
      }
    } catch (error) {
      log.other.push(`${name}: ${(error as Error).message}`);
      await sleep(20);
    }
  });
  return { log, stop: () => stop().then(() => log) };
}

/** Reads GET /v1/envoys every 100 ms until stop() or the test's end; what each read answered. */
function startStatusReader(t: TestContext, stack: Stack): { stop(): Promise<string[]> } {
  const answers: string[] = [];
  const stop = repeat(t, async () => {
    const { status, body } = await stack.call("GET", "/v1/envoys");
    answers.push(status === 200 ? "200" : `${status} ${JSON.stringify(body)}`);
    await sleep(100);
  });
  return { stop: () => stop().then(() => answers) };
}

/** Every acknowledged write is in the bucket (eventually, for reads served by a follower). */
async function assertNoAckedWriteLost(stack: Stack, log: WriteLog): Promise<void> {
  await waitFor("every acknowledged write to be readable", async () => {
    const listed = new Map<string, number>(
      ((await stack.call("GET", "/v1/services")).body?.services ?? []).map((s: { name: string; revision: number }) => [s.name, s.revision]),
    );
    const missing = [...log.acked.keys()].filter((name) => !listed.has(name));
    return missing.length === 0 ? true : undefined;
  }, { timeoutMs: 10_000, intervalMs: 200 });
}

function report(t: TestContext, log: WriteLog, load: { requests: number; non2xx: number; errors: number }, extra = ""): void {
  t.diagnostic(
    `writes: ${log.acked.size} acknowledged, 0 lost, ${log.unavailable} answered 503 (slowest ${log.slowest503Ms.toFixed(0)} ms); ` +
      `traffic: ${load.requests} requests, ${load.non2xx + load.errors} failed${extra}`,
  );
}

describe("NATS outage (one server, file storage, SIGKILL)", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStackServingWeb();
  });
  after(async () => {
    await stack?.stop();
  });

  it("keeps Envoy routing, answers 503 fast, resumes by itself and loses no acknowledged write", async (t) => {
    const load = startLoad(t, { port: stack.listenerPort, host: WEB });
    const writer = startWriter(t, stack, "w");
    await sleep(1000);
    await stack.nats!.kill();
    const killedAt = performance.now();
    await waitFor("the API to report NATS down", async () => ((await stack.call("GET", "/readyz")).status === 503 ? true : undefined));
    await sleep(2000); // the outage: Envoy must keep routing on the replicas' last snapshot
    for (const replica of stack.replicas) assert.ok(replica.process.running, "replicas survive the outage");

    await stack.nats!.restart();
    const restartedAt = performance.now();
    await waitFor("writes to succeed again", () => (writer.log.firstAckAfter(restartedAt) !== undefined ? true : undefined), {
      timeoutMs: 15_000,
      intervalMs: 50,
    });
    const log = await writer.stop();

    // The watches resumed by themselves: a later change reaches Envoy.
    const changedAt = performance.now();
    assert.equal((await stack.call("PUT", "/v1/services/web", record(stack.upstreams.B))).status, 200);
    await stack.until(WEB, upstreamGreeting("B"));
    const changeMs = performance.now() - changedAt;
    const result = await load.stop();

    assert.ok(log.unavailable > 0, "writes were refused while NATS was down");
    assert.ok(log.slowest503Ms < 1000, `a 503 took ${log.slowest503Ms} ms`);
    assert.deepEqual(log.other, []);
    assert.equal(result.non2xx + result.errors + result.timeouts, 0, `failed requests: ${JSON.stringify(result.failedByStatus)}`);
    await assertNoAckedWriteLost(stack, log);
    report(t, log, result, `; outage ${(restartedAt - killedAt).toFixed(0)} ms; first change after it reached Envoy in ${changeMs.toFixed(1)} ms`);
  });

  it("brings sync status back: the status bucket, lost with the server's memory, is created again", async () => {
    const envoy = await waitFor("the Envoy to be reported SYNCED again", async () => {
      const { body } = await stack.call("GET", "/v1/envoys");
      return body?.envoys?.length === 1 && body.envoys[0].status === "SYNCED" ? body.envoys[0] : undefined;
    }, { timeoutMs: 15_000, intervalMs: 200 });
    assert.equal(envoy.connected, true);
    const warnings = stack.api.process.output().split("\n").filter((line) => line.includes("bucket watch failed")).length;
    assert.ok(warnings <= 2, `the API warned ${warnings} times that a bucket watch failed: once per watch and outage is enough`);
  });

  it("serves what a registry bucket deleted and created again holds, and nothing of the old one", async () => {
    await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A));
    await stack.until(WEB, upstreamGreeting("A"));
    await stack.natsCli("kv", "rm", "--force", "envoyage");
    // The API creates the bucket again; the replicas start over from it: web is gone.
    await stack.until(WEB, 404, 15_000);
    const put = await waitFor("the API to write to the new bucket", async () => {
      const response = await stack.call("PUT", "/v1/services/web", record(stack.upstreams.B));
      return response.status === 201 ? response : undefined;
    }, { timeoutMs: 10_000, intervalMs: 200 });
    assert.equal(put.body.revision < 10, true, `revisions start over in the new bucket (got ${put.body.revision})`);
    await stack.until(WEB, upstreamGreeting("B"));
    for (const replica of stack.replicas) {
      // Each replica says so; the one Envoy is not connected to may say it a little later.
      await waitFor("the replica to report the new bucket", () => (/the bucket is a new one \(deleted and created again/.test(replica.process.output()) ? true : undefined));
    }
  });

  it("drops what a purge of the bucket's stream removed, on every replica and in the API", async () => {
    assert.equal((await stack.call("PUT", "/v1/services/web", record(stack.upstreams.A))).status, 200);
    await stack.until(WEB, upstreamGreeting("A"));
    // A purge leaves no delete marker: no watch hears of it (before, the replicas and the API
    // went on serving and listing web, and a replica started afresh served nothing).
    // (The nats CLI asks for a terminal to purge a bucket's stream: JetStream's API, as it sends it.)
    const nc = await connect({ servers: stack.natsUrl.split(",") });
    let lastSeq: number;
    try {
      const answer = JSON.parse(new TextDecoder().decode((await nc.request("$JS.API.STREAM.PURGE.KV_envoyage", "{}")).data)) as { success?: boolean };
      assert.equal(answer.success, true, JSON.stringify(answer));
      const info = JSON.parse(new TextDecoder().decode((await nc.request("$JS.API.STREAM.INFO.KV_envoyage", "")).data)) as { state: { last_seq: number } };
      lastSeq = info.state.last_seq;
    } finally {
      await nc.close();
    }
    await stack.until(WEB, 404, 15_000);
    await waitFor("the API to list no service", async () => ((await stack.call("GET", "/v1/services")).body?.services?.length === 0 ? true : undefined));
    for (const replica of stack.replicas) {
      await waitFor("the replica to report the purge", () => (/its stream was purged\); starting over/.test(replica.process.output()) ? true : undefined));
    }
    // The empty bucket is as of the stream's last sequence, which is the API's revision: the
    // replicas' snapshots reflect it, and the Envoy holding one is synced.
    for (const replica of stack.replicas) {
      await waitFor("the replica to reflect the purged bucket's last sequence", async () => ((await replicaStatus<{ revision: number }>(replica)).revision === lastSeq ? true : undefined));
    }
    await waitFor("the Envoy to be reported SYNCED with the purged bucket", async () => {
      const list = (await stack.call("GET", "/v1/envoys")).body as { envoys: { status: string }[] };
      const connected = list.envoys.filter((envoy) => envoy.status !== "DISCONNECTED");
      return connected.length === 1 && connected[0]!.status === "SYNCED" ? true : undefined;
    });
  });
});

describe("clustered NATS (3 nodes, bucket on 3 replicas): the stream leader dies", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStackServingWeb({ natsCluster: 3 });
  });
  after(async () => {
    await stack?.stop();
  });

  it("loses no acknowledged write, and the change stream reaches Envoy again", async (t) => {
    const load = startLoad(t, { port: stack.listenerPort, host: WEB });
    const writer = startWriter(t, stack, "c");
    await sleep(1000);
    const leader = await stack.cluster!.leaderOf("KV_envoyage");
    const statusReader = startStatusReader(t, stack); // sync status is read all through the election
    await leader.kill();
    const killedAt = performance.now();

    // A change made right after the kill: retried until the cluster takes it, then followed to Envoy.
    let accepted: number | undefined;
    for (let attempt = 0; accepted === undefined; attempt++) {
      const response = await stack.call("PUT", "/v1/services/web", record(stack.upstreams.B));
      if (response.status === 200) accepted = performance.now();
      else await sleep(50);
      assert.ok(attempt < 600, "the cluster never took a write after losing its leader");
    }
    await stack.until(WEB, upstreamGreeting("B"), 30_000);
    const convergedMs = performance.now() - killedAt;
    const statusAnswers = await statusReader.stop();
    // The API's own connection may have been on the node that died: refused until it reconnects, milliseconds.
    const failedStatus = statusAnswers.filter((answer) => answer !== "200" && !answer.includes("disconnected from NATS"));
    assert.deepEqual(failedStatus, [], `GET /v1/envoys during the election (${statusAnswers.length} reads)`);
    await sleep(500);
    const log = await writer.stop();
    const result = await load.stop();
    const newLeader = await stack.cluster!.leaderOf("KV_envoyage");

    assert.notEqual(newLeader.name, leader.name);
    assert.deepEqual(log.other, []);
    assert.equal(result.non2xx + result.errors + result.timeouts, 0, `failed requests: ${JSON.stringify(result.failedByStatus)}`);
    await assertNoAckedWriteLost(stack, log);
    report(
      t,
      log,
      result,
      `; leader ${leader.name} → ${newLeader.name}; first write accepted ${(accepted - killedAt).toFixed(0)} ms after the kill, ` +
        `the change through Envoy ${convergedMs.toFixed(0)} ms after it`,
    );
  });
});

describe("clustered NATS: the node a replica is connected to dies, not the stream leader", () => {
  let cluster: NatsCluster;
  let replica: XdsProcess | undefined;
  let ads: AdsClient | undefined;
  after(async () => {
    ads?.close();
    await replica?.stop();
    await cluster?.stop();
  });

  it("keeps the replica's watch, whose consumer lives on another node, instead of setting up a new one", async () => {
    cluster = await startNatsCluster(3);
    const setup = await connect({ servers: cluster.urls.split(",") });
    await openBucket(setup, { bucket: "envoyage", create: true, replicas: 3, timeoutMs: 5000 });
    await setup.close();
    const streamLeader = await cluster.leaderOf("KV_envoyage");
    const doomed = cluster.nodes.find((node) => node !== streamLeader)!;
    const writer = await connect({ servers: [streamLeader.url] }); // unaffected by the node that dies
    const kv = await openBucket(writer, { bucket: "envoyage", create: false, timeoutMs: 5000 });
    const web = (port: number) => encodeRecord({ domains: ["web.example.com"], endpoints: [{ address: "127.0.0.1", port }] });
    const portOf = (c: AdsClient) => c.endpoints("web")?.endpoints[0]?.lbEndpoints[0]?.endpoint?.address?.socketAddress?.portValue;
    await kv.put("services.web", web(1001));
    // Given only the doomed node, the replica connects to it; it learns the others from it.
    replica = await startXds({ natsUrl: doomed.url, listenerPort: await freePort() });
    await replica.ready(20_000);
    ads = new AdsClient({ port: replica.xdsPort, nodeId: "node-death" });
    await ads.waitUntil("web", (c) => portOf(c) === 1001, 10_000);

    const before = replica.process.output().length;
    await doomed.kill();
    await waitFor("the replica to reconnect to another node", () => (/reconnected to NATS/.test(replica!.process.output().slice(before)) ? true : undefined));
    for (let port = 1002; port <= 1005; port++) {
      await kv.put("services.web", web(port));
      await ads.waitUntil(`the change to port ${port}`, (c) => portOf(c) === port, 15_000);
    }
    const lines = replica.process.output().slice(before).split("\n").filter((line) => line.includes('"bucket":"envoyage"'));
    const firstAttempt = lines.findIndex((line) => /watching the bucket|bucket watch failed/.test(line));
    const firstStall = lines.findIndex((line) => line.includes("the bucket watch stalled"));
    // The consumer may have lived on the node that died: then the watch stalls, and only then is a new one set up.
    assert.ok(firstAttempt === -1 || (firstStall !== -1 && firstStall < firstAttempt), `a new watch without a stall:\n${lines.join("\n")}`);
    await writer.close();
  });
});

describe("NATS never reached", () => {
  it("the API and a replica still stop on SIGTERM, within their deadline", async () => {
    const natsUrl = `nats://127.0.0.1:${await freePort()}`; // nothing listens there
    const env = { SHUTDOWN_GRACE_MS: "500", NATS_TIMEOUT_MS: "500" };
    const api = await startApi({ natsUrl, env, until: "listening" });
    const replica = await startXds({ natsUrl, listenerPort: await freePort(), env });
    await sleep(1000); // both keep trying to connect; the replica's status publisher waits on that
    for (const [name, process] of [["api", api.process], ["replica", replica.process]] as const) {
      const started = performance.now();
      const exit = await process.stop("SIGTERM", 5_000);
      const ms = performance.now() - started;
      assert.equal(exit.signal, null, `${name} had to be killed after ${ms.toFixed(0)} ms:\n${process.output()}`);
      assert.equal(exit.code, 0, `${name} did not finish its shutdown (its deadline ended it):\n${process.output()}`);
      assert.ok(ms < 2_000, `${name} took ${ms.toFixed(0)} ms to stop`);
    }
  });
});
