/**
 * `npm run bench -- --tracing`: what OpenTelemetry tracing costs the proxy.
 *
 * Two gateways on core 0, the same registry: one with tracing off (no OTEL_* variable: the default), one with
 * tracing on at sampler ratio 1.0 (`always_on`: every request's server span and upstream client span recorded and
 * exported over the default http/protobuf) to a local OTLP/HTTP receiver in this process, which answers 200 and
 * counts what it receives.
 * Non-stream and stream(20), c=50, the two gateways' runs interleaved repeat by repeat, so that a machine whose speed
 * drifts moves both alike. Reported: req/s and gateway CPU per request for each, and the cost of tracing on (its
 * CPU per request minus off's). Tracing off against the keyless proxy of the main table is the "within noise" check.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import type { Loader } from "./loader.js"
import { failures, loadGateway } from "./measure.js"
import type { RunSample } from "./measure.js"
import type { Options } from "./options.js"
import { chatBody } from "./payloads.js"
import { median } from "./stats.js"
import { proxyKey, startProxy } from "./targets.js"
import type { Upstream } from "./targets.js"

const connections = 50

export type TracingScenarioName = "off-ns" | "on-ns" | "off-stream" | "on-stream"

interface Scenario {
  readonly name: TracingScenarioName
  readonly tracing: boolean
  readonly stream: boolean
}

const scenarios: ReadonlyArray<Scenario> = [
  { name: "off-ns", tracing: false, stream: false },
  { name: "on-ns", tracing: true, stream: false },
  { name: "off-stream", tracing: false, stream: true },
  { name: "on-stream", tracing: true, stream: true }
]

export interface TracingReport {
  readonly runs: Record<TracingScenarioName, Array<RunSample>>
  /** What the receiver got from the traced gateway over the whole bench: export requests and their bytes. */
  readonly receiver: { readonly exports: number; readonly bytes: number }
  readonly errors: Array<string>
}

/** A local OTLP/HTTP traces receiver: answers every export 200 with an empty JSON body, counting what it got. */
const startReceiver = () =>
  new Promise<{ readonly url: string; readonly counts: { exports: number; bytes: number }; readonly close: () => Promise<void> }>((resolve, reject) => {
    const counts = { exports: 0, bytes: 0 }
    const server = createServer((request, response) => {
      request.on("data", (part: Buffer) => {
        counts.bytes += part.length
      })
      request.on("end", () => {
        counts.exports++
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}/v1/traces`,
        counts,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections()
            server.close(() => done())
          })
      })
    })
  })

export const runTracing = async (backend: Upstream, loader: Loader, work: string, options: Options): Promise<TracingReport> => {
  const report: TracingReport = {
    runs: { "off-ns": [], "on-ns": [], "off-stream": [], "on-stream": [] },
    receiver: { exports: 0, bytes: 0 },
    errors: []
  }
  const inherited = Object.keys(process.env).filter((name) => name.startsWith("OTEL_"))
  if (inherited.length > 0) throw new Error(`--tracing measures tracing off as the default: unset ${inherited.join(", ")} first`)
  console.log("\n== tracing: off (the default) and on (always_on, OTLP/HTTP protobuf — the default protocol — to a local receiver), interleaved")
  const receiver = await startReceiver()
  const off = await startProxy(backend, work, [], "proxy-tracing-off", { env: {} })
  const on = await startProxy(backend, work, [], "proxy-tracing-on", {
    env: {
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.url,
      OTEL_TRACES_SAMPLER: "always_on",
      OTEL_SERVICE_NAME: "llm-proxy-bench"
    }
  })
  const measure = async (scenario: Scenario, durationS: number): Promise<RunSample> => {
    const gateway = scenario.tracing ? on : off
    return loadGateway(loader, gateway.pid, {
      url: `${gateway.origin}/v1/chat/completions`,
      headers: { authorization: `Bearer ${proxyKey}` },
      body: chatBody("bench", scenario.stream),
      connections,
      durationS,
      expectSseDone: scenario.stream
    })
  }
  try {
    process.stdout.write(`  warm-up ${options.warmupS} s per scenario…`)
    for (const scenario of scenarios) await measure(scenario, options.warmupS)
    process.stdout.write(" done\n")
    for (let repeat = 1; repeat <= options.repeats; repeat++) {
      for (const scenario of scenarios) {
        const sample = await measure(scenario, options.durationS)
        report.runs[scenario.name].push(sample)
        console.log(
          `  [${repeat}/${options.repeats}] tracing ${scenario.name.padEnd(10)} ${sample.reqPerSec.toFixed(0).padStart(6)} req/s  p99 ${sample.latencyMs.p99.toFixed(2)} ms  failures ${failures(sample)}, ${sample.cpuUsPerRequest?.toFixed(0) ?? "—"} µs CPU/req  [steal ${sample.stealPercent?.toFixed(0) ?? "?"}%]`
        )
      }
    }
    if (receiver.counts.exports === 0) report.errors.push("the traced gateway exported nothing: tracing was not on")
  } catch (error) {
    report.errors.push(error instanceof Error ? error.message : String(error))
  } finally {
    await off.stop()
    await on.stop()
    await receiver.close()
  }
  Object.assign(report.receiver, receiver.counts)
  return report
}

/** The second table of `--tracing`: medians of each scenario and the cost of tracing on. */
export const tracingTable = (report: TracingReport): string => {
  const reqPerSec = (name: TracingScenarioName) => median(report.runs[name].map((sample) => sample.reqPerSec))
  const cpu = (name: TracingScenarioName) => median(report.runs[name].map((sample) => sample.cpuUsPerRequest ?? Number.NaN))
  const rows = (["ns", "stream"] as const).map((kind) => {
    const offRate = reqPerSec(`off-${kind}`)
    const onRate = reqPerSec(`on-${kind}`)
    const offCpu = cpu(`off-${kind}`)
    const onCpu = cpu(`on-${kind}`)
    const label = kind === "ns" ? "non-stream c=50" : "stream(20) c=50"
    return `| ${label.padEnd(16)} | ${offRate.toFixed(0).padStart(9)} | ${onRate.toFixed(0).padStart(8)} | ${((100 * onRate) / offRate).toFixed(0).padStart(4)} % | ${offCpu.toFixed(0).padStart(10)} | ${onCpu.toFixed(0).padStart(9)} | ${(onCpu - offCpu).toFixed(0).padStart(13)} |`
  })
  return [
    "| scenario         | off req/s | on req/s | on÷off | off µs/req | on µs/req | tracing µs/req |",
    "|------------------|-----------|----------|--------|------------|-----------|----------------|",
    ...rows,
    "",
    `receiver: ${report.receiver.exports} OTLP export requests, ${(report.receiver.bytes / 1e6).toFixed(1)} MB`
  ].join("\n")
}
