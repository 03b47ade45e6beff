/**
 * `npm run bench -- --governance`: what governance costs the proxy, measured beside the keyless proxy.
 *
 * - memory: one gateway whose registry holds a key with rpm + tpm + max_parallel; the same process serves the
 *   keyless baseline (the operator key: no admission) and the key, non-stream and stream(20), c=50. Target: the
 *   key's non-stream req/s ≥ 90 % of keyless.
 * - redis: the same key with REDIS_URL (a REDIS_KEY_PREFIX of the bench's own, deleted at the end), non-stream
 *   c=50, keyed and keyless (the operator's usage is recorded in Redis too). Target: the key ≥ 60 % of the keyless
 *   memory baseline. Redis's commands per request come from INFO commandstats around the run; the round trips
 *   per request from a sequential pass through a counting relay (bench/redis.ts), where no other client counts.
 * - workers: keyless, non-stream c=50, WORKERS=1 and WORKERS=2, both pinned to cores 0-1 (the load generator and
 *   the upstream, on core 1, then share a core with the gateway), beside the keyless baseline on core 0.
 *
 * The limits are far above what a run can reach: the point is the cost of admission and accounting, never a
 * refusal. Every 429 is a failure, and the runs of each gateway are interleaved repeat by repeat, so that a
 * machine whose speed drifts moves baseline and key alike.
 */
import { request as httpRequest } from "node:http"
import { randomBytes } from "node:crypto"
import type { Loader } from "./loader.js"
import { failures } from "./measure.js"
import type { RunSample } from "./measure.js"
import type { Options } from "./options.js"
import { chatBody } from "./payloads.js"
import { childPidsOf, cpuSecondsOrZero, machineCpu, ownCpuSeconds } from "./proc.js"
import { tasksetWorks } from "./processes.js"
import { RedisWatch, startRelay } from "./redis.js"
import type { RedisDelta, RedisSnapshot } from "./redis.js"
import { median } from "./stats.js"
import { proxyKey, startProxy } from "./targets.js"
import type { Upstream } from "./targets.js"

/** High enough never to refuse during a run: the cost of admission and accounting is measured, not refusals. */
export const governanceLimits = { rpm: 10_000_000, tpm: 10_000_000_000, max_parallel: 10_000 } as const
const keyId = "bench"
const keyEnv = "BENCH_KEY"
const connections = 50

export type GroupName = "memory" | "redis" | "workers1" | "workers2"
export type GovernanceScenarioName =
  | "keyless-memory-ns"
  | "keyed-memory-ns"
  | "keyless-memory-stream"
  | "keyed-memory-stream"
  | "keyed-redis-ns"
  | "keyless-redis-ns"
  | "workers1-ns"
  | "workers2-ns"

interface Scenario {
  readonly name: GovernanceScenarioName
  readonly group: GroupName
  readonly keyed: boolean
  readonly stream: boolean
}

/** In the order they run within a repeat. */
const scenarios: ReadonlyArray<Scenario> = [
  { name: "keyless-memory-ns", group: "memory", keyed: false, stream: false },
  { name: "keyed-memory-ns", group: "memory", keyed: true, stream: false },
  { name: "keyless-memory-stream", group: "memory", keyed: false, stream: true },
  { name: "keyed-memory-stream", group: "memory", keyed: true, stream: true },
  { name: "keyed-redis-ns", group: "redis", keyed: true, stream: false },
  { name: "keyless-redis-ns", group: "redis", keyed: false, stream: false },
  { name: "workers1-ns", group: "workers1", keyed: false, stream: false },
  { name: "workers2-ns", group: "workers2", keyed: false, stream: false }
]

const groupOrder: ReadonlyArray<GroupName> = ["memory", "redis", "workers1", "workers2"]

