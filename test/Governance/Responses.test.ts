/**
 * Governance on OpenAI's Responses endpoint (memory store): a virtual key's models and limits hold on /v1/responses
 * as on chat, and its usage rows record what the answers reported — a native Responses answer's usage, a translated
 * one's, a stream's (its terminal event's usage); a request refused for an unknown previous_response_id still counts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { deploymentOf, OpenAi, registryFromDocument, Responses, startUpstream } from "../support/FakeUpstreams.js"
import { mounts, startGateway } from "../support/Gateway.js"
import { keyEntry, secretOf, usageWhen } from "../support/VirtualKeys.js"
import { postRaw } from "../support/Http.js"

const asKey = (id: string) => ({ authorization: `Bearer ${secretOf(id)}` })

const responses = (baseUrl: string, body: Record<string, unknown>, headers: Record<string, string>) =>
  postRaw(`${baseUrl}/v1/responses`, JSON.stringify({ input: "hello there", ...body }), headers)

const errorOf = (text: string) => (JSON.parse(text) as { error: { type: string; code: string | null; message: string } }).error

describe.each(mounts)("virtual keys on /v1/responses, %s mount", (mount) => {
  it.scopedLive("a key's models, rpm and usage hold; native, translated and streamed usage is recorded", () =>
    Effect.gen(function* () {
      const native = yield* startUpstream("openai", (upstreamCall) => (upstreamCall.stream ? Responses.stream(["a", "b"]) : Responses.response("native")))
      const openai = yield* startUpstream("openai", (upstreamCall) =>
        upstreamCall.stream
          ? OpenAi.stream(["x", "y", "z"], { usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 } })
          : OpenAi.completion({ content: "translated", usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } })
      )
      const gateway = yield* startGateway({
        mount,
        registry: registryFromDocument({
          models: [{ name: "mock", provider: "mock" }, deploymentOf("native", native, { api: "responses" }), deploymentOf("gpt", openai)],
          keys: [keyEntry("team", { models: ["native", "gpt", "mock"], limits: { rpm: 5 } }), keyEntry("narrow", { models: ["mock"] })],
          settings: { retry: { max_retries: 0 } }
        })
      })
      // the allow-list
      const refused = yield* responses(gateway.baseUrl, { model: "gpt" }, asKey("narrow"))
      expect(refused.status).toBe(404)
      expect(errorOf(refused.text)).toMatchObject({ type: "invalid_request_error", code: "model_not_found" })
      expect(openai.calls).toHaveLength(0)
      const nativeAnswer = yield* responses(gateway.baseUrl, { model: "native" }, asKey("team"))
      expect(nativeAnswer.status).toBe(200)
      expect(nativeAnswer.headers.get("x-ratelimit-limit-requests")).toBe("5")
      expect((yield* responses(gateway.baseUrl, { model: "gpt" }, asKey("team"))).status).toBe(200)
      const streamed = yield* responses(gateway.baseUrl, { model: "gpt", stream: true }, asKey("team"))
      expect(streamed.status).toBe(200)
      expect(streamed.text).toContain("event: response.completed")
      const unknownPrevious = yield* responses(gateway.baseUrl, { model: "mock", previous_response_id: "resp_missing" }, asKey("team"))
      expect(unknownPrevious.status).toBe(400)
      expect(errorOf(unknownPrevious.text).code).toBe("previous_response_not_found")
      expect((yield* responses(gateway.baseUrl, { model: "mock" }, asKey("team"))).status).toBe(200)
      // the sixth request in the minute: rpm 5
      const limited = yield* responses(gateway.baseUrl, { model: "mock" }, asKey("team"))
      expect(limited.status).toBe(429)
      expect(errorOf(limited.text)).toMatchObject({ type: "rate_limit_error" })
      expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
      const report = yield* usageWhen(gateway.baseUrl, "team", (report) => report.rows.reduce((sum, row) => sum + row.requests, 0) >= 5)
      expect(report.rows.find((row) => row.model === "native")).toMatchObject({ requests: 1, prompt_tokens: 36, completion_tokens: 87 })
      expect(report.rows.find((row) => row.model === "gpt")).toMatchObject({ requests: 2, prompt_tokens: 18, completion_tokens: 6 })
      const mock = report.rows.find((row) => row.model === "mock")
      // the answered one, the refused previous_response_id and the one rpm refused: each counts as a request
      expect(mock?.requests).toBe(3)
      expect(mock?.completion_tokens).toBeGreaterThan(0)
    }))
})
