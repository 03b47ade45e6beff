/**
 * The trace exporter's settings, from OpenTelemetry's standard variables (the SDK environment specification):
 * tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, off otherwise.
 * A value the specification does not allow stops start-up with one line naming the variable, like every setting.
 *
 * The parsing is a pure function of a variable lookup, so tests (and embedding apps) build settings in-process.
 */
import { Either, Redacted } from "effect"

/** The samplers of `OTEL_TRACES_SAMPLER` this gateway knows. */
export const samplerNames = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio"
] as const
export type SamplerName = (typeof samplerNames)[number]

/** How spans reach the collector: OTLP over HTTP, as protobuf or JSON. */
export type OtlpProtocol = "http/protobuf" | "http/json"

/** The batch span processor's bounds: a collector that is down or slow loses spans, never requests. */
export interface BatchSettings {
  /** `OTEL_BSP_SCHEDULE_DELAY`: time between two exports. */
  readonly scheduleDelayMs: number
  /** `OTEL_BSP_EXPORT_TIMEOUT`: how long one export may run. */
  readonly exportTimeoutMs: number
  /** `OTEL_BSP_MAX_QUEUE_SIZE`: spans waiting for export; past it new spans are dropped. */
  readonly maxQueueSize: number
  /** `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans per export request (at most the queue size). */
  readonly maxExportBatchSize: number
}

/** Tracing as configured; its absence means tracing is off. */
export interface TraceSettings {
  /** Where spans are posted: the traces endpoint, a full URL. */
  readonly endpoint: string
  readonly protocol: OtlpProtocol
  /** Headers sent with every export (they often carry a collector's key, hence Redacted). */
  readonly headers: Redacted.Redacted<Readonly<Record<string, string>>>
  /** `OTEL_EXPORTER_OTLP_TIMEOUT`: one export request's bound; also the bound of the flush at shutdown. */
  readonly timeoutMs: number
  readonly serviceName: string
  /** `OTEL_RESOURCE_ATTRIBUTES`, `service.name` excepted. */
  readonly resourceAttributes: Readonly<Record<string, string>>
  readonly sampler: SamplerName
  /** The ratio of the `traceidratio` samplers (`OTEL_TRACES_SAMPLER_ARG`), from 0 to 1. */
  readonly samplerRatio: number
  readonly batch: BatchSettings
}

/** Every variable read here, for a caller that looks them up itself. */
export const variableNames = [
  "OTEL_SDK_DISABLED",
  "OTEL_TRACES_EXPORTER",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_EXPORTER_OTLP_PROTOCOL",
  "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
  "OTEL_EXPORTER_OTLP_HEADERS",
  "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
  "OTEL_EXPORTER_OTLP_TIMEOUT",
  "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
  "OTEL_SERVICE_NAME",
  "OTEL_RESOURCE_ATTRIBUTES",
  "OTEL_TRACES_SAMPLER",
  "OTEL_TRACES_SAMPLER_ARG",
  "OTEL_BSP_SCHEDULE_DELAY",
  "OTEL_BSP_EXPORT_TIMEOUT",
  "OTEL_BSP_MAX_QUEUE_SIZE",
  "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
] as const
export type VariableName = (typeof variableNames)[number]

/** What is wrong, and with which variable. */
export interface SettingProblem {
  readonly variable: VariableName
  readonly message: string
}

export const defaultServiceName = "llm-proxy"

export const defaultBatch: BatchSettings = { scheduleDelayMs: 5000, exportTimeoutMs: 30_000, maxQueueSize: 2048, maxExportBatchSize: 512 }

class Problem {
  constructor(readonly problem: SettingProblem) {}
}

const fail = (variable: VariableName, message: string): never => {
  throw new Problem({ variable, message })
}

/** The specification: an empty value is the same as an unset one. */
const read = (lookup: (name: VariableName) => string | undefined, name: VariableName): string | undefined => {
  const value = lookup(name)?.trim()
  return value === undefined || value === "" ? undefined : value
}