export interface RedisRunFigures {
  /** evalsha/eval per completed request (INFO commandstats): what the gateway sends, all of it scripts. */
  readonly scriptCallsPerRequest: number
  /** Every command per completed request by name, those the scripts ran (redis.call) included. */
  readonly callsPerRequest: Readonly<Record<string, number>>
  /** Redis server CPU per completed request, µs. */
  readonly cpuUsPerRequest: number
  readonly shared: boolean
  readonly sharedReasons: ReadonlyArray<string>
}

export interface GovernanceSample extends RunSample {
  /** 429 responses (limit refusals): none may happen. */
  readonly refusals: number
  /** The gateway's llm_proxy_limit_refusals_total and llm_proxy_store_errors_total added during the run. */
  readonly gatewayRefusals: number
  readonly storeErrors: number
  /** Gateway processes whose CPU was summed (the primary and its workers with WORKERS > 1). */
  readonly gatewayProcesses: number
  readonly redis?: RedisRunFigures
}

/** One sequential pass through the counting relay. */
export interface RoundTripCount {
  readonly requests: number
  readonly roundTrips: number
  readonly roundTripsPerRequest: number
  readonly callsPerRequest: Readonly<Record<string, number>>
}

export interface GovernanceReport {
  readonly limits: typeof governanceLimits
  readonly redisUrl: string
  readonly redisKeyPrefix: string
  /** Where each gateway ran. */
  readonly pinning: Readonly<Record<GroupName, string>>
  readonly runs: Record<GovernanceScenarioName, Array<GovernanceSample>>
  /** Sequential passes through the relay, keyed and keyless, on a Redis gateway of their own. */
  readonly roundTrips: { keyed?: RoundTripCount; keyless?: RoundTripCount }
  /** What was checked before measuring (the key's rate-limit headers, the workers answering). */
  readonly checks: Array<string>
  deletedRedisKeys?: number
  readonly errors: Partial<Record<GroupName | "round-trips" | "cleanup", string>>
}

/** A figure for a progress line: NaN (and the null JSON makes of it over IPC) as "—". */
const fixed = (value: number | null | undefined, digits: number) =>
  typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—"

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error))

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms))

/** Between two requests of the round-trip count: well past the relay's quiet time (3 ms) and a request's finish. */
const roundTripSpacingMs = 15

interface Reply {
  readonly status: number
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  readonly body: string
}

/** One request on a fresh connection (so that a cluster may hand it to any worker). */
const call = (url: string, headers: Readonly<Record<string, string>>, body?: string): Promise<Reply> =>
  new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      url,
      {
        method: body === undefined ? "GET" : "POST",
        agent: false,
        headers: { ...headers, connection: "close", ...(body === undefined ? {} : { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) }) }
      },
      (response) => {
        const parts: Array<Buffer> = []
        response.on("data", (part: Buffer) => parts.push(part))
        response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(parts).toString("utf8") }))
        response.on("error", reject)
      }
    )
    outgoing.setTimeout(10_000, () => outgoing.destroy(new Error(`${url} did not answer within 10 s`)))
    outgoing.on("error", reject)
    outgoing.end(body)
  })

/** The sum of a counter's series in a Prometheus text exposition. */
const metricSum = (text: string, name: string): number =>
  text
    .split("\n")
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0)

interface Gateway {
  readonly group: GroupName
  readonly origin: string
  /** The gateway's processes now: the one process, or the primary and its workers. */
  readonly pids: () => ReadonlyArray<number>
  readonly stop: () => Promise<void>
}

