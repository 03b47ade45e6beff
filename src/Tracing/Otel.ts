/**
 * Tracing on: OpenTelemetry through @effect/opentelemetry (the tracer provider's lifecycle, the resource, Effect's
 * own tracer bridged so that spans of Effect code nest), and the OTLP/HTTP exporter behind a bounded batch queue.
 * Loaded only when tracing is on.
 *
 * The gateway's own spans are made with the OpenTelemetry tracer directly rather than Effect's span API: their
 * status follows the HTTP and GenAI conventions (unset unless an error), their attributes keep their types, and a
 * failed attempt costs no rendering of its Cause. They never carry a prompt, a completion or a secret.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import * as Resource from "@effect/opentelemetry/Resource"
import * as OtelTracer from "@effect/opentelemetry/Tracer"
import { createTraceState, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api"
import type { Attributes, Span, SpanContext, Tracer } from "@opentelemetry/api"
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { OTLPTraceExporter as ProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto"
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler
} from "@opentelemetry/sdk-trace-base"
import type { Sampler, SpanExporter } from "@opentelemetry/sdk-trace-base"
import { Cause, Duration, Effect, Layer, Redacted, Runtime } from "effect"
import type { RequestRecord } from "../Core/RequestRecord.js"
import type { ChatCompletion, ChatCompletionChunk } from "../OpenAi/Schemas.js"
import type { ProviderError } from "../Providers/ProviderError.js"
import type { TraceSettings } from "./Settings.js"
import { parseTraceparent } from "./TraceContext.js"
import { Tracing } from "./Tracing.js"
import type { ArrivingRequest, Attempt, IncomingHeaders, StreamEnd, StreamTrace, TracingService } from "./Tracing.js"

/** `gen_ai.provider.name` for each provider kind: the GenAI conventions' well-known values, else the kind. */
const providerNames: Readonly<Record<string, string>> = { openai: "openai", anthropic: "anthropic", gemini: "gcp.gemini" }
export const providerNameOf = (kind: string): string => providerNames[kind] ?? kind

const single = (headers: IncomingHeaders, name: string): string | undefined => {
  const value = headers[name]
  return typeof value === "string" ? value : undefined
}

/** `server.address` and `server.port` from a Host header (`name`, `name:port`, `[v6]:port`). */
const hostOf = (host: string | undefined): { readonly address?: string; readonly port?: number } => {
  if (host === undefined || host === "") return {}
  const close = host.startsWith("[") ? host.indexOf("]") : -1
  const colon = host.indexOf(":", close === -1 ? 0 : close)
  const address = close !== -1 ? host.slice(1, close) : colon === -1 ? host : host.slice(0, colon)
  const port = colon === -1 ? Number.NaN : Number(host.slice(colon + 1))
  return Number.isInteger(port) && port > 0 && port < 65536 ? { address, port } : { address }
}

/** The context a request's server span starts in: the client's trace when it sent a valid `traceparent`. */
const remoteContext = (headers: IncomingHeaders) => {
  const parent = parseTraceparent(single(headers, "traceparent"))
  if (parent === undefined) return ROOT_CONTEXT
  const state = single(headers, "tracestate")
  const context: SpanContext = { ...parent, isRemote: true }
  return trace.setSpanContext(ROOT_CONTEXT, state === undefined || state.length > 512 ? context : { ...context, traceState: createTraceState(state) })
}

const isCount = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/** What an answer says about itself: its id, the model the upstream named, why it finished, its tokens. */
interface ResponseFacts {
  id: string | undefined
  model: string | undefined
  readonly finishReasons: Array<string>
  inputTokens: number | undefined
  outputTokens: number | undefined
  cachedTokens: number | undefined
}

const noteUsage = (facts: ResponseFacts, usage: unknown) => {
  if (typeof usage !== "object" || usage === null) return
  const { completion_tokens, prompt_tokens, prompt_tokens_details } = usage as {
    readonly prompt_tokens?: unknown
    readonly completion_tokens?: unknown
    readonly prompt_tokens_details?: { readonly cached_tokens?: unknown } | null
  }
  if (isCount(prompt_tokens)) facts.inputTokens = prompt_tokens
  if (isCount(completion_tokens)) facts.outputTokens = completion_tokens
  const cached = prompt_tokens_details?.cached_tokens
  if (isCount(cached)) facts.cachedTokens = cached
}

const setResponse = (span: Span, facts: ResponseFacts) => {
  if (facts.id !== undefined) span.setAttribute("gen_ai.response.id", facts.id)
  if (facts.model !== undefined) span.setAttribute("gen_ai.response.model", facts.model)
  if (facts.finishReasons.length > 0) span.setAttribute("gen_ai.response.finish_reasons", facts.finishReasons)
  if (facts.inputTokens !== undefined) span.setAttribute("gen_ai.usage.input_tokens", facts.inputTokens)
  if (facts.outputTokens !== undefined) span.setAttribute("gen_ai.usage.output_tokens", facts.outputTokens)
  if (facts.cachedTokens !== undefined) span.setAttribute("gen_ai.usage.cache_read.input_tokens", facts.cachedTokens)
}

