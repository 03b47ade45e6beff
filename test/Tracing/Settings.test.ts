/**
 * The OTEL_* variables as the SDK environment specification defines them, and the W3C traceparent: what turns
 * tracing on, which variable wins, and that a bad value names its variable (and never repeats a header's value).
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Redacted } from "effect"
import { loadSettings } from "../../src/Config.js"
import { defaultBatch, traceSettingsFrom, variableNames } from "../../src/Tracing/Settings.js"
import type { SettingProblem, TraceSettings } from "../../src/Tracing/Settings.js"
import { formatTraceparent, parseTraceparent } from "../../src/Tracing/TraceContext.js"
import { runMainUntilExit } from "../support/Main.js"

const on = (variables: Record<string, string>): TraceSettings => {
  const parsed = traceSettingsFrom(variables)
  if (Either.isLeft(parsed)) throw new Error(`unexpected problem: ${parsed.left.message}`)
  if (parsed.right === undefined) throw new Error("tracing is off")
  return parsed.right
}

const off = (variables: Record<string, string>) => expect(Either.getOrThrow(traceSettingsFrom(variables))).toBeUndefined()

const problem = (variables: Record<string, string>): SettingProblem => {
  const parsed = traceSettingsFrom(variables)
  if (Either.isRight(parsed)) throw new Error("expected a problem")
  return parsed.left
}

const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }

describe("trace settings", () => {
  it("are off without an endpoint, with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none", () => {
    off({})
    off({ OTEL_EXPORTER_OTLP_ENDPOINT: "" })
    off({ ...endpoint, OTEL_SDK_DISABLED: "true" })
    off({ ...endpoint, OTEL_TRACES_EXPORTER: "none" })
    off({ OTEL_SERVICE_NAME: "x", OTEL_TRACES_SAMPLER: "always_on" })
  })

  it("take the defaults", () => {
    const settings = on(endpoint)
    expect(settings).toMatchObject({
      endpoint: "http://collector:4318/v1/traces",
      protocol: "http/protobuf",
      timeoutMs: 10_000,
      serviceName: "llm-proxy",
      resourceAttributes: {},
      sampler: "parentbased_always_on",
      samplerRatio: 1,
      batch: defaultBatch
    })
    expect(Redacted.value(settings.headers)).toEqual({})
  })

  it("append /v1/traces to the base endpoint; the traces endpoint is used as it is, and wins", () => {
    expect(on({ OTEL_EXPORTER_OTLP_ENDPOINT: "https://collector:4318/" }).endpoint).toBe("https://collector:4318/v1/traces")
    expect(on({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://gw/otlp" }).endpoint).toBe("http://gw/otlp/v1/traces")
    expect(on({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://gw/custom/path" }).endpoint).toBe("http://gw/custom/path")
    expect(on({ ...endpoint, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://other:9/t" }).endpoint).toBe("http://other:9/t")
    expect(problem({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" }).variable).toBe("OTEL_EXPORTER_OTLP_ENDPOINT")
    expect(problem({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "ftp://x" }).variable).toBe("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
  })

  it("read the protocol, the traces variable first", () => {
    expect(on({ ...endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" }).protocol).toBe("http/json")
    expect(on({ ...endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/protobuf" }).protocol).toBe("http/protobuf")
    expect(problem({ ...endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toMatchObject({ variable: "OTEL_EXPORTER_OTLP_PROTOCOL" })
    expect(problem({ ...endpoint, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/xml" })).toMatchObject({ variable: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" })
  })

  it("merge the headers, the traces variable winning key by key, values percent-decoded", () => {
    const settings = on({
      ...endpoint,
      OTEL_EXPORTER_OTLP_HEADERS: "api-key=general, x-tenant=a%20b,",
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: "api-key=traces%3D1"
    })
    expect(Redacted.value(settings.headers)).toEqual({ "api-key": "traces=1", "x-tenant": "a b" })
    expect(String(settings.headers)).not.toContain("traces")
    const bad = problem({ ...endpoint, OTEL_EXPORTER_OTLP_HEADERS: "api-key=s3cret,broken" })
    expect(bad.variable).toBe("OTEL_EXPORTER_OTLP_HEADERS")
    expect(bad.message).toContain("entry 2 of 2")
    expect(bad.message).not.toContain("s3cret")
    expect(problem({ ...endpoint, OTEL_EXPORTER_OTLP_TRACES_HEADERS: "bad name=1" }).variable).toBe("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
    expect(problem({ ...endpoint, OTEL_EXPORTER_OTLP_HEADERS: "k=%E0%A4%A" }).variable).toBe("OTEL_EXPORTER_OTLP_HEADERS")
  })

  it("read the timeout, the traces variable first", () => {
    expect(on({ ...endpoint, OTEL_EXPORTER_OTLP_TIMEOUT: "2500" }).timeoutMs).toBe(2500)
    expect(on({ ...endpoint, OTEL_EXPORTER_OTLP_TIMEOUT: "2500", OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: "700" }).timeoutMs).toBe(700)
    expect(problem({ ...endpoint, OTEL_EXPORTER_OTLP_TIMEOUT: "10s" }).variable).toBe("OTEL_EXPORTER_OTLP_TIMEOUT")
  })

  it("name the service: OTEL_SERVICE_NAME, else service.name of OTEL_RESOURCE_ATTRIBUTES, else llm-proxy", () => {
    expect(on({ ...endpoint, OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attributes,team=ml%20ops" })).toMatchObject({
      serviceName: "from-attributes",
      resourceAttributes: { team: "ml ops" }
    })
    expect(on({ ...endpoint, OTEL_SERVICE_NAME: "gw", OTEL_RESOURCE_ATTRIBUTES: "service.name=other" }).serviceName).toBe("gw")
    expect(problem({ ...endpoint, OTEL_RESOURCE_ATTRIBUTES: "novalue" }).variable).toBe("OTEL_RESOURCE_ATTRIBUTES")
  })

  it("read the sampler and its argument as the specification defines them", () => {
    for (const sampler of ["always_on", "always_off", "parentbased_always_on", "parentbased_always_off"]) {
      // the argument means nothing to these: ignored, whatever it is
      expect(on({ ...endpoint, OTEL_TRACES_SAMPLER: sampler, OTEL_TRACES_SAMPLER_ARG: "whatever" })).toMatchObject({ sampler, samplerRatio: 1 })
    }
    expect(on({ ...endpoint, OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" })).toMatchObject({ sampler: "traceidratio", samplerRatio: 0.25 })
    expect(on({ ...endpoint, OTEL_TRACES_SAMPLER: "parentbased_traceidratio" })).toMatchObject({ samplerRatio: 1 })
    expect(on({ ...endpoint, OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0" }).samplerRatio).toBe(0)
    expect(problem({ ...endpoint, OTEL_TRACES_SAMPLER: "jaeger_remote" }).variable).toBe("OTEL_TRACES_SAMPLER")
    for (const arg of ["1.5", "-0.1", "half", "1e-2"]) {
      expect(problem({ ...endpoint, OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: arg }).variable).toBe("OTEL_TRACES_SAMPLER_ARG")
    }
  })

  it("read the batch processor's bounds", () => {
    expect(
      on({ ...endpoint, OTEL_BSP_SCHEDULE_DELAY: "100", OTEL_BSP_EXPORT_TIMEOUT: "2000", OTEL_BSP_MAX_QUEUE_SIZE: "100", OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "10" }).batch
    ).toEqual({ scheduleDelayMs: 100, exportTimeoutMs: 2000, maxQueueSize: 100, maxExportBatchSize: 10 })
    // a queue smaller than the default batch takes the queue's size as its batch
    expect(on({ ...endpoint, OTEL_BSP_MAX_QUEUE_SIZE: "100" }).batch.maxExportBatchSize).toBe(100)
    expect(problem({ ...endpoint, OTEL_BSP_MAX_QUEUE_SIZE: "100", OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "200" }).variable).toBe("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
  })

  it("check every variable even when tracing stays off", () => {
    expect(problem({ OTEL_TRACES_SAMPLER: "sometimes" }).variable).toBe("OTEL_TRACES_SAMPLER")
    expect(problem({ OTEL_SDK_DISABLED: "yes" }).variable).toBe("OTEL_SDK_DISABLED")
    expect(problem({ ...endpoint, OTEL_TRACES_EXPORTER: "zipkin" }).variable).toBe("OTEL_TRACES_EXPORTER")
  })

  it.effect("reach ProxySettings, and a bad one is a configuration error naming its variable", () =>
    Effect.gen(function* () {
      const load = (env: Record<string, string>) =>
        loadSettings.pipe(Effect.either, Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))
      const loaded = yield* load({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_SERVICE_NAME: "gw" })
      expect(Either.getOrThrow(loaded).tracing).toMatchObject({ endpoint: "http://127.0.0.1:4318/v1/traces", serviceName: "gw" })
      expect(Either.getOrThrow(yield* load({})).tracing).toBeUndefined()
      const failed = yield* load({ OTEL_TRACES_SAMPLER: "bogus" })
      expect(Either.isLeft(failed) && String(failed.left)).toContain("Invalid data at OTEL_TRACES_SAMPLER")
    }))

  it("are each documented in .env.example and the README", () => {
    const envExample = readFileSync(new URL("../../.env.example", import.meta.url), "utf8")
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8")
    for (const name of variableNames) {
      expect(envExample, name).toContain(name)
      expect(readme, name).toContain(`\`${name}\``)
    }
  })

  it("stop start-up with one line naming the variable", async () => {
    const { code, stderr } = await runMainUntilExit({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318",
      OTEL_TRACES_SAMPLER_ARG: "2",
      OTEL_TRACES_SAMPLER: "traceidratio",
      NODE_ENV: "development",
      PORT: "0"
    })
    expect(code).toBe(1)
    const lines = stderr.split("\n").filter((line) => line.trim() !== "")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain("OTEL_TRACES_SAMPLER_ARG")
  }, 25_000)
})

describe("traceparent", () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
  const spanId = "00f067aa0ba902b7"

  it("reads a valid header and refuses what the W3C says to refuse", () => {
    expect(parseTraceparent(`00-${traceId}-${spanId}-01`)).toEqual({ traceId, spanId, traceFlags: 1 })
    expect(parseTraceparent(`00-${traceId}-${spanId}-00`)).toEqual({ traceId, spanId, traceFlags: 0 })
    // a later version may add fields after the flags
    expect(parseTraceparent(`01-${traceId}-${spanId}-01-later`)).toEqual({ traceId, spanId, traceFlags: 1 })
    for (const invalid of [
      undefined,
      "",
      `ff-${traceId}-${spanId}-01`,
      `00-${traceId}-${spanId}-01-extra`,
      `00-${"0".repeat(32)}-${spanId}-01`,
      `00-${traceId}-${"0".repeat(16)}-01`,
      `00-${traceId.toUpperCase()}-${spanId}-01`,
      `00-${traceId}-${spanId}`,
      `00-${traceId}-${spanId}-01, 00-${traceId}-${spanId}-01`
    ]) {
      expect(parseTraceparent(invalid)).toBeUndefined()
    }
  })

  it("writes a span's context", () => {
    expect(formatTraceparent({ traceId, spanId, traceFlags: 1 })).toBe(`00-${traceId}-${spanId}-01`)
    expect(formatTraceparent({ traceId, spanId, traceFlags: 0 })).toBe(`00-${traceId}-${spanId}-00`)
  })
})