export const runGovernance = async (backend: Upstream, loader: Loader, work: string, options: Options): Promise<GovernanceReport> => {
  const secret = `bench-governance-${randomBytes(12).toString("hex")}`
  const prefix = `llmp-bench-${randomBytes(4).toString("hex")}`
  const registryLines = [
    "keys:",
    `  - id: ${keyId}`,
    `    key_env: ${keyEnv}`,
    `    limits: { rpm: ${governanceLimits.rpm}, tpm: ${governanceLimits.tpm}, max_parallel: ${governanceLimits.max_parallel} }`
  ]
  const sharedCores = tasksetWorks
    ? "gateway (primary + workers) on cores 0-1; the load generator and the upstream on core 1 share a core with it"
    : "no pinning"
  const report: GovernanceReport = {
    limits: governanceLimits,
    redisUrl: options.redisUrl,
    redisKeyPrefix: prefix,
    pinning: {
      memory: tasksetWorks ? "gateway on core 0; load generator + upstream on core 1" : "no pinning",
      redis: tasksetWorks ? "gateway on core 0; load generator + upstream on core 1; the Redis server is not pinned by the bench" : "no pinning",
      workers1: sharedCores,
      workers2: sharedCores
    },
    runs: {
      "keyless-memory-ns": [],
      "keyed-memory-ns": [],
      "keyless-memory-stream": [],
      "keyed-memory-stream": [],
      "keyed-redis-ns": [],
      "keyless-redis-ns": [],
      "workers1-ns": [],
      "workers2-ns": []
    },
    roundTrips: {},
    checks: [],
    errors: {}
  }
  console.log(
    `\n== governance: key "${keyId}" with rpm ${governanceLimits.rpm}, tpm ${governanceLimits.tpm}, max_parallel ${governanceLimits.max_parallel}; Redis ${options.redisUrl}, REDIS_KEY_PREFIX ${prefix}`
  )
  if (tasksetWorks) console.log("  WORKERS runs: gateway pinned to cores 0-1, so the load generator and the upstream (core 1) share a core with it")

  const headersFor = (keyed: boolean) => ({ authorization: `Bearer ${keyed ? secret : proxyKey}` })
  const keyedEnv = { [keyEnv]: secret }
  const gateways = new Map<GroupName, Gateway>()
  let watch: RedisWatch | undefined

  const start = async (group: GroupName): Promise<Gateway> => {
    const variant =
      group === "memory"
        ? { registryLines, env: keyedEnv }
        : group === "redis"
          ? { registryLines, env: { ...keyedEnv, REDIS_URL: options.redisUrl, REDIS_KEY_PREFIX: prefix } }
          : { env: { WORKERS: group === "workers2" ? "2" : "1" }, cores: "0-1" }
    const proxy = await startProxy(backend, work, [], `proxy-${group}`, variant)
    const primary = proxy.pid
    const gateway: Gateway = {
      group,
      origin: proxy.origin,
      pids: () => (group === "workers2" ? [primary, ...childPidsOf(primary)] : [primary]),
      stop: proxy.stop
    }
    try {
      await checkGateway(gateway)
    } catch (error) {
      await proxy.stop()
      throw error
    }
    return gateway
  }

  const checkGateway = async (gateway: Gateway) => {
    const url = `${gateway.origin}/v1/chat/completions`
    if (gateway.group === "redis") {
      const ready = await call(`${gateway.origin}/ready`, {})
      if (ready.status !== 200) throw new Error(`the Redis gateway is not ready: ${ready.status} ${ready.body}`)
    }
    if (gateway.group === "memory" || gateway.group === "redis") {
      const keyed = await call(url, headersFor(true), chatBody("bench", false))
      const limit = keyed.headers["x-ratelimit-limit-requests"]
      if (keyed.status !== 200 || limit !== String(governanceLimits.rpm)) {
        throw new Error(`the key is not admitted with its limits (status ${keyed.status}, x-ratelimit-limit-requests ${String(limit)}): ${keyed.body.slice(0, 300)}`)
      }
      report.checks.push(`${gateway.group}: the key answers 200 with x-ratelimit-limit-requests ${String(limit)}`)
    }
    const keyless = await call(url, headersFor(false), chatBody("bench", false))
    if (keyless.status !== 200 || keyless.headers["x-ratelimit-limit-requests"] !== undefined) {
      throw new Error(`the operator key does not answer as keyless (status ${keyless.status}): ${keyless.body.slice(0, 300)}`)
    }
    if (gateway.group === "workers2") {
      // The primary forks the first worker alone, then the rest: wait until both answer.
      const seen = new Set<string>()
      const deadline = Date.now() + 20_000
      while (seen.size < 2 && Date.now() < deadline) {
        const reply = await call(`${gateway.origin}/health`, {})
        const worker = reply.headers["x-llm-proxy-worker"]
        if (typeof worker === "string") seen.add(worker)
        else await new Promise((done) => setTimeout(done, 100))
      }
      const processes = childPidsOf(gateway.pids()[0] ?? -1).length
      if (seen.size < 2 || processes < 2) {
        throw new Error(
          `WORKERS=2 did not give two serving workers (x-llm-proxy-worker seen: ${[...seen].join(", ") || "none"}; ${processes} child process(es)): is WORKERS in this build?`
        )
      }
      report.checks.push(`workers2: ${processes} worker processes, x-llm-proxy-worker ${[...seen].sort().join(" and ")} answered`)
    }
  }

  /** The gateway's limit refusals and store errors so far (every worker's, with WORKERS > 1). */
  const counters = async (gateway: Gateway) => {
    const metrics = await call(`${gateway.origin}/metrics`, { authorization: `Bearer ${proxyKey}` })
    if (metrics.status !== 200) throw new Error(`/metrics answered ${metrics.status}`)
    return {
      refusals: metricSum(metrics.body, "llm_proxy_limit_refusals_total"),
      storeErrors: metricSum(metrics.body, "llm_proxy_store_errors_total")
    }
  }

  const measure = async (gateway: Gateway, scenario: Scenario, durationS: number, record: boolean): Promise<GovernanceSample> => {
    const job = {
      url: `${gateway.origin}/v1/chat/completions`,
      headers: headersFor(scenario.keyed),
      body: chatBody("bench", scenario.stream),
      connections,
      durationS,
      expectSseDone: scenario.stream,
      countStatuses: true
    }
    const pids = gateway.pids()
    const cpuOf = () => pids.reduce((sum, pid) => sum + cpuSecondsOrZero(pid), 0)
    const upstreamPid = backend.child.pid ?? -1
    const countersBefore = await counters(gateway)
    const redisBefore: RedisSnapshot | undefined = record && gateway.group === "redis" ? await watch?.snapshot() : undefined
    const machineBefore = machineCpu()
    const ownBefore = ownCpuSeconds()
    const cpuBefore = cpuOf()
    const upstreamBefore = cpuSecondsOrZero(upstreamPid)
    const result = await loader.load(job)
    const cpu = cpuOf() - cpuBefore
    const upstreamCpu = cpuSecondsOrZero(upstreamPid) - upstreamBefore
    const machineAfter = machineCpu()
    const ownCpu = ownCpuSeconds() - ownBefore
    const redisAfter = redisBefore === undefined ? undefined : await watch?.snapshot()
    const countersAfter = await counters(gateway)
    const delta: RedisDelta | undefined = redisBefore !== undefined && redisAfter !== undefined ? watch?.delta(redisBefore, redisAfter, pids) : undefined
    const completed = result.ok + result.non2xx + result.mismatches
    // Redis's CPU is the benchmark's own when the server runs here.
    const redisLocalCpu = delta !== undefined && watch?.localPid !== undefined ? delta.cpuS : 0
    const perRequest = (count: number) => (completed > 0 ? count / completed : Number.NaN)
    return {
      ...result,
      refusals: result.statuses?.["429"] ?? 0,
      gatewayRefusals: countersAfter.refusals - countersBefore.refusals,
      storeErrors: countersAfter.storeErrors - countersBefore.storeErrors,
      gatewayProcesses: pids.length,
      cpuUsPerRequest: completed > 0 ? (cpu * 1e6) / completed : Number.NaN,
      loadCorePercent: (100 * (result.loaderCpuS + upstreamCpu)) / result.durationS,
      ...(machineBefore !== undefined && machineAfter !== undefined
        ? {
            otherCpuPercent: Math.max(
              0,
              (100 * (machineAfter.busyS - machineBefore.busyS - cpu - upstreamCpu - result.loaderCpuS - ownCpu - redisLocalCpu)) / result.durationS
            ),
            stealPercent: (100 * (machineAfter.stealS - machineBefore.stealS)) / result.durationS
          }
        : {}),
      ...(delta !== undefined
        ? {
            redis: {
              scriptCallsPerRequest: perRequest(delta.scriptCalls),
              callsPerRequest: Object.fromEntries(Object.entries(delta.calls).map(([name, count]) => [name, perRequest(count)])),
              cpuUsPerRequest: perRequest(delta.cpuS * 1e6),
              shared: delta.shared,
              sharedReasons: delta.sharedReasons
            }
          }
        : {})
    }
  }

  const show = (scenario: Scenario, sample: GovernanceSample, repeat: number) => {
    const interference =
      (sample.otherCpuPercent ?? 0) >= 5 || (sample.stealPercent ?? 0) >= 5
        ? `  [other CPU ${sample.otherCpuPercent?.toFixed(0) ?? "?"}%, steal ${sample.stealPercent?.toFixed(0) ?? "?"}%]`
        : ""
    const redis =
      sample.redis === undefined
        ? ""
        : `, Redis: ${fixed(sample.redis.scriptCallsPerRequest, 2)} scripts/req, ${fixed(sample.redis.cpuUsPerRequest, 0)} µs Redis CPU/req${sample.redis.shared ? " [Redis shared during the run]" : ""}`
    const storeErrors = sample.storeErrors > 0 ? `, STORE ERRORS ${sample.storeErrors}` : ""
    console.log(
      `  [${repeat}/${options.repeats}] ${scenario.name.padEnd(21)} ${fixed(sample.reqPerSec, 0).padStart(7)} req/s  p50 ${fixed(sample.latencyMs.p50, 2)} ms  p99 ${fixed(sample.latencyMs.p99, 2)} ms  failures ${failures(sample)} (429: ${sample.refusals}), ${fixed(sample.cpuUsPerRequest, 0)} µs CPU/req over ${sample.gatewayProcesses} process(es), load core ${fixed(sample.loadCorePercent, 0)}%${redis}${storeErrors}${interference}`
    )
  }

  try {
    for (const group of groupOrder) {
      try {
        if (group === "redis") watch = await RedisWatch.connect(options.redisUrl)
        const gateway = await start(group)
        gateways.set(group, gateway)
        process.stdout.write(`  ${group}: warm-up ${options.warmupS} s per scenario…`)
        for (const scenario of scenarios.filter((candidate) => candidate.group === group)) {
          await measure(gateway, scenario, options.warmupS, false)
        }
        process.stdout.write(" done\n")
      } catch (error) {
        report.errors[group] = describe(error)
        console.error(`  ${group} failed: ${describe(error)}`)
      }
    }

    for (let repeat = 1; repeat <= options.repeats; repeat++) {
      for (const scenario of scenarios) {
        const gateway = gateways.get(scenario.group)
        if (gateway === undefined) continue
        try {
          const sample = await measure(gateway, scenario, options.durationS, true)
          report.runs[scenario.name].push(sample)
          show(scenario, sample, repeat)
        } catch (error) {
          report.errors[scenario.group] = describe(error)
          console.error(`  ${scenario.name} failed: ${describe(error)}`)
        }
      }
    }

  } finally {
    for (const gateway of gateways.values()) await gateway.stop()
  }

  // Round trips: a Redis gateway of its own behind the counting relay, sequential requests (c=1), so that each
  // request's commands and round trips are seen apart from any other's and from any other client of Redis.
  if (watch !== undefined && report.errors.redis === undefined) {
    const relay = await startRelay(options.redisUrl)
    let proxy: Awaited<ReturnType<typeof startProxy>> | undefined
    try {
      proxy = await startProxy(backend, work, [], "proxy-redis-relay", {
        registryLines,
        env: { ...keyedEnv, REDIS_URL: relay.url, REDIS_KEY_PREFIX: prefix }
      })
      const url = `${proxy.origin}/v1/chat/completions`
      const count = options.quick ? 200 : 1_000
      process.stdout.write(`  round trips: ${count} sequential keyed and ${count} keyless requests, ${roundTripSpacingMs} ms apart, through a counting relay to Redis…`)
      const sequence = async (keyed: boolean, requests: number) => {
        const statuses = new Map<number, number>()
        for (let index = 0; index < requests; index++) {
          const reply = await call(url, headersFor(keyed), chatBody("bench", false))
          statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1)
          // Apart by more than the relay's quiet time: one request's commands never share a burst with the next's.
          await sleep(roundTripSpacingMs)
        }
        const failed = requests - (statuses.get(200) ?? 0)
        if (failed > 0) throw new Error(`${failed} of ${requests} sequential requests failed: ${JSON.stringify(Object.fromEntries(statuses))}`)
      }
      for (const keyed of [true, false]) {
        await sequence(keyed, 10)
        const before = relay.counts()
        await sequence(keyed, count)
        const after = relay.counts()
        const callsPerRequest: Record<string, number> = {}
        for (const [name, total] of Object.entries(after.calls)) {
          const added = total - (before.calls[name] ?? 0)
          if (added > 0) callsPerRequest[name] = added / count
        }
        report.roundTrips[keyed ? "keyed" : "keyless"] = {
          requests: count,
          roundTrips: after.roundTrips - before.roundTrips,
          roundTripsPerRequest: (after.roundTrips - before.roundTrips) / count,
          callsPerRequest
        }
      }
      const describeCount = (counted: RoundTripCount | undefined) =>
        counted === undefined
          ? "—"
          : `${counted.roundTripsPerRequest.toFixed(2)} round trips/req (${Object.entries(counted.callsPerRequest)
              .map(([name, perRequest]) => `${name} ${perRequest.toFixed(2)}`)
              .join(", ")})`
      console.log(` keyed ${describeCount(report.roundTrips.keyed)}; keyless ${describeCount(report.roundTrips.keyless)}`)
    } catch (error) {
      report.errors["round-trips"] = describe(error)
      console.error(`\n  round trips failed: ${describe(error)}`)
    } finally {
      await proxy?.stop()
      await relay.close()
    }
  }

  if (watch !== undefined) {
    try {
      report.deletedRedisKeys = await watch.deletePrefix(prefix)
      const left = await watch.deletePrefix(prefix)
      console.log(`  Redis: deleted ${report.deletedRedisKeys} keys under ${prefix}${left > 0 ? ` (and ${left} written late)` : ""}`)
    } catch (error) {
      report.errors.cleanup = `keys under ${prefix} may remain in ${options.redisUrl}: ${describe(error)}`
      console.error(`  Redis cleanup failed: ${report.errors.cleanup}`)
    } finally {
      await watch.close()
    }
  }
  return report
}

