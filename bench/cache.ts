/**
 * `npm run bench -- --cache`: what the response cache saves and what it costs.
 *
 * One gateway on core 0 whose registry has the bench model twice: `bench` (no cache) and `bench-cached`
 * (`cache: { ttl_s: 3600 }`, memory store, default bounds), both on the same fast local upstream. At c=50,
 * non-stream and stream(20), interleaved repeat by repeat:
 * - off: `bench`, every request body different (autocannon's idReplacement) — the upstream round trip through the
 *   gateway, the baseline;
 * - miss: `bench-cached`, every body different — the cache enabled, every request a miss (key, lookup, then the
 *   answer stored; the LRU churning at its 10 000 entries). Target: ≥ 95 % of off's req/s;
 * - hit: `bench-cached`, one body — every request answered from the cache. Target: ≥ 3× off's req/s (and a third
 *   of its median latency).
 *
 * Each measured run follows a short unmeasured one of its own scenario, and off and miss swap places every repeat:
 * the first run after the hits' allocation-heavy load paid for its collections (~30 µs a request), which read as a
 * cost of whichever scenario came first.
 */
import { request as httpRequest } from "node:http"
import type { Loader } from "./loader.js"
import { failures, loadGateway } from "./measure.js"
import type { RunSample } from "./measure.js"
import type { Options } from "./options.js"
import { median } from "./stats.js"
import { proxyKey, startProxy } from "./targets.js"
import type { Upstream } from "./targets.js"

const connections = 50

export type CacheScenarioName = "off-ns" | "miss-ns" | "hit-ns" | "off-stream" | "miss-stream" | "hit-stream"

interface Scenario {
  readonly name: CacheScenarioName
  readonly model: "bench" | "bench-cached"
  readonly unique: boolean
  readonly stream: boolean
}

const scenarios: ReadonlyArray<Scenario> = [
  { name: "off-ns", model: "bench", unique: true, stream: false },
  { name: "miss-ns", model: "bench-cached", unique: true, stream: false },
  { name: "hit-ns", model: "bench-cached", unique: false, stream: false },
  { name: "off-stream", model: "bench", unique: true, stream: true },
  { name: "miss-stream", model: "bench-cached", unique: true, stream: true },
  { name: "hit-stream", model: "bench-cached", unique: false, stream: true }
]

/** Seconds of unmeasured load before each measured run. */
const settleS = 1

/** The scenarios of one repeat: off before miss on odd repeats, after it on even ones. */
const orderOf = (repeat: number): ReadonlyArray<Scenario> => {
  if (repeat % 2 === 1) return scenarios
  const swapped: Array<Scenario> = []
  for (let index = 0; index < scenarios.length; index += 3) swapped.push(scenarios[index + 1]!, scenarios[index]!, scenarios[index + 2]!)
  return swapped
}

export interface CacheReport {
  readonly runs: Record<CacheScenarioName, Array<RunSample>>
  readonly checks: Array<string>
  readonly errors: Array<string>
}

/** The body of a scenario: the bench's tiny request, made unique per request with `[<id>]` when asked. */
const bodyOf = (scenario: Scenario): string =>
  JSON.stringify({
    model: scenario.model,
    messages: [{ role: "user", content: scenario.unique ? "Say hello. [<id>]" : "Say hello." }],
    stream: scenario.stream,
    max_tokens: 32
  })

/** One request; its status and the cache header. */
const probe = (url: string, body: string): Promise<{ readonly status: number; readonly cache: string | undefined }> =>
  new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      url,
      { method: "POST", headers: { authorization: `Bearer ${proxyKey}`, "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) } },
      (response) => {
        response.resume()
        response.on("end", () => {
          const cache = response.headers["x-llm-proxy-cache"]
          resolve({ status: response.statusCode ?? 0, cache: typeof cache === "string" ? cache : undefined })
        })
      }
    )
    outgoing.on("error", reject)
    outgoing.end(body)
  })

