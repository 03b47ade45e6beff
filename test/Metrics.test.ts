/**
 * Metrics: the Prometheus rendering, and what a scrape of `GET /metrics` shows after real requests.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric, MetricBoundaries, MetricLabel, Stream } from "effect"
import { renderPrometheus, routeOf } from "../src/Metrics.js"
import { ProviderError } from "../src/Providers/Provider.js"
import type { StreamProvider } from "../src/Providers/Provider.js"
import * as Mock from "../src/Providers/Mock/Provider.js"
import * as Registry from "../src/Router/Registry.js"
import { startGateway } from "./support/Gateway.js"
import type { RunningGateway } from "./support/Gateway.js"

/** The value of one sample line, e.g. `name{a="b"}`; 0 when absent. */
const sample = (text: string, series: string): number => {
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

const scrape = (gateway: RunningGateway) =>
  Effect.promise(async () => {
    const response = await fetch(`${gateway.baseUrl}/metrics`, { headers: gateway.auth })
    return { status: response.status, type: response.headers.get("content-type"), text: await response.text() }
  })

const chat = (gateway: RunningGateway, model: string, stream = false) =>
  Effect.promise(async () => {
    const response = await fetch(`${gateway.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { ...gateway.auth, "content-type": "application/json" },
      body: JSON.stringify({ model, stream, messages: [{ role: "user", content: "one two three" }] })
    })
    await response.text()
    return response.status
  })

describe("renderPrometheus", () => {
  it.effect("writes Effect's own metrics too: HELP and TYPE once per family, labels escaped, histograms cumulative with +Inf", () =>
    Effect.gen(function* () {
      const counter = Metric.counter("test_render_total", { description: "a counter", incremental: true })
      const histogram = Metric.histogram("test_render_seconds", MetricBoundaries.fromIterable([0.1, 1]), "a histogram")
      counter.unsafeUpdate(2, [MetricLabel.make("path", 'a"b\\c')])
      counter.unsafeUpdate(3, [MetricLabel.make("path", "d")])
      histogram.unsafeUpdate(0.05, [])
      histogram.unsafeUpdate(0.5, [])
      histogram.unsafeUpdate(5, [])
      const text = renderPrometheus(yield* Metric.snapshot)
      expect(text.match(/^# TYPE test_render_total counter$/gm)).toHaveLength(1)
      expect(text).toContain("# HELP test_render_total a counter")
      expect(sample(text, 'test_render_total{path="a\\"b\\\\c"}')).toBe(2)
      expect(sample(text, 'test_render_total{path="d"}')).toBe(3)
      expect(text).toContain("# TYPE test_render_seconds histogram")
      expect(sample(text, 'test_render_seconds_bucket{le="0.1"}')).toBe(1)
      expect(sample(text, 'test_render_seconds_bucket{le="1"}')).toBe(2)
      expect(sample(text, 'test_render_seconds_bucket{le="+Inf"}')).toBe(3)
      expect(sample(text, "test_render_seconds_sum")).toBeCloseTo(5.55)
      expect(sample(text, "test_render_seconds_count")).toBe(3)
    }))

  it("labels known routes by path and everything else as other", () => {
    expect(routeOf("/v1/chat/completions?x=1")).toBe("/v1/chat/completions")
    expect(routeOf("/v1/embeddings")).toBe("/v1/embeddings")
    expect(routeOf("/v1/models/gpt-4o")).toBe("/v1/models/{model}")
    expect(routeOf("/v1/responses")).toBe("/v1/responses")
    expect(routeOf("/v1/responses/resp_abc?x=1")).toBe("/v1/responses/{id}")
    expect(routeOf("/v1/responses/resp_abc/input_items")).toBe("other")
    expect(routeOf("/v1/messages/count_tokens")).toBe("/v1/messages/count_tokens")
    expect(routeOf("/wp-admin/setup.php")).toBe("other")
  })
})

describe("GET /metrics", () => {
  const failing: StreamProvider = {
    complete: () => Effect.fail(new ProviderError({ reason: "RateLimited", message: "slow down", provider: "house", retryAfterMs: 0 })),
    stream: () => Stream.fail(new ProviderError({ reason: "RateLimited", message: "slow down", provider: "house" }))
  }
  const registry = Registry.layerStatic(
    [
      { name: "metrics-mock", providerKind: "mock", provider: Mock.make({ tokenDelayMs: 0 }) },
      { name: "metrics-failing", providerKind: "house", provider: failing }
    ],
    { retry: { max_retries: 1, initial_delay_ms: 0, max_delay_ms: 0 } }
  )

  it.scopedLive("counts requests by route and status, upstream attempts by outcome, and tokens", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ registry })
      const before = (yield* scrape(gateway)).text
      expect(yield* chat(gateway, "metrics-mock")).toBe(200)
      expect(yield* chat(gateway, "metrics-mock", true)).toBe(200)
      expect(yield* chat(gateway, "metrics-failing")).toBe(429)
      const after = yield* scrape(gateway)
      expect(after.status).toBe(200)
      expect(after.type).toContain("text/plain")
      const delta = (series: string) => sample(after.text, series) - sample(before, series)
      expect(delta('llm_proxy_http_requests_total{route="/v1/chat/completions",status="200"}')).toBe(2)
      expect(delta('llm_proxy_http_requests_total{route="/v1/chat/completions",status="429"}')).toBe(1)
      expect(delta('llm_proxy_upstream_attempts_total{model="metrics-mock",provider="mock",outcome="ok"}')).toBe(2)
      // one attempt and one retry, both rate limited
      expect(delta('llm_proxy_upstream_attempts_total{model="metrics-failing",provider="house",outcome="RateLimited"}')).toBe(2)
      // "one two three": 3 prompt and 3 completion tokens, twice
      expect(delta('llm_proxy_tokens_total{model="metrics-mock",kind="prompt"}')).toBe(6)
      expect(delta('llm_proxy_tokens_total{model="metrics-mock",kind="completion"}')).toBe(6)
      expect(delta('llm_proxy_http_request_duration_seconds_count{route="/v1/chat/completions"}')).toBe(3)
      expect(delta('llm_proxy_http_request_duration_seconds_bucket{route="/v1/chat/completions",le="+Inf"}')).toBe(3)
      // buckets are cumulative: none holds more than +Inf, and a 65 s bucket holds all three
      expect(delta('llm_proxy_http_request_duration_seconds_bucket{route="/v1/chat/completions",le="131.072"}')).toBe(3)
      expect(after.text.match(/^# TYPE llm_proxy_http_requests_total counter$/gm)).toHaveLength(1)
    }))

  it.scopedLive("needs the key like every other API route", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ registry })
      const response = yield* Effect.promise(() => fetch(`${gateway.baseUrl}/metrics`))
      expect(response.status).toBe(401)
      const body = (yield* Effect.promise(() => response.json())) as { error: { code: string } }
      expect(body.error.code).toBe("invalid_api_key")
    }))
})