/** Median over repeats of a run's figure. */
const medianOf = (runs: ReadonlyArray<GovernanceSample>, pick: (run: GovernanceSample) => number | undefined): number =>
  median(runs.map((run) => pick(run) ?? Number.NaN))

/** Median over repeats of `runs[i] / base[i]`: the runs of one repeat were measured minutes apart at most. */
const ratioOf = (runs: ReadonlyArray<GovernanceSample>, base: ReadonlyArray<GovernanceSample>): number =>
  median(runs.map((run, index) => run.reqPerSec / (base[index]?.reqPerSec ?? Number.NaN)))

export interface GovernanceRow {
  readonly scenario: GovernanceScenarioName
  readonly label: string
  readonly reqPerSec: number
  /** Per cent of its baseline (the keyless memory run of the same kind). */
  readonly percentOfKeyless: number
  /** From the sequential pass through the relay (c=1). */
  readonly roundTripsPerRequest: number | undefined
  /** evalsha/eval per request from INFO commandstats around the c=50 runs (median). */
  readonly redisScriptsPerRequest: number | undefined
  readonly redisShared: boolean
  readonly failures: number
  /** 429 answers, and the gateway's own count of limit refusals. */
  readonly refusals: number
  readonly storeErrors: number
  readonly target: string
  readonly pass: boolean | undefined
}

