// How soon V8 compiles a function, tuned for a long-running service once it has started.
//
// Envoyage's path for a change runs once per change: an API PUT's handling, a replica's apply,
// translate and push. With V8's default thresholds (400 calls before Maglev compiles a function)
// changes minutes apart run that path interpreted for ever, however long the process lives.
// Lowered, it is compiled after 20 changes. Measured with packet captures, changes 60 ms apart,
// A/B in alternation on the bench machine: Envoyage's ADS server fed directly went from a change
// arriving to the push leaving in 1.03–1.12 ms at p50 instead of 1.72–1.74; in the stack, the
// serving replica's hop from NATS message to push fell by 0.3–0.7 ms and the whole KV put → Envoy
// path by 0.8–2 ms at p50 once past the first 200 changes. Lowering TurboFan's threshold too
// gained nothing clear and worsened p90 (compilations on 2 cores). Lowered only once started:
// from the command line, loading 10,000 services took a replica ~250 ms longer to get ready
// (more of the code that runs only at startup compiled). The cost: ~9 MiB more RSS in a replica
// with 1,000 Envoys connected (more of their code compiled; bench/RESULTS.md, fan-out).
import { setFlagsFromString } from "node:v8";

export function compileHotPathsSooner(): void {
  setFlagsFromString("--invocation-count-for-maglev=20");
  setFlagsFromString("--minimum-invocations-after-ic-update=20");
}
