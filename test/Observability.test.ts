/**
 * The latency metrics and the access log of a chat request: time to first token, time per output token, upstream
 * time, the gateway's own overhead, active streams, retries and fallbacks — and one access-log line per request with
 * what it did (key, model, provider, attempts, tokens, time to first token, upstream time), never a body or a secret.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, LogLevel } from "effect"
import { afterEach, vi } from "vitest"
import { captureLogs } from "./support/Logs.js"
import { startGateway, testKey } from "./support/Gateway.js"
import { deploymentOf, OpenAi, registryFromDocument, sse, startUpstream } from "./support/FakeUpstreams.js"
import { call, chatRequest, postChat } from "./support/Http.js"

afterEach(() => {
  vi.restoreAllMocks()
})

/** The value of one series in a Prometheus text (0 when absent). */
const sample = (text: string, series: string): number =>
  Number(text.split("\n").find((line) => line.startsWith(`${series} `))?.split(" ").at(-1) ?? "0")

describe("latency metrics and the access log", () => {
  it.scopedLive("a retried, fallen-back stream and a completion fill every family, and the access line says what happened", () =>
    Effect.gen(function* () {
      const lines = captureLogs().json
      const broken = yield* startUpstream("openai", [OpenAi.error(503, "busy", { type: "server_error" })])
      const healthy = yield* startUpstream("openai", [sse(OpenAi.streamFrames(["one", " two", " three"], { usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 } }), { gapMs: 20 })])
      const registry = registryFromDocument({
        models: [deploymentOf("primary", broken, { fallbacks: ["backup"] }), deploymentOf("backup", healthy)],
        settings: { retry: { max_retries: 1, initial_delay_ms: 1, max_delay_ms: 2 } }
      })
      const gateway = yield* startGateway({ registry, settings: { logLevel: LogLevel.Info, logFormat: "json" } })
      const metrics = Effect.map(call(`${gateway.baseUrl}/metrics`, { headers: { authorization: `Bearer ${testKey}` } }), (answer) => answer.text)
      const before = yield* metrics

      const streamed = yield* postChat(gateway.baseUrl, chatRequest("primary", { stream: true }), { "x-request-id": "req-observed" })
      expect(streamed.status).toBe(200)
      healthy.setScript([OpenAi.completion({ content: "done" })])
      expect((yield* postChat(gateway.baseUrl, chatRequest("backup"))).status).toBe(200)
      yield* Effect.sleep("50 millis")
      const after = yield* metrics

      const delta = (series: string) => sample(after, series) - sample(before, series)
      expect(delta('llm_proxy_time_to_first_token_seconds_count{model="backup",provider="openai"}')).toBe(1)
      expect(delta('llm_proxy_time_per_output_token_seconds_count{model="backup",provider="openai"}')).toBe(1)
      // the broken deployment's two attempts (the first and one retry), the backup's stream and completion
      expect(delta('llm_proxy_upstream_duration_seconds_count{model="primary",provider="openai"}')).toBe(2)
      expect(delta('llm_proxy_upstream_duration_seconds_count{model="backup",provider="openai"}')).toBe(2)
      expect(delta('llm_proxy_retries_total{model="primary"}')).toBe(1)
      expect(delta('llm_proxy_fallbacks_total{from="primary",to="backup"}')).toBe(1)
      expect(delta('llm_proxy_overhead_seconds_count{route="/v1/chat/completions"}')).toBe(2)
      expect(sample(after, "llm_proxy_streams_active")).toBe(0)
      // overhead is small next to a 60 ms stream: its buckets start at 50 µs
      expect(after).toContain('llm_proxy_overhead_seconds_bucket{route="/v1/chat/completions",le="0.00005"}')

      const access = lines.find((line) => line["message"] === "Sent HTTP response" && (line["annotations"] as Record<string, unknown>)["requestId"] === "req-observed")
      expect(access?.["annotations"]).toMatchObject({
        "http.method": "POST",
        "http.path": "/v1/chat/completions",
        "http.status": 200,
        key: "operator",
        model: "primary",
        provider: "openai",
        attempts: 3,
        promptTokens: 4,
        completionTokens: 3
      })
      const annotations = access?.["annotations"] as Record<string, number>
      expect(annotations["ttftMs"]).toBeGreaterThanOrEqual(0)
      expect(annotations["upstreamMs"]).toBeGreaterThanOrEqual(0)
      expect(JSON.stringify(lines)).not.toContain(testKey)
      expect(JSON.stringify(lines)).not.toContain('"content"')
    }))
})
