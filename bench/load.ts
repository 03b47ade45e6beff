/**
 * The load generator, run as a child of bench/run.ts (pinned to its own core) and driven over IPC:
 * autocannon runs, and sequential probes with exact per-request timings.
 */
import autocannon from "autocannon"
import { Agent, request as httpRequest } from "node:http"
import type { IncomingMessage } from "node:http"
import { performance } from "node:perf_hooks"
import type { Job, JobRequest, JobResult, LoadJob, LoaderMessage, ProbeJob, SequentialJob } from "./protocol.js"
import { summarize } from "./stats.js"

const cpuSeconds = (): number => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

/** Grows as needed; exact sub-millisecond latencies (autocannon's histogram keeps whole milliseconds). */
class Samples {
  private values = new Float64Array(1 << 16)
  length = 0
  push(value: number) {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2)
      grown.set(this.values)
      this.values = grown
    }
    this.values[this.length++] = value
  }
  view(): Float64Array {
    return this.values.subarray(0, this.length)
  }
}

const statusCounts = (result: autocannon.Result): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const [status, stats] of Object.entries(result.statusCodeStats ?? {})) counts[status] = stats.count ?? 0
  return counts
}

/**
 * The last id given to a `[<id>]`. One count for the process, never restarted per job: ids that repeated from run to
 * run made the response cache's "miss" runs partly hits of the runs before them.
 */
let lastId = 0

/** A request builder whose every body is `template` with its `[<id>]` replaced by a fresh number. */
const uniqueBody = (template: string) => (request: autocannon.Request): autocannon.Request => ({
  ...request,
  body: template.replace("[<id>]", `${process.pid}-${++lastId}`)
})

const runLoad = (job: LoadJob): Promise<JobResult> =>
  new Promise((resolve, reject) => {
    const latencies = new Samples()
    const cpuBefore = cpuSeconds()
    const started = performance.now()
    const instance = autocannon(
      {
        url: job.url,
        method: "POST",
        headers: { ...job.headers, "content-type": "application/json" },
        body: job.body,
        connections: job.connections,
        duration: job.durationS,
        timeout: 30,
        // autocannon's own idReplacement keeps the template's content-length: each body is built here instead.
        ...(job.uniqueBodies === true ? { requests: [{ setupRequest: uniqueBody(job.body) }] } : {}),
        ...(job.expectSseDone === true || job.expectSseText !== undefined
          ? { verifyBody: (body: unknown) => (typeof body === "string" ? body : String(body)).includes(job.expectSseText ?? "data: [DONE]") }
          : {})
      },
      (error: unknown, result: autocannon.Result) => {
        if (error !== null && error !== undefined) {
          reject(error instanceof Error ? error : new Error(String(error)))
          return
        }
        const elapsedS = (performance.now() - started) / 1000
        const durationS = typeof result.duration === "number" && result.duration > 0 ? result.duration : elapsedS
        const ok = result["2xx"] - result.mismatches
        resolve({
          kind: "load",
          durationS,
          ok,
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          mismatches: result.mismatches,
          reqPerSec: ok / durationS,
          latencyMs: summarize(latencies.view()),
          loaderCpuS: cpuSeconds() - cpuBefore,
          ...(job.countStatuses === true ? { statuses: statusCounts(result) } : {})
        })
      }
    )
    instance.on("response", (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime)
    })
  })

const agent = new Agent({ keepAlive: true, maxSockets: 1 })

interface Timing {
  readonly status: number
  readonly headersMs: number
  readonly firstDataMs: number
  readonly totalMs: number
}

/** One request over the keep-alive agent, timing headers, first `data:` frame and end. */
const timedRequest = (target: { readonly url: string; readonly headers: Readonly<Record<string, string>>; readonly body: string }): Promise<Timing> =>
  new Promise((resolve, reject) => {
    const body = Buffer.from(target.body)
    const started = performance.now()
    let headersMs = Number.NaN
    let firstDataMs = Number.NaN
    const outgoing = httpRequest(
      target.url,
      {
        method: "POST",
        agent,
        headers: { ...target.headers, "content-type": "application/json", "content-length": String(body.length) }
      },
      (response: IncomingMessage) => {
        headersMs = performance.now() - started
        let seen = ""
        response.on("data", (part: Buffer) => {
          if (Number.isNaN(firstDataMs)) {
            seen += part.toString("latin1")
            if (seen.includes("data:")) firstDataMs = performance.now() - started
          }
        })
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, headersMs, firstDataMs, totalMs: performance.now() - started })
        )
        response.on("error", reject)
      }
    )
    outgoing.setTimeout(30_000, () => outgoing.destroy(new Error("request timed out after 30 s")))
    outgoing.on("error", reject)
    outgoing.end(body)
  })

const countStatus = (statuses: Record<string, number>, status: number | string) => {
  const key = String(status)
  statuses[key] = (statuses[key] ?? 0) + 1
}

const runProbe = async (job: ProbeJob): Promise<JobResult> => {
  for (let index = 0; index < job.warmup; index++) await timedRequest(job).catch(() => undefined)
  const headers: Array<number> = []
  const firstToken: Array<number> = []
  const total: Array<number> = []
  const statuses: Record<string, number> = {}
  let errors = 0
  for (let index = 0; index < job.count; index++) {
    try {
      const timing = await timedRequest(job)
      countStatus(statuses, timing.status)
      if (timing.status !== 200 || Number.isNaN(timing.firstDataMs)) {
        errors++
        continue
      }
      headers.push(timing.headersMs)
      firstToken.push(timing.firstDataMs)
      total.push(timing.totalMs)
    } catch {
      errors++
      countStatus(statuses, "error")
    }
  }
  return {
    kind: "probe",
    errors,
    headersMs: summarize(headers),
    firstTokenMs: summarize(firstToken),
    totalMs: summarize(total),
    statuses
  }
}

const runSequential = async (job: SequentialJob): Promise<JobResult> => {
  for (let index = 0; index < job.warmup; index++) await timedRequest(job).catch(() => undefined)
  const latencies: Array<number> = []
  const statuses: Record<string, number> = {}
  let errors = 0
  for (let index = 0; index < job.count; index++) {
    try {
      const timing = await timedRequest(job)
      countStatus(statuses, timing.status)
      if (timing.status !== 200) errors++
      else latencies.push(timing.totalMs)
    } catch {
      errors++
      countStatus(statuses, "error")
    }
  }
  return { kind: "sequential", errors, latencyMs: summarize(latencies), statuses }
}

const runJob = (job: Job): Promise<JobResult> => {
  switch (job.kind) {
    case "load":
      return runLoad(job)
    case "probe":
      return runProbe(job)
    case "sequential":
      return runSequential(job)
  }
}

const isJobRequest = (message: unknown): message is JobRequest =>
  typeof message === "object" &&
  message !== null &&
  typeof (message as { id?: unknown }).id === "number" &&
  typeof (message as { job?: unknown }).job === "object"

const send = (message: LoaderMessage) => process.send?.(message)

if (process.send === undefined) {
  console.error("bench/load.ts is driven by bench/run.ts over IPC")
  process.exit(2)
}

// One job at a time: the harness waits for each reply.
let queue: Promise<void> = Promise.resolve()
process.on("message", (message: unknown) => {
  if (!isJobRequest(message)) return
  queue = queue.then(() =>
    runJob(message.job).then(
      (result) => void send({ id: message.id, ok: true, result }),
      (error: unknown) => void send({ id: message.id, ok: false, error: error instanceof Error ? error.stack ?? error.message : String(error) })
    )
  )
})
process.on("disconnect", () => process.exit(0))
send({ type: "ready" })
