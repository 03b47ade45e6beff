/**
 * The gateway's metrics and their Prometheus text exposition (Effect 3 has no formatter), served at
 * `GET /metrics` together with the Effect runtime's own metrics. Updating one is a map lookup and an addition.
 */
import { MetricState, Option } from "effect"
import type { MetricLabel, MetricPair } from "effect"

/**
 * A labelled counter or histogram kept in plain maps, keyed by its label values. Effect's own Metric resolves its
 * registry key (a hash of name and tags) on every tagged update, which the benchmark showed as ~10 % of a request.
 */
class Family {
  readonly series = new Map<string, { readonly labels: ReadonlyArray<readonly [string, string]>; value: number; buckets: Array<number>; sum: number }>()
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge" | "histogram",
    readonly labelNames: ReadonlyArray<string>,
    readonly bounds: ReadonlyArray<number> = []
  ) {}
  private at(values: ReadonlyArray<string>) {
    const key = values.join("\u0000")
    let found = this.series.get(key)
    if (found === undefined) {
      found = { labels: this.labelNames.map((name, index) => [name, values[index] ?? ""] as const), value: 0, buckets: this.bounds.map(() => 0), sum: 0 }
      this.series.set(key, found)
    }
    return found
  }
  /** Adds to a counter, sets a gauge, or observes a histogram value. */
  /** Moves a gauge by `delta` (up or down). */
  add(delta: number, ...values: ReadonlyArray<string>) {
    this.at(values).value += delta
  }
  update(amount: number, ...values: ReadonlyArray<string>) {
    const series = this.at(values)
    if (this.type === "gauge") series.value = amount
    else if (this.type === "counter") series.value += amount
    else {
      series.value++
      series.sum += amount
      for (let index = 0; index < this.bounds.length; index++) if (amount <= this.bounds[index]!) series.buckets[index]!++
    }
  }
}

/** HTTP requests answered, by route and status (499: the client left first). */
export const httpRequests = new Family("llm_proxy_http_requests_total", "HTTP requests answered, by route and status", "counter", ["route", "status"])

/** Time from the request's arrival to the end of its response, streams included. */
export const httpDuration = new Family(
  "llm_proxy_http_request_duration_seconds",
  "Time from a request's arrival to the end of its response, by route",
  "histogram",
  ["route"],
  Array.from({ length: 18 }, (_, index) => 0.001 * 2 ** index)
)

/** Requests being answered now. */
export const httpInFlight = new Family("llm_proxy_http_requests_in_flight", "HTTP requests being answered now", "gauge", [])

/** Upstream calls, by public model, provider and outcome (`ok` or the failure reason). */
export const upstreamAttempts = new Family(
  "llm_proxy_upstream_attempts_total",
  "Upstream calls, by public model, provider and outcome (ok or the ProviderError reason)",
  "counter",
  ["model", "provider", "outcome"]
)

/** Tokens reported by upstreams, by public model and kind (prompt, completion). */
export const tokens = new Family("llm_proxy_tokens_total", "Tokens reported by upstreams, by public model and kind", "counter", ["model", "kind"])

/** Calls to the governance store that failed, by operation (admit, renew, finish, figures, usage). */
export const storeErrors = new Family(
  "llm_proxy_store_errors_total",
  "Governance store calls that failed, by operation",
  "counter",
  ["operation"]
)

/** Registry reloads (SIGHUP or a change of CONFIG_FILE), by outcome: ok or rejected (the old registry kept). */
export const configReloads = new Family("llm_proxy_config_reloads_total", "Registry reloads, by outcome (ok or rejected)", "counter", ["outcome"])

/** Requests refused by a key's limit, by key and limit. */
export const limitRefusals = new Family("llm_proxy_limit_refusals_total", "Requests refused by a key's limit, by key and limit", "counter", ["key", "limit"])

/** Time to first token: from a request's arrival to the first byte of content written, for streams. */
export const timeToFirstToken = new Family(
  "llm_proxy_time_to_first_token_seconds",
  "Time from a streamed request's arrival to the first byte of content written to the client",
  "histogram",
  ["model", "provider"],
  [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120]
)

/** Time per output token: a stream's duration after its first token, divided by its completion tokens. */
export const timePerOutputToken = new Family(
  "llm_proxy_time_per_output_token_seconds",
  "A stream's duration after its first token divided by its completion tokens",
  "histogram",
  ["model", "provider"],
  [0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1]
)

/** One upstream attempt's duration (for a stream: until its first chunk). */
export const upstreamDuration = new Family(
  "llm_proxy_upstream_duration_seconds",
  "Duration of each upstream attempt (streams: until the first chunk), by public model and provider",
  "histogram",
  ["model", "provider"],
  [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]
)

