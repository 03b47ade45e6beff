/**
 * Traces of Anthropic Messages requests, as of chat ones: a server span per request (`POST /v1/messages`), an attempt
 * span per upstream call carrying the request's parameters and the response's facts — a native stream's id, the
 * upstream's model, its stop reason and usage (cache reads as prompt tokens), a translated completion's — with the
 * client's trace continued upstream; never a prompt or a completion. Both mounts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { traceSettingsFrom } from "../../src/Tracing/Settings.js"
import { Anthropic, deploymentOf, OpenAi, registryFromDocument, sse, startUpstream } from "../support/FakeUpstreams.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import { postRaw } from "../support/Http.js"
import { startReceiver } from "../support/OtlpReceiver.js"

const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
const parentSpanId = "00f067aa0ba902b7"
const prompt = "tell me about the lighthouse keeper"

const settingsOf = (origin: string) => {
  const parsed = traceSettingsFrom({ OTEL_EXPORTER_OTLP_ENDPOINT: origin, OTEL_BSP_SCHEDULE_DELAY: "20" })
  if (Either.isLeft(parsed) || parsed.right === undefined) throw new Error("tracing is off")
  return parsed.right
}

describe.each(mounts)("Messages traces, %s mount", (mount) => {
  it.scopedLive("a native stream and a translated completion: server and attempt spans with the response's facts, nothing of the text", () =>
    Effect.gen(function* () {
      const receiver = yield* startReceiver
      const frames = Anthropic.recordedStreamFrames("basic_response.txt")
      const anthropic = yield* startUpstream("anthropic", [sse(frames)])
      const openai = yield* startUpstream("openai", [OpenAi.completion({ content: "Quiet harbour", finishReason: "length" })])
      const gateway = yield* startGateway({
        mount,
        registry: registryFromDocument({ models: [deploymentOf("claude", anthropic), deploymentOf("gpt", openai, { model: "gpt-4.1" })] }),
        settings: { tracing: settingsOf(receiver.origin) }
      })
      const headers = { "x-api-key": testKey, traceparent: `00-${traceId}-${parentSpanId}-01` }
      const streamed = yield* postRaw(`${gateway.baseUrl}/v1/messages`, JSON.stringify({ model: "claude", max_tokens: 64, temperature: 0.5, stream: true, messages: [{ role: "user", content: prompt }] }), headers)
      expect(streamed.status).toBe(200)
      const completed = yield* postRaw(`${gateway.baseUrl}/v1/messages`, JSON.stringify({ model: "gpt", max_tokens: 32, messages: [{ role: "user", content: prompt }] }), headers)
      expect(completed.status).toBe(200)

      const spans = yield* receiver.awaitSpans(4, (span) => span.traceId === traceId)
      const servers = spans.filter((span) => span.kind === "server")
      expect(servers.map((span) => span.name)).toEqual(["POST /v1/messages", "POST /v1/messages"])
      expect(servers.every((span) => span.parentSpanId === parentSpanId && span.attributes["http.response.status_code"] === 200)).toBe(true)
      const native = spans.find((span) => span.kind === "client" && span.attributes["gen_ai.request.model"] === "claude")!
      const translated = spans.find((span) => span.kind === "client" && span.attributes["gen_ai.request.model"] === "gpt")!
      expect(servers.map((span) => span.spanId)).toContain(native.parentSpanId)
      expect(native.name).toBe("chat claude")
      expect(native.attributes).toMatchObject({
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.stream": true,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.response.id": "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK",
        "gen_ai.response.model": "claude-opus-4-8",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 6,
        "llm_proxy.outcome": "ok"
      })
      expect(translated.attributes).toMatchObject({
        "gen_ai.request.stream": false,
        "llm_proxy.upstream.model": "gpt-4.1",
        "gen_ai.response.model": "upstream-model",
        "gen_ai.response.finish_reasons": ["length"],
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 6,
        "llm_proxy.outcome": "ok"
      })
      // each upstream call is named by its attempt's span, in the client's trace
      expect(anthropic.calls[0]!.headers["traceparent"]).toBe(`00-${traceId}-${native.spanId}-01`)
      expect(openai.calls[0]!.headers["traceparent"]).toBe(`00-${traceId}-${translated.spanId}-01`)
      const exported = JSON.stringify(receiver.spans)
      for (const text of [prompt, "Hello there", "Quiet harbour", testKey]) expect(exported).not.toContain(text)
    }))
})
