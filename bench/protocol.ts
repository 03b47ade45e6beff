/** Messages between the harness (bench/run.ts) and the load-generator child (bench/load.ts). */
import type { LatencySummary } from "./stats.js"

export interface HttpTarget {
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** An autocannon run: `connections` keep-alive connections for `durationS` seconds. */
export interface LoadJob extends HttpTarget {
  readonly kind: "load"
  readonly connections: number
  readonly durationS: number
  /** Count a 2xx response whose body lacks `data: [DONE]` as a mismatch (a stream that broke off). */
  readonly expectSseDone?: boolean
  /** Count a 2xx response whose body lacks this text as a mismatch (another dialect's end of stream). */
  readonly expectSseText?: string
  /** Return how many responses had each status code (`statuses`), e.g. to tell 429s from other failures. */
  readonly countStatuses?: boolean
  /** Replace every `[<id>]` in the body with a fresh id per request (built per request): no two alike. */
  readonly uniqueBodies?: boolean
}

/** Sequential streamed requests, timing the response headers and the first `data:` frame. */
export interface ProbeJob extends HttpTarget {
  readonly kind: "probe"
  readonly count: number
  readonly warmup: number
}

/** Sequential non-streamed requests, timing each whole response. */
export interface SequentialJob extends HttpTarget {
  readonly kind: "sequential"
  readonly count: number
  readonly warmup: number
}

export type Job = LoadJob | ProbeJob | SequentialJob

export interface LoadResult {
  readonly kind: "load"
  readonly durationS: number
  readonly ok: number
  readonly non2xx: number
  /** Connection errors, timeouts included. */
  readonly errors: number
  readonly timeouts: number
  /** 2xx responses whose body failed the check (streams without `[DONE]`); not counted in `ok`. */
  readonly mismatches: number
  /** Successful responses per second. */
  readonly reqPerSec: number
  readonly latencyMs: LatencySummary
  /** CPU time the load generator itself used during the run, in seconds. */
  readonly loaderCpuS: number
  /** Responses by status code, when the job asked for them (`countStatuses`). */
  readonly statuses?: Readonly<Record<string, number>>
}

export interface ProbeResult {
  readonly kind: "probe"
  readonly errors: number
  readonly headersMs: LatencySummary
  readonly firstTokenMs: LatencySummary
  readonly totalMs: LatencySummary
  /** Status codes seen, for diagnosing failures. */
  readonly statuses: Readonly<Record<string, number>>
}

export interface SequentialResult {
  readonly kind: "sequential"
  readonly errors: number
  readonly latencyMs: LatencySummary
  readonly statuses: Readonly<Record<string, number>>
}

export type JobResult = LoadResult | ProbeResult | SequentialResult

export interface JobRequest {
  readonly id: number
  readonly job: Job
}

export type JobReply =
  | { readonly id: number; readonly ok: true; readonly result: JobResult }
  | { readonly id: number; readonly ok: false; readonly error: string }

export type LoaderMessage = { readonly type: "ready" } | JobReply