/**
 * Now, in epoch milliseconds with a fraction, from the monotonic clock. Every span's start and end is given as this:
 * left to itself the SDK starts each span at `Date.now()` (whole milliseconds) and ends it at that plus the span's
 * duration, so a parent and a child ending within the same millisecond could appear in either order.
 */
const preciseNow = (): number => performance.timeOrigin + performance.now()

/** An attempt that failed: its reason (never the upstream's message, which may quote the prompt). */
const endFailed = (span: Span, error: ProviderError) => {
  span.setAttributes({ "llm_proxy.outcome": error.reason, "error.type": error.reason })
  if (error.status !== undefined) span.setAttribute("http.response.status_code", error.status)
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.reason })
  span.end(preciseNow())
}

const endDefect = (span: Span) => {
  span.setAttributes({ "llm_proxy.outcome": "defect", "error.type": "defect" })
  span.setStatus({ code: SpanStatusCode.ERROR, message: "defect" })
  span.end(preciseNow())
}

const endCancelled = (span: Span) => {
  span.setAttribute("llm_proxy.outcome", "cancelled")
  span.end(preciseNow())
}

/** The service over an OpenTelemetry tracer. */
export const make = (tracer: Tracer): TracingService => {
  const startServer = (request: ArrivingRequest): Span => {
    const { headers } = request
    const host = hostOf(single(headers, "host"))
    const attributes: Attributes = {
      "http.request.method": request.method,
      "http.route": request.path,
      "url.path": request.path,
      "url.scheme": "http",
      "llm_proxy.request.id": request.requestId
    }
    if (request.httpVersion !== undefined) attributes["network.protocol.version"] = request.httpVersion
    if (host.address !== undefined) attributes["server.address"] = host.address
    const port = host.port ?? request.localPort
    if (port !== undefined) attributes["server.port"] = port
    if (request.clientAddress !== undefined) attributes["client.address"] = request.clientAddress
    const agent = single(headers, "user-agent")
    if (agent !== undefined) attributes["user_agent.original"] = agent
    return tracer.startSpan(`${request.method} ${request.path}`, { kind: SpanKind.SERVER, attributes, startTime: preciseNow() }, remoteContext(headers))
  }

  const endServer = (span: Span, record: RequestRecord, status: number | undefined, clientLeft: boolean) => {
    // The request's GenAI facts are on its attempts' spans only: a backend that sums gen_ai.usage must not count twice.
    if (record.keyId !== undefined) span.setAttribute("llm_proxy.key.id", record.keyId)
    if (record.model !== undefined) span.setAttribute("llm_proxy.model", record.model)
    if (record.provider !== undefined) span.setAttribute("llm_proxy.provider", record.provider)
    if (record.attempts > 0) span.setAttribute("llm_proxy.attempts", record.attempts)
    if (clientLeft) span.setAttribute("llm_proxy.client_closed", true)
    if (status !== undefined) {
      span.setAttribute("http.response.status_code", status)
      if (status >= 500) {
        span.setAttribute("error.type", String(status))
        span.setStatus({ code: SpanStatusCode.ERROR })
      }
    }
    span.end(preciseNow())
  }

  const startAttempt = (parent: Span, attempt: Attempt): Span => {
    const { deployment, request } = attempt
    const attributes: Attributes = {
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": providerNameOf(String(deployment.providerKind)),
      "gen_ai.request.model": deployment.name,
      "llm_proxy.upstream.model": deployment.upstreamModel,
      "gen_ai.request.stream": request.stream === true,
      "llm_proxy.attempt": attempt.number,
      "llm_proxy.retry": attempt.retry
    }
    const maxTokens = request.max_completion_tokens ?? request.max_tokens
    if (typeof maxTokens === "number") attributes["gen_ai.request.max_tokens"] = maxTokens
    if (typeof request.temperature === "number") attributes["gen_ai.request.temperature"] = request.temperature
    if (typeof request.top_p === "number") attributes["gen_ai.request.top_p"] = request.top_p
    if (typeof request.n === "number" && request.n !== 1) attributes["gen_ai.request.choice.count"] = request.n
    if (attempt.keyId !== undefined) attributes["llm_proxy.key.id"] = attempt.keyId
    return tracer.startSpan(`chat ${deployment.name}`, { kind: SpanKind.CLIENT, attributes, startTime: preciseNow() }, trace.setSpan(ROOT_CONTEXT, parent))
  }

  const within = <A>(span: Span, effect: Effect.Effect<A, ProviderError>): Effect.Effect<A, ProviderError> =>
    OtelTracer.withSpanContext(effect, span.spanContext()).pipe(
      Effect.onExit((exit) => {
        if (exit._tag === "Success") return Effect.void
        return Effect.sync(() => {
          const failure = Cause.failureOption(exit.cause)
          if (failure._tag === "Some") endFailed(span, failure.value)
          else if (Cause.isInterruptedOnly(exit.cause)) endCancelled(span)
          else endDefect(span)
        })
      })
    )

  const completed = (span: Span, completion: ChatCompletion) => {
    const facts: ResponseFacts = {
      id: completion.id,
      model: completion.model,
      finishReasons: [],
      inputTokens: undefined,
      outputTokens: undefined,
      cachedTokens: undefined
    }
    for (const choice of completion.choices) if (choice.finish_reason != null) facts.finishReasons.push(choice.finish_reason)
    noteUsage(facts, completion.usage)
    setResponse(span, facts)
    span.setAttribute("llm_proxy.outcome", "ok")
    span.end(preciseNow())
  }

  const streaming = (span: Span, firstChunkMs: number): StreamTrace => {
    span.setAttribute("gen_ai.response.time_to_first_chunk", firstChunkMs / 1000)
    const facts: ResponseFacts = {
      id: undefined,
      model: undefined,
      finishReasons: [],
      inputTokens: undefined,
      outputTokens: undefined,
      cachedTokens: undefined
    }
    let ended = false
    const batch = (chunks: ReadonlyArray<ChatCompletionChunk>) => {
      for (const chunk of chunks) {
        if (facts.id === undefined) {
          facts.id = chunk.id
          facts.model = chunk.model
        }
        for (const choice of chunk.choices) if (choice.finish_reason != null) facts.finishReasons.push(choice.finish_reason)
        if (chunk.usage != null) noteUsage(facts, chunk.usage)
      }
    }
    const end = (how: StreamEnd) => {
      if (ended) return
      ended = true
      setResponse(span, facts)
      if (how === "end") {
        span.setAttribute("llm_proxy.outcome", "ok")
        span.end(preciseNow())
      } else if (how === "cancelled") endCancelled(span)
      else if (how._tag === "ProviderError") endFailed(span, how)
      else endDefect(span)
    }
    return { batch, end }
  }

  return { startServer, endServer, startAttempt, within, completed, streaming }
}

