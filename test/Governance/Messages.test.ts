/**
 * Governance on Anthropic's Messages endpoints (memory store): a virtual key's models and limits hold on
 * /v1/messages as on chat (in Anthropic's envelope), and its usage rows record what the answers reported — a
 * native Anthropic answer's usage with its cache tokens as prompt tokens, a translated one's, a stream's.
 * count_tokens checks the key's models but is no request of its limits.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Anthropic, deploymentOf, json, OpenAi, registryFromDocument, startUpstream } from "../support/FakeUpstreams.js"
import { mounts, startGateway } from "../support/Gateway.js"
import { keyEntry, secretOf, usageWhen } from "../support/VirtualKeys.js"
import { postRaw } from "../support/Http.js"

/** What the Anthropic SDK sends. */
const asKey = (id: string) => ({ "x-api-key": secretOf(id), authorization: "" })

const messages = (baseUrl: string, body: Record<string, unknown>, headers: Record<string, string>) =>
  postRaw(`${baseUrl}/v1/messages`, JSON.stringify({ max_tokens: 50, messages: [{ role: "user", content: "hello there" }], ...body }), headers)

const errorOf = (text: string) => (JSON.parse(text) as { type: string; error: { type: string; message: string } })

describe.each(mounts)("virtual keys on /v1/messages, %s mount", (mount) => {
  it.scopedLive("a key's models, rpm and usage hold on the Messages endpoints; native usage counts cache tokens as prompt tokens", () =>
    Effect.gen(function* () {
      const anthropic = yield* startUpstream("anthropic", [
        json({ ...Anthropic.messageBody([{ type: "text", text: "ok" }]), usage: { input_tokens: 10, output_tokens: 4, cache_creation_input_tokens: 5, cache_read_input_tokens: 100 } })
      ])
      const openai = yield* startUpstream("openai", [OpenAi.completion({ content: "translated", usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } })])
      const gateway = yield* startGateway({
        mount,
        registry: registryFromDocument({
          models: [{ name: "mock", provider: "mock" }, deploymentOf("claude", anthropic), deploymentOf("gpt", openai)],
          keys: [keyEntry("team", { models: ["claude", "gpt", "mock"], limits: { rpm: 4 } }), keyEntry("narrow", { models: ["mock"] })],
          settings: { retry: { max_retries: 0 } }
        })
      })
      // the allow-list, in Anthropic's envelope
      const refused = yield* messages(gateway.baseUrl, { model: "claude" }, asKey("narrow"))
      expect(refused.status).toBe(404)
      expect(errorOf(refused.text).error.type).toBe("not_found_error")
      const countRefused = yield* postRaw(`${gateway.baseUrl}/v1/messages/count_tokens`, JSON.stringify({ model: "claude", messages: [{ role: "user", content: "x" }] }), asKey("narrow"))
      expect(countRefused.status).toBe(404)
      expect(anthropic.calls).toHaveLength(0)
      // count_tokens is no request of the key's rpm
      for (let i = 0; i < 3; i++) {
        expect((yield* postRaw(`${gateway.baseUrl}/v1/messages/count_tokens`, JSON.stringify({ model: "mock", messages: [{ role: "user", content: "x" }] }), asKey("team"))).status).toBe(200)
      }
      const native = yield* messages(gateway.baseUrl, { model: "claude" }, asKey("team"))
      expect(native.status).toBe(200)
      expect(native.headers.get("x-ratelimit-limit-requests")).toBe("4")
      const translated = yield* messages(gateway.baseUrl, { model: "gpt" }, asKey("team"))
      expect(translated.status).toBe(200)
      const streamed = yield* messages(gateway.baseUrl, { model: "mock", stream: true }, asKey("team"))
      expect(streamed.status).toBe(200)
      expect(streamed.text).toContain("event: message_stop")
      expect((yield* messages(gateway.baseUrl, { model: "mock" }, asKey("team"))).status).toBe(200)
      // the fifth request in the minute: rpm 4
      const limited = yield* messages(gateway.baseUrl, { model: "mock" }, asKey("team"))
      expect(limited.status).toBe(429)
      expect(errorOf(limited.text)).toMatchObject({ type: "error", error: { type: "rate_limit_error" } })
      expect(errorOf(limited.text).error.message).toContain("rpm")
      expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
      const report = yield* usageWhen(gateway.baseUrl, "team", (report) => report.rows.reduce((sum, row) => sum + row.requests, 0) >= 5)
      expect(report.rows.find((row) => row.model === "claude")).toMatchObject({ requests: 1, prompt_tokens: 115, completion_tokens: 4 })
      expect(report.rows.find((row) => row.model === "gpt")).toMatchObject({ requests: 1, prompt_tokens: 7, completion_tokens: 3 })
      const mock = report.rows.find((row) => row.model === "mock")
      expect(mock?.requests).toBe(3)
      expect(mock?.completion_tokens).toBeGreaterThan(0)
    }))
})