/** A measured sample that breaks the premise: a failure, a refusal, or a store error (served without the store). */
export const brokenSamples = (report: GovernanceReport): number =>
  Object.values(report.runs).reduce(
    (sum, runs) => sum + runs.filter((run) => failures(run) > 0 || run.refusals > 0 || run.gatewayRefusals > 0 || run.storeErrors > 0).length,
    0
  )

const labels: Record<GovernanceScenarioName, string> = {
  "keyless-memory-ns": "non-stream c=50, keyless (operator key), memory: baseline",
  "keyed-memory-ns": "non-stream c=50, key rpm+tpm+max_parallel, memory",
  "keyless-memory-stream": "stream(20) c=50, keyless, memory: stream baseline",
  "keyed-memory-stream": "stream(20) c=50, key rpm+tpm+max_parallel, memory",
  "keyed-redis-ns": "non-stream c=50, key rpm+tpm+max_parallel, Redis",
  "keyless-redis-ns": "non-stream c=50, keyless, Redis (usage recorded)",
  "workers1-ns": "non-stream c=50, keyless, WORKERS=1 on cores 0-1 *",
  "workers2-ns": "non-stream c=50, keyless, WORKERS=2 on cores 0-1 *"
}

export const governanceRows = (report: GovernanceReport): ReadonlyArray<GovernanceRow> =>
  scenarios.map(({ name }) => {
    const runs = report.runs[name]
    const base = report.runs[name === "keyed-memory-stream" || name === "keyless-memory-stream" ? "keyless-memory-stream" : "keyless-memory-ns"]
    const percent = 100 * ratioOf(runs, base)
    const failed = runs.reduce((sum, run) => sum + failures(run), 0)
    const refusals = runs.reduce((sum, run) => sum + Math.max(run.refusals, run.gatewayRefusals), 0)
    const storeErrors = runs.reduce((sum, run) => sum + run.storeErrors, 0)
    const roundTrips = name === "keyed-redis-ns" ? report.roundTrips.keyed : name === "keyless-redis-ns" ? report.roundTrips.keyless : undefined
    const scripts = medianOf(runs, (run) => run.redis?.scriptCallsPerRequest)
    const throughputTarget = name === "keyed-memory-ns" ? 90 : name === "keyed-redis-ns" ? 60 : undefined
    const target =
      name === "keyed-memory-ns" ? "≥ 90 %, 0 failures" : name === "keyed-redis-ns" ? "≥ 60 %, ≤ 2 round trips, 0 failures" : "0 failures"
    const clean = failed === 0 && refusals === 0 && storeErrors === 0
    const pass =
      runs.length === 0 || (name === "keyed-redis-ns" && roundTrips === undefined)
        ? undefined
        : clean &&
          (throughputTarget === undefined || percent >= throughputTarget) &&
          (name !== "keyed-redis-ns" || (roundTrips?.roundTripsPerRequest ?? Number.POSITIVE_INFINITY) <= 2.005)
    return {
      scenario: name,
      label: labels[name],
      reqPerSec: medianOf(runs, (run) => run.reqPerSec),
      percentOfKeyless: percent,
      roundTripsPerRequest: roundTrips?.roundTripsPerRequest,
      redisScriptsPerRequest: Number.isFinite(scripts) ? scripts : undefined,
      redisShared: runs.some((run) => run.redis?.shared === true),
      failures: failed,
      refusals,
      storeErrors,
      target,
      pass
    }
  })