/** The gateway's own time: a request's duration minus the time spent waiting on upstreams (streams: until the first byte). */
export const overhead = new Family(
  "llm_proxy_overhead_seconds",
  "Request time minus the time spent waiting on upstreams (streams: up to the first byte), by route",
  "histogram",
  ["route"],
  [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
)

/** Streams being written to clients now. */
export const streamsActive = new Family("llm_proxy_streams_active", "Streams being written to clients now", "gauge", [])

/** Retries of a deployment after a retryable failure, by public model. */
export const retries = new Family("llm_proxy_retries_total", "Upstream retries after a retryable failure, by public model", "counter", ["model"])

/** Fallbacks from one public model to another. */
export const fallbacks = new Family("llm_proxy_fallbacks_total", "Fallbacks from one public model to another", "counter", ["from", "to"])

/** Requests for models with a response cache, by public model and result: hit, miss or bypass (Cache-Control). */
export const cacheRequests = new Family(
  "llm_proxy_cache_requests_total",
  "Requests for models with a response cache, by public model and result (hit, miss, bypass)",
  "counter",
  ["model", "result"]
)

/** Answers offered to the response cache, by public model and outcome: stored, too_large, unfinished. */
export const cacheWrites = new Family(
  "llm_proxy_cache_writes_total",
  "Answers offered to the response cache, by public model and outcome (stored, too_large, unfinished)",
  "counter",
  ["model", "outcome"]
)

/** Hedged requests, by public model and outcome: won-by-1 (the first attempt won anyway), won-by-2…, or failed. */
export const hedges = new Family(
  "llm_proxy_hedges_total",
  "Requests that started hedged attempts, by public model and outcome (won-by-<n>, failed)",
  "counter",
  ["model", "outcome"]
)

const families: ReadonlyArray<Family> = [
  httpRequests,
  httpDuration,
  httpInFlight,
  upstreamAttempts,
  tokens,
  storeErrors,
  configReloads,
  limitRefusals,
  timeToFirstToken,
  timePerOutputToken,
  upstreamDuration,
  overhead,
  streamsActive,
  retries,
  fallbacks,
  cacheRequests,
  cacheWrites,
  hedges
]

/** The routes counted by name; anything else is `other`, so that scanners cannot grow the label set. */
const knownRoutes = new Set([
  "/health",
  "/metrics",
  "/v1/models",
  "/v1/llm/models",
  "/v1/chat/completions",
  "/v1/embeddings",
  "/v1/responses",
  "/v1/messages",
  "/v1/messages/count_tokens",
  "/openapi.json",
  "/docs",
  "/admin/keys",
  "/admin/usage",
  "/ready"
])

/** The route label of a request path: the path itself when known, `/v1/models/{model}`, `/v1/responses/{id}`, or `other`. */
export const routeOf = (url: string): string => {
  const path = url.split("?")[0] ?? "/"
  if (knownRoutes.has(path)) return path
  if (path.startsWith("/v1/models/")) return "/v1/models/{model}"
  return path.startsWith("/v1/responses/") && path.indexOf("/", 14) === -1 ? "/v1/responses/{id}" : "other"
}

/** Records usage (when the upstream reported it) against the public model that served. */
export const recordUsage = (model: string, usage: { readonly prompt_tokens: number; readonly completion_tokens: number } | null | undefined) => {
  if (usage == null) return
  tokens.update(usage.prompt_tokens, model, "prompt")
  tokens.update(usage.completion_tokens, model, "completion")
}

const metricName = (name: string) => name.replace(/[^a-zA-Z0-9_:]/g, "_")
const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')
const labelText = (labels: ReadonlyArray<readonly [string, string]>) =>
  labels.length === 0 ? "" : `{${labels.map(([key, value]) => `${metricName(key)}="${escapeLabel(value)}"`).join(",")}}`
const labelsOf = (tags: ReadonlyArray<MetricLabel.MetricLabel>, extra: ReadonlyArray<readonly [string, string]> = []) =>
  labelText([...tags.map((tag) => [tag.key, tag.value] as const), ...extra])
const numberText = (value: number | bigint) =>
  typeof value === "bigint" ? value.toString() : Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : value < 0 ? "-Inf" : "NaN"

/** One series of a family as plain data (a worker's report to its primary; what the renderer reads). */
export interface SeriesData {
  readonly labels: ReadonlyArray<readonly [string, string]>
  /** A counter's or gauge's value; a histogram's count. */
  readonly value: number
  /** A histogram's cumulative counts, one per bound. */
  readonly buckets: ReadonlyArray<number>
  readonly sum: number
}

/** A family as plain data: its name, help, type and histogram bounds, and its series. */
export interface FamilyData {
  readonly name: string
  readonly help: string
  readonly type: "counter" | "gauge" | "histogram"
  readonly bounds: ReadonlyArray<number>
  readonly series: ReadonlyArray<SeriesData>
}

/** A copy of the gateway's families as they are now. */
export const snapshotFamilies = (): ReadonlyArray<FamilyData> =>
  families.map((family) => ({
    name: family.name,
    help: family.help,
    type: family.type,
    bounds: family.bounds,
    series: [...family.series.values()].map((series) => ({ labels: series.labels, value: series.value, buckets: [...series.buckets], sum: series.sum }))
  }))

const renderFamily = (family: Omit<FamilyData, "series">, seriesOf: Iterable<SeriesData>): string => {
  const lines: Array<string> = []
  for (const series of seriesOf) {
    if (family.type !== "histogram") {
      lines.push(`${family.name}${labelText(series.labels)} ${numberText(series.value)}`)
      continue
    }
    family.bounds.forEach((bound, index) =>
      lines.push(`${family.name}_bucket${labelText([...series.labels, ["le", numberText(bound)]])} ${series.buckets[index]}`)
    )
    lines.push(`${family.name}_bucket${labelText([...series.labels, ["le", "+Inf"]])} ${series.value}`)
    lines.push(`${family.name}_sum${labelText(series.labels)} ${numberText(series.sum)}`)
    lines.push(`${family.name}_count${labelText(series.labels)} ${series.value}`)
  }
  return lines.length === 0 ? "" : `# HELP ${family.name} ${family.help}\n# TYPE ${family.name} ${family.type}\n${lines.join("\n")}\n`
}

/**
 * The Prometheus text format (0.0.4) of the gateway's metrics and of the Effect metrics in `pairs` (the runtime's
 * own, e.g. fiber counts): HELP and TYPE once per name, then the samples.
 */
export const renderPrometheus = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string =>
  families.map((family) => renderFamily(family, family.series.values())).join("") + renderEffectMetrics(pairs)

/** The same text for families given as data (e.g. merged across a group's workers). */
export const renderSnapshot = (data: ReadonlyArray<FamilyData>, pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string =>
  data.map((family) => renderFamily(family, family.series)).join("") + renderEffectMetrics(pairs)

const renderEffectMetrics = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, { type: string; help: string; lines: Array<string> }>()
  const family = (name: string, type: string, help: string) => {
    const found = families.get(name) ?? { type, help, lines: [] }
    families.set(name, found)
    return found.lines
  }
  for (const { metricKey, metricState } of pairs) {
    const name = metricName(metricKey.name)
    const help = Option.getOrElse(metricKey.description, () => name)
    const tags = metricKey.tags
    if (MetricState.isCounterState(metricState)) {
      family(name, "counter", help).push(`${name}${labelsOf(tags)} ${numberText(metricState.count)}`)
    } else if (MetricState.isGaugeState(metricState)) {
      family(name, "gauge", help).push(`${name}${labelsOf(tags)} ${numberText(metricState.value)}`)
    } else if (MetricState.isHistogramState(metricState)) {
      const lines = family(name, "histogram", help)
      for (const [bound, count] of metricState.buckets) {
        lines.push(`${name}_bucket${labelsOf(tags, [["le", numberText(bound)]])} ${count}`)
      }
      if (!metricState.buckets.some(([bound]) => bound === Number.POSITIVE_INFINITY)) {
        lines.push(`${name}_bucket${labelsOf(tags, [["le", "+Inf"]])} ${metricState.count}`)
      }
      lines.push(`${name}_sum${labelsOf(tags)} ${numberText(metricState.sum)}`)
      lines.push(`${name}_count${labelsOf(tags)} ${metricState.count}`)
    } else if (MetricState.isFrequencyState(metricState)) {
      const lines = family(name, "counter", help)
      for (const [value, count] of metricState.occurrences) lines.push(`${name}${labelsOf(tags, [["value", value]])} ${count}`)
    } else if (MetricState.isSummaryState(metricState)) {
      const lines = family(name, "summary", help)
      for (const [quantile, value] of metricState.quantiles) {
        if (Option.isSome(value)) lines.push(`${name}${labelsOf(tags, [["quantile", String(quantile)]])} ${numberText(value.value)}`)
      }
      lines.push(`${name}_sum${labelsOf(tags)} ${numberText(metricState.sum)}`)
      lines.push(`${name}_count${labelsOf(tags)} ${metricState.count}`)
    }
  }
  let text = ""
  for (const [name, { help, lines, type }] of families) {
    text += `# HELP ${name} ${help.replace(/\n/g, " ")}\n# TYPE ${name} ${type}\n${lines.join("\n")}\n`
  }
  return text
}