const samplerOf = ({ sampler, samplerRatio }: TraceSettings): Sampler => {
  switch (sampler) {
    case "always_on":
      return new AlwaysOnSampler()
    case "always_off":
      return new AlwaysOffSampler()
    case "traceidratio":
      return new TraceIdRatioBasedSampler(samplerRatio)
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() })
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() })
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(samplerRatio) })
  }
}

/** Export failures are logged at most once per this many milliseconds (a collector that is down fails every batch). */
const failureLogIntervalMs = 60_000

/** The exporter, with its failures logged (bounded): the spans of a failed export are dropped, nothing else happens. */
const reporting = (exporter: SpanExporter, runtime: Runtime.Runtime<never>, endpoint: string): SpanExporter => {
  let lastLog = Number.NEGATIVE_INFINITY
  return {
    export: (spans, done) =>
      exporter.export(spans, (result) => {
        // ExportResultCode.SUCCESS is 0.
        if (result.code !== 0 && Date.now() - lastLog >= failureLogIntervalMs) {
          lastLog = Date.now()
          Runtime.runFork(runtime)(
            Effect.logWarning("trace export failed; its spans are dropped").pipe(
              Effect.annotateLogs({ endpoint, spans: spans.length, error: (result.error?.message ?? "unknown error").slice(0, 200) })
            )
          )
        }
        done(result)
      }),
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve()
  }
}

/**
 * The tracer provider with its batch processor and exporter, Effect's tracer bridged to it, and the `Tracing`
 * service. Releasing it flushes the queue, bounded by the export timeout.
 */
export const layer = (settings: TraceSettings): Layer.Layer<Tracing> =>
  Layer.unwrapEffect(
    Effect.map(Effect.runtime<never>(), (runtime) => {
      const options = { url: settings.endpoint, headers: { ...Redacted.value(settings.headers) }, timeoutMillis: settings.timeoutMs }
      const exporter = settings.protocol === "http/json" ? new JsonExporter(options) : new ProtobufExporter(options)
      const processor = new BatchSpanProcessor(reporting(exporter, runtime, settings.endpoint), {
        maxQueueSize: settings.batch.maxQueueSize,
        maxExportBatchSize: settings.batch.maxExportBatchSize,
        scheduledDelayMillis: settings.batch.scheduleDelayMs,
        exportTimeoutMillis: settings.batch.exportTimeoutMs
      })
      return Layer.effect(Tracing, Effect.map(OtelTracer.OtelTracer, make)).pipe(
        Layer.provideMerge(OtelTracer.layer),
        Layer.provide(NodeSdk.layerTracerProvider(processor, { sampler: samplerOf(settings), shutdownTimeout: Duration.millis(settings.timeoutMs) })),
        Layer.provide(Resource.layer({ serviceName: settings.serviceName, attributes: settings.resourceAttributes }))
      )
    })
  )
