/**
 * The measurements of one target: a sanity check, a warm-up, every load scenario `repeats` times (with the
 * gateway's CPU, RSS and the CPU of everything else on the machine), the time-to-first-token probe and the
 * ~100k-token request.
 */
import type { Loader } from "./loader.js"
import type { Options } from "./options.js"
import { chatBody } from "./payloads.js"
import { cpuSecondsOf, cpuSecondsOrZero, machineCpu, memoryOf, ownCpuSeconds } from "./proc.js"
import type { LoadJob, LoadResult, ProbeResult, SequentialResult } from "./protocol.js"
import { ttftChunks, ttftDelayMs } from "./targets.js"
import type { RunningTarget, TargetName } from "./targets.js"

export type ScenarioName = "ns-c1" | "ns-c50" | "ns-c200" | "stream-c50"

const scenarios: ReadonlyArray<{ readonly name: ScenarioName; readonly stream: boolean; readonly connections: number }> = [
  { name: "ns-c1", stream: false, connections: 1 },
  { name: "ns-c50", stream: false, connections: 50 },
  { name: "ns-c200", stream: false, connections: 200 },
  { name: "stream-c50", stream: true, connections: 50 }
]

export interface RunSample extends LoadResult {
  /** Gateway CPU per completed request, µs (ns-c50 only). */
  readonly cpuUsPerRequest?: number
  /** CPU used on the load core (load generator + upstream) as a share of one core, % (ns-c50 only). */
  readonly loadCorePercent?: number
  /** Highest sampled RSS of the gateway during the run, MB (ns-c200 only). */
  readonly peakRssMb?: number
  /** CPU used by processes other than the benchmark's own during the run, % of one core. */
  readonly otherCpuPercent?: number
  /** CPU stolen by the hypervisor during the run, % of one core. */
  readonly stealPercent?: number
}

export interface TargetReport {
  readonly name: TargetName
  readonly label: string
  readonly runs: Record<ScenarioName, Array<RunSample>>
  probe?: ProbeResult
  tiny?: SequentialResult
  large?: SequentialResult
  rssHighWaterMb?: number
  error?: string
}

/** Failed requests of a run: connection errors (timeouts included), non-2xx, broken streams. */
export const failures = (run: LoadResult) => run.errors + run.non2xx + run.mismatches

/**
 * One load run against a gateway process: the load generator's result, with the gateway's CPU per completed request
 * and the hypervisor's steal during the run. What the side tables (tracing, cache, messages, --against) measure.
 */
export const loadGateway = async (loader: Loader, pid: number, job: Omit<LoadJob, "kind">): Promise<RunSample> => {
  const before = cpuSecondsOrZero(pid)
  const machineBefore = machineCpu()
  const result = await loader.load(job)
  const cpu = cpuSecondsOrZero(pid) - before
  const machineAfter = machineCpu()
  const completed = result.ok + result.non2xx + result.mismatches
  return {
    ...result,
    cpuUsPerRequest: completed > 0 ? (cpu * 1e6) / completed : Number.NaN,
    ...(machineBefore !== undefined && machineAfter !== undefined
      ? { stealPercent: (100 * (machineAfter.stealS - machineBefore.stealS)) / result.durationS }
      : {})
  }
}

