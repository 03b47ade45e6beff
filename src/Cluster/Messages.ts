/**
 * What a group's primary and its workers say to each other over the cluster IPC channel (node:cluster, "advanced"
 * serialization), and the bounds on it. Every message is decoded on arrival; anything else is ignored.
 *
 * - worker → primary `Ready`: it listens (SIGHUP is forwarded to ready workers only; a starting one reads the file anyway).
 * - worker → primary `GroupMetricsRequest`: a scrape of `/metrics` arrived; the primary answers `GroupMetrics`.
 * - primary → every ready worker `MetricsCollect`; each answers `MetricsReport` with its snapshot (null when over
 *   `maxReportBytes`).
 */
import { Schema } from "effect"
import { Snapshot } from "./Snapshot.js"

/** How long the primary waits for the workers' reports; a worker later than this is left out of the answer. */
export const collectTimeoutMs = 1_000

/** How long a worker waits for the group's answer before it answers with its own metrics alone. */
export const groupTimeoutMs = 2_500

/** A worker's report larger than this (serialized) is not sent: that worker is left out. */
export const maxReportBytes = 4 * 1024 * 1024

/** The merged answer keeps at most this many series (the gateway's and the runtime's together). */
export const maxMergedSeries = 50_000

/** The group's answer larger than this (serialized) is not sent: the scraped worker then answers alone. */
export const maxGroupBytes = 32 * 1024 * 1024

/** Scrapes the primary merges at once; one more is answered "busy" (the worker then answers alone). */
export const maxCollections = 16

export const Ready = Schema.TaggedStruct("llm-proxy/Ready", {})

export const GroupMetricsRequest = Schema.TaggedStruct("llm-proxy/GroupMetricsRequest", { id: Schema.Number })

export const MetricsReport = Schema.TaggedStruct("llm-proxy/MetricsReport", { id: Schema.Number, snapshot: Schema.NullOr(Snapshot) })

export const MetricsCollect = Schema.TaggedStruct("llm-proxy/MetricsCollect", { id: Schema.Number })

/**
 * The group's metrics: `snapshot` null when the primary could not merge (busy, or the answer over its bound).
 * `answered` of `workers` sent their figures in time; `stale` more are counted by their last known counters.
 */
export const GroupMetrics = Schema.TaggedStruct("llm-proxy/GroupMetrics", {
  id: Schema.Number,
  snapshot: Schema.NullOr(Snapshot),
  workers: Schema.Number,
  answered: Schema.Number,
  stale: Schema.Number,
  dropped: Schema.Number,
  reason: Schema.optionalWith(Schema.String, { exact: true })
})
export type GroupMetrics = typeof GroupMetrics.Type

export const FromWorker = Schema.Union(Ready, GroupMetricsRequest, MetricsReport)
export type FromWorker = typeof FromWorker.Type

export const FromPrimary = Schema.Union(MetricsCollect, GroupMetrics)
export type FromPrimary = typeof FromPrimary.Type

export const decodeFromWorker = Schema.decodeUnknownOption(FromWorker)
export const decodeFromPrimary = Schema.decodeUnknownOption(FromPrimary)

/** Environment variable naming a worker's slot (1..WORKERS): its `x-llm-proxy-worker` header. */
export const slotVariable = "LLM_PROXY_WORKER"