export const runCache = async (backend: Upstream, loader: Loader, work: string, options: Options): Promise<CacheReport> => {
  const report: CacheReport = {
    runs: { "off-ns": [], "miss-ns": [], "hit-ns": [], "off-stream": [], "miss-stream": [], "hit-stream": [] },
    checks: [],
    errors: []
  }
  console.log("\n== cache: bench (no cache) and bench-cached (memory, ttl 3600 s) on one gateway; unique bodies for off and miss")
  const proxy = await startProxy(backend, work, [], "proxy-cache", {
    registryLines: ["  - name: bench-cached", "    provider: openai", `    base_url: ${backend.origin}/v1`, "    cache: { ttl_s: 3600 }"]
  })
  const url = `${proxy.origin}/v1/chat/completions`
  const measure = async (scenario: Scenario, durationS: number): Promise<RunSample> => {
    return loadGateway(loader, proxy.pid, {
      url,
      headers: { authorization: `Bearer ${proxyKey}` },
      body: bodyOf(scenario),
      connections,
      durationS,
      expectSseDone: scenario.stream,
      uniqueBodies: scenario.unique
    })
  }
  try {
    for (const stream of [false, true]) {
      const fixed = bodyOf({ name: "hit-ns", model: "bench-cached", unique: false, stream })
      const first = await probe(url, fixed)
      const second = await probe(url, fixed)
      const unique = await probe(url, fixed.replace("Say hello.", `Say hello. ${Math.random()}`))
      if (first.status !== 200 || second.cache !== "hit" || unique.cache !== "miss") {
        throw new Error(`the cache does not answer as expected (${stream ? "stream" : "json"}: ${first.status} ${String(first.cache)}, then ${String(second.cache)}, unique ${String(unique.cache)})`)
      }
      report.checks.push(`${stream ? "stream" : "json"}: a repeated body is a hit, a new one a miss`)
    }
    process.stdout.write(`  warm-up ${options.warmupS} s per scenario…`)
    for (const scenario of scenarios) await measure(scenario, options.warmupS)
    process.stdout.write(" done\n")
    for (let repeat = 1; repeat <= options.repeats; repeat++) {
      for (const scenario of orderOf(repeat)) {
        await measure(scenario, settleS)
        const sample = await measure(scenario, options.durationS)
        report.runs[scenario.name].push(sample)
        console.log(
          `  [${repeat}/${options.repeats}] cache ${scenario.name.padEnd(11)} ${fixed(sample.reqPerSec, 0).padStart(6)} req/s  p50 ${fixed(sample.latencyMs.p50, 2)} ms  p99 ${fixed(sample.latencyMs.p99, 2)} ms  failures ${failures(sample)}, ${fixed(sample.cpuUsPerRequest, 0)} µs CPU/req  [steal ${fixed(sample.stealPercent, 0)}%]`
        )
        if (sample.ok === 0) report.errors.push(`${scenario.name}: no request succeeded`)
        if (failures(sample) > 0) report.errors.push(`${scenario.name}: ${failures(sample)} failed requests`)
      }
    }
  } catch (error) {
    report.errors.push(error instanceof Error ? error.message : String(error))
  } finally {
    await proxy.stop()
  }
  return report
}

/** A figure, or "—" for NaN (and the null JSON makes of it over IPC). */
const fixed = (value: number | null | undefined, digits: number) => (typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—")

/** The table of `--cache`: medians per scenario, the hit's speed-up and the miss's cost against the cache off. */
export const cacheTable = (report: CacheReport): string => {
  const reqPerSec = (name: CacheScenarioName) => median(report.runs[name].map((sample) => sample.reqPerSec))
  const p50 = (name: CacheScenarioName) => median(report.runs[name].map((sample) => sample.latencyMs.p50))
  const cpu = (name: CacheScenarioName) => median(report.runs[name].map((sample) => sample.cpuUsPerRequest ?? Number.NaN))
  const rows = (["ns", "stream"] as const).map((kind) => {
    const off = reqPerSec(`off-${kind}`)
    const miss = reqPerSec(`miss-${kind}`)
    const hit = reqPerSec(`hit-${kind}`)
    const label = kind === "ns" ? "non-stream c=50" : "stream(20) c=50"
    return `| ${label} | ${fixed(off, 0)} | ${fixed(miss, 0)} (${fixed((100 * miss) / off, 1)} %) | ${fixed(hit, 0)} (${fixed(hit / off, 2)}×) | ${fixed(p50(`off-${kind}`), 2)} / ${fixed(p50(`miss-${kind}`), 2)} / ${fixed(p50(`hit-${kind}`), 2)} | ${fixed(cpu(`off-${kind}`), 0)} / ${fixed(cpu(`miss-${kind}`), 0)} / ${fixed(cpu(`hit-${kind}`), 0)} |`
  })
  return [
    "| scenario | off req/s | miss req/s (÷ off) | hit req/s (× off) | p50 ms off / miss / hit | gateway µs/req off / miss / hit |",
    "|---|---|---|---|---|---|",
    ...rows,
    "",
    "targets: hit ≥ 3× off; miss ≥ 95 % of off"
  ].join("\n")
}