export const measureTarget = async (target: RunningTarget, loader: Loader, options: Options, largeBody: (model: string) => string): Promise<TargetReport> => {
  const report: TargetReport = {
    name: target.name,
    label: target.label,
    runs: { "ns-c1": [], "ns-c50": [], "ns-c200": [], "stream-c50": [] }
  }
  const fast = target.endpoint("fast")
  const job = (stream: boolean, connections: number, durationS: number) => ({
    url: fast.url,
    headers: fast.headers,
    body: chatBody(fast.model, stream),
    connections,
    durationS,
    expectSseDone: stream
  })

  // Sanity check before loading: one request of each kind must succeed.
  const check = await loader.sequential({ ...job(false, 1, 1), count: 1, warmup: 0 })
  const streamCheck = await loader.probe({ ...job(true, 1, 1), count: 1, warmup: 0 })
  if (check.errors > 0 || streamCheck.errors > 0) {
    throw new Error(
      `${target.label} does not answer the benchmark requests (non-stream: ${JSON.stringify(check.statuses)}, stream: ${JSON.stringify(streamCheck.statuses)})`
    )
  }

  process.stdout.write(`  warm-up ${options.warmupS} s…`)
  await loader.load(job(false, 50, options.warmupS))
  await loader.load(job(true, 50, Math.max(1, Math.round(options.warmupS / 2))))
  await loader.load(job(false, 1, 1))
  process.stdout.write(" done\n")

  for (let repeat = 1; repeat <= options.repeats; repeat++) {
    for (const scenario of scenarios) {
      const machineBefore = machineCpu()
      const ownBefore = ownCpuSeconds()
      const cpuBefore = cpuSecondsOf(target.pid)
      const upstreamCpuBefore = target.upstreamPid === undefined ? 0 : cpuSecondsOf(target.upstreamPid)
      let peakRssMb = 0
      const sampler =
        scenario.name === "ns-c200"
          ? setInterval(() => {
              peakRssMb = Math.max(peakRssMb, memoryOf(target.pid).rssMb)
            }, 50)
          : undefined
      let result: LoadResult
      try {
        result = await loader.load(job(scenario.stream, scenario.connections, options.durationS))
      } finally {
        if (sampler !== undefined) clearInterval(sampler)
      }
      const cpu = cpuSecondsOf(target.pid) - cpuBefore
      const upstreamCpu = target.upstreamPid === undefined ? 0 : cpuSecondsOf(target.upstreamPid) - upstreamCpuBefore
      const machineAfter = machineCpu()
      const ownCpu = ownCpuSeconds() - ownBefore
      const completed = result.ok + result.non2xx + result.mismatches
      const sample: RunSample = {
        ...result,
        ...(machineBefore !== undefined && machineAfter !== undefined
          ? {
              otherCpuPercent: Math.max(
                0,
                (100 * (machineAfter.busyS - machineBefore.busyS - cpu - upstreamCpu - result.loaderCpuS - ownCpu)) / result.durationS
              ),
              stealPercent: (100 * (machineAfter.stealS - machineBefore.stealS)) / result.durationS
            }
          : {}),
        ...(scenario.name === "ns-c50"
          ? {
              cpuUsPerRequest: completed > 0 ? (cpu * 1e6) / completed : Number.NaN,
              loadCorePercent: (100 * (result.loaderCpuS + upstreamCpu)) / result.durationS
            }
          : {}),
        ...(scenario.name === "ns-c200" ? { peakRssMb: Math.max(peakRssMb, memoryOf(target.pid).rssMb) } : {})
      }
      report.runs[scenario.name].push(sample)
      const interference =
        (sample.otherCpuPercent ?? 0) >= 5 || (sample.stealPercent ?? 0) >= 5
          ? `  [other CPU ${sample.otherCpuPercent?.toFixed(0) ?? "?"}%, steal ${sample.stealPercent?.toFixed(0) ?? "?"}%]`
          : ""
      const extra =
        sample.cpuUsPerRequest !== undefined
          ? `, ${sample.cpuUsPerRequest.toFixed(0)} µs CPU/req, load core ${sample.loadCorePercent?.toFixed(0) ?? "?"}%`
          : sample.peakRssMb !== undefined
            ? `, peak RSS ${sample.peakRssMb.toFixed(0)} MB`
            : ""
      console.log(
        `  [${repeat}/${options.repeats}] ${scenario.name.padEnd(10)} ${result.reqPerSec.toFixed(0).padStart(7)} req/s  p50 ${result.latencyMs.p50.toFixed(2)} ms  p99 ${result.latencyMs.p99.toFixed(2)} ms  failures ${failures(result)}${extra}${interference}`
      )
    }
  }

  const ttft = target.endpoint("ttft")
  process.stdout.write(`  TTFT probe: ${options.probeCount} sequential streams of ${ttftChunks} chunks × ${ttftDelayMs} ms…`)
  report.probe = await loader.probe({ url: ttft.url, headers: ttft.headers, body: chatBody(ttft.model, true), count: options.probeCount, warmup: 3 })
  console.log(
    ` headers p50 ${report.probe.headersMs.p50.toFixed(2)} ms, first token p50 ${report.probe.firstTokenMs.p50.toFixed(2)} / p99 ${report.probe.firstTokenMs.p99.toFixed(2)} ms, errors ${report.probe.errors}`
  )

  process.stdout.write(`  large request: ${options.largeCount} sequential tiny and ~100k-token requests…`)
  report.tiny = await loader.sequential({ url: fast.url, headers: fast.headers, body: chatBody(fast.model, false), count: options.largeCount, warmup: 10 })
  report.large = await loader.sequential({ url: fast.url, headers: fast.headers, body: largeBody(fast.model), count: options.largeCount, warmup: 5 })
  console.log(
    ` tiny p50 ${report.tiny.latencyMs.p50.toFixed(2)} ms, large p50 ${report.large.latencyMs.p50.toFixed(2)} ms, errors ${report.tiny.errors + report.large.errors}`
  )
  report.rssHighWaterMb = memoryOf(target.pid).hwmMb
  return report
}