const integer = (lookup: (name: VariableName) => string | undefined, name: VariableName, fallback: number, min: number, max: number): number => {
  const text = read(lookup, name)
  if (text === undefined) return fallback
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN
  if (!(value >= min && value <= max)) fail(name, `${name} must be an integer from ${min} to ${max}, got "${text}"`)
  return value
}

const httpUrl = (name: VariableName, text: string): URL => {
  let url: URL | undefined
  try {
    url = new URL(text)
  } catch {
    url = undefined
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    return fail(name, `${name} must be an http:// or https:// URL, got "${text}"`)
  }
  return url
}

/** `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL: the traces path is appended to it, with one slash. */
const tracesUrlOf = (base: URL): string => {
  const path = base.pathname.endsWith("/") ? `${base.pathname}v1/traces` : `${base.pathname}/v1/traces`
  return `${base.origin}${path}${base.search}`
}

const headerName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/**
 * A list of `key=value` pairs separated by commas, values percent-encoded (the W3C Baggage format the specification
 * names). The message never repeats a value: headers often carry a secret.
 */
const keyValues = (name: VariableName, text: string, keys: RegExp): Record<string, string> => {
  const pairs: Record<string, string> = {}
  const entries = text.split(",")
  entries.forEach((entry, index) => {
    // An empty member (a trailing comma, say) says nothing: skipped.
    if (entry.trim() === "") return
    const equals = entry.indexOf("=")
    const key = equals === -1 ? "" : entry.slice(0, equals).trim()
    let value: string | undefined
    try {
      value = equals === -1 ? undefined : decodeURIComponent(entry.slice(equals + 1).trim())
    } catch {
      value = undefined
    }
    if (!keys.test(key) || value === undefined) {
      fail(name, `${name} must be key=value pairs separated by commas, values percent-encoded; entry ${index + 1} of ${entries.length} is not`)
    }
    pairs[key] = value!
  })
  return pairs
}