/** The second table of `--governance`, with its notes. */
export const governanceTable = (report: GovernanceReport, rows: ReadonlyArray<GovernanceRow>): string => {
  const number = (value: number | undefined, digits: number, suffix = "") =>
    value === undefined || !Number.isFinite(value) ? "—" : `${value.toFixed(digits)}${suffix}`
  const header = ["scenario", "req/s", "% of keyless", "Redis round trips/req", "Redis scripts/req", "failures (429)", "store errors", "target", "pass?"]
  const body = rows.map((row) => [
    row.label,
    number(row.reqPerSec, 0),
    number(row.percentOfKeyless, 0, " %"),
    number(row.roundTripsPerRequest, 2),
    row.redisScriptsPerRequest === undefined ? "—" : `${row.redisScriptsPerRequest.toFixed(2)}${row.redisShared ? " †" : ""}`,
    Number.isFinite(row.reqPerSec) ? `${row.failures} (${row.refusals})` : "—",
    Number.isFinite(row.reqPerSec) ? String(row.storeErrors) : "—",
    row.target,
    row.pass === undefined ? "n/a" : row.pass ? "PASS" : "FAIL"
  ])
  const widths = header.map((title, column) => Math.max(title.length, ...body.map((cells) => (cells[column] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((cell, column) => (column === 0 || column >= 7 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join(" | ")} |`
  const workers1 = rows.find((row) => row.scenario === "workers1-ns")?.reqPerSec ?? Number.NaN
  const workers2 = rows.find((row) => row.scenario === "workers2-ns")?.reqPerSec ?? Number.NaN
  const notes = [
    `% of keyless: median over repeats of the run ÷ the keyless memory run of the same repeat (non-stream, or stream for the stream row); that baseline gateway runs on core 0.`,
    `* ${report.pinning.workers2}. WORKERS=2 ÷ WORKERS=1 on the same cores: ${Number.isFinite(workers2 / workers1) ? `${(workers2 / workers1).toFixed(2)}×` : "—"}.`,
    `Redis round trips/req: ${report.roundTrips.keyed?.requests ?? "—"} sequential requests (c=1, ${roundTripSpacingMs} ms apart) on a gateway of their own, through a relay that counts bursts of sends (a burst ends after 3 ms without one; replies are held until then, so a command that needs another's reply is in a later burst). Redis scripts/req: evalsha + eval in INFO commandstats around the c=50 run ÷ its requests (every command the gateway sends per request is a script; the requests still in flight when a run ends add a few hundredths).`,
    ...(["keyed", "keyless"] as const).flatMap((kind) => {
      const counted = report.roundTrips[kind]
      return counted === undefined
        ? []
        : [
            `  relay, ${kind}: ${counted.roundTripsPerRequest.toFixed(2)} round trips/req, commands/req ${Object.entries(counted.callsPerRequest)
              .map(([name, perRequest]) => `${name} ${perRequest.toFixed(2)}`)
              .join(", ")}`
          ]
    }),
    `Keys: rpm ${report.limits.rpm}, tpm ${report.limits.tpm}, max_parallel ${report.limits.max_parallel} (never reached; a 429 is a failure). Redis ${report.redisUrl}, REDIS_KEY_PREFIX ${report.redisKeyPrefix} (${report.deletedRedisKeys ?? "no"} keys deleted after); the Redis server is not pinned by the bench.`,
    ...(rows.some((row) => row.redisShared)
      ? [
          `† another client used this Redis during the run, so its counters may include others' commands: ${[
            ...new Set(report.runs["keyed-redis-ns"].concat(report.runs["keyless-redis-ns"]).flatMap((run) => run.redis?.sharedReasons ?? []))
          ].join("; ")}.`
        ]
      : [])
  ]
  return [line(header), `|${widths.map((width) => "-".repeat(width + 2)).join("|")}|`, ...body.map(line), "", ...notes].join("\n")
}