const protocolOf = (lookup: (name: VariableName) => string | undefined): OtlpProtocol => {
  const name: VariableName = read(lookup, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") === undefined ? "OTEL_EXPORTER_OTLP_PROTOCOL" : "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
  const text = read(lookup, name) ?? "http/protobuf"
  if (text === "http/protobuf" || text === "http/json") return text
  return fail(name, `${name} must be http/protobuf or http/json (grpc is not supported), got "${text}"`)
}

const samplerOf = (lookup: (name: VariableName) => string | undefined): { readonly sampler: SamplerName; readonly samplerRatio: number } => {
  const text = read(lookup, "OTEL_TRACES_SAMPLER") ?? "parentbased_always_on"
  const sampler = samplerNames.find((known) => known === text)
  if (sampler === undefined) fail("OTEL_TRACES_SAMPLER", `OTEL_TRACES_SAMPLER must be one of ${samplerNames.join(", ")}, got "${text}"`)
  const arg = read(lookup, "OTEL_TRACES_SAMPLER_ARG")
  // The argument means something to the ratio samplers only; the others ignore it, as the specification says.
  if (arg === undefined || !sampler!.endsWith("traceidratio")) return { sampler: sampler!, samplerRatio: 1 }
  const ratio = /^(0(\.\d+)?|1(\.0+)?|\.\d+)$/.test(arg) ? Number(arg) : Number.NaN
  if (!(ratio >= 0 && ratio <= 1)) fail("OTEL_TRACES_SAMPLER_ARG", `OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1 for ${sampler}, got "${arg}"`)
  return { sampler: sampler!, samplerRatio: ratio }
}

const booleanOf = (lookup: (name: VariableName) => string | undefined, name: VariableName): boolean => {
  const text = read(lookup, name)?.toLowerCase()
  if (text === undefined || text === "false") return false
  if (text === "true") return true
  return fail(name, `${name} must be true or false, got "${text}"`)
}

const parse = (lookup: (name: VariableName) => string | undefined): TraceSettings | undefined => {
  const disabled = booleanOf(lookup, "OTEL_SDK_DISABLED")
  const exporters = (read(lookup, "OTEL_TRACES_EXPORTER") ?? "otlp").split(",").map((exporter) => exporter.trim())
  for (const exporter of exporters) {
    if (exporter !== "otlp" && exporter !== "none") fail("OTEL_TRACES_EXPORTER", `OTEL_TRACES_EXPORTER must be otlp or none, got "${exporter}"`)
  }
  const tracesEndpoint = read(lookup, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
  const baseEndpoint = read(lookup, "OTEL_EXPORTER_OTLP_ENDPOINT")
  // Every variable is checked, even when tracing stays off: a mistake shows at the first start, not the day it is on.
  const endpoint =
    tracesEndpoint !== undefined
      ? httpUrl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", tracesEndpoint).href
      : baseEndpoint !== undefined
        ? tracesUrlOf(httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT", baseEndpoint))
        : undefined
  const protocol = protocolOf(lookup)
  const generalHeaders = read(lookup, "OTEL_EXPORTER_OTLP_HEADERS")
  const traceHeaders = read(lookup, "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
  // The traces variable wins key by key, as the OpenTelemetry JavaScript exporters merge them.
  const headers = {
    ...(generalHeaders === undefined ? {} : keyValues("OTEL_EXPORTER_OTLP_HEADERS", generalHeaders, headerName)),
    ...(traceHeaders === undefined ? {} : keyValues("OTEL_EXPORTER_OTLP_TRACES_HEADERS", traceHeaders, headerName))
  }
  const timeoutName: VariableName = read(lookup, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") === undefined ? "OTEL_EXPORTER_OTLP_TIMEOUT" : "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
  const timeoutMs = integer(lookup, timeoutName, 10_000, 1, 600_000)
  const attributesText = read(lookup, "OTEL_RESOURCE_ATTRIBUTES")
  const attributes: Record<string, string> =
    attributesText === undefined ? {} : keyValues("OTEL_RESOURCE_ATTRIBUTES", attributesText, /^[^\s,=]+$/)
  const { "service.name": attributeServiceName, ...resourceAttributes } = attributes
  const serviceName = read(lookup, "OTEL_SERVICE_NAME") ?? attributeServiceName ?? defaultServiceName
  const { sampler, samplerRatio } = samplerOf(lookup)
  const maxQueueSize = integer(lookup, "OTEL_BSP_MAX_QUEUE_SIZE", defaultBatch.maxQueueSize, 1, 1_000_000)
  const batch: BatchSettings = {
    scheduleDelayMs: integer(lookup, "OTEL_BSP_SCHEDULE_DELAY", defaultBatch.scheduleDelayMs, 0, 3_600_000),
    exportTimeoutMs: integer(lookup, "OTEL_BSP_EXPORT_TIMEOUT", defaultBatch.exportTimeoutMs, 1, 3_600_000),
    maxQueueSize,
    maxExportBatchSize: integer(lookup, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", Math.min(defaultBatch.maxExportBatchSize, maxQueueSize), 1, maxQueueSize)
  }
  if (endpoint === undefined || disabled || !exporters.includes("otlp")) return undefined
  return {
    endpoint,
    protocol,
    headers: Redacted.make(headers),
    timeoutMs,
    serviceName,
    resourceAttributes,
    sampler,
    samplerRatio,
    batch
  }
}

/**
 * The trace settings the variables describe: `undefined` when tracing is off (no endpoint, `OTEL_SDK_DISABLED=true`
 * or `OTEL_TRACES_EXPORTER=none`), or the first problem found.
 */
export const traceSettingsOf = (lookup: (name: VariableName) => string | undefined): Either.Either<TraceSettings | undefined, SettingProblem> => {
  try {
    return Either.right(parse(lookup))
  } catch (thrown) {
    if (thrown instanceof Problem) return Either.left(thrown.problem)
    throw thrown
  }
}

/** The same, from a plain map of variables (a test's, say). */
export const traceSettingsFrom = (variables: Readonly<Record<string, string>>): Either.Either<TraceSettings | undefined, SettingProblem> =>
  traceSettingsOf((name) => variables[name])
