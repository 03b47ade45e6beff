/**
 * SSE keepalive: a committed stream silent for SSE_KEEPALIVE_MS gets an SSE comment line, which every SSE client
 * ignores (the official openai SDK included), so that a load balancer does not close it while a model thinks.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import OpenAI from "openai"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import { deploymentOf, OpenAi, raw, registryFromDocument, startUpstream } from "../support/FakeUpstreams.js"
import { postChat, chatRequest } from "../support/Http.js"
import { streamedContent } from "../support/Sse.js"

/** The first frames at once, then a long silence (a model thinking), then the rest. */
const thinkingUpstream = raw((response) => {
  const frames = OpenAi.streamFrames(["after", " thinking"])
  response.writeHead(200, { "content-type": "text/event-stream" })
  response.write(frames[0]!)
  const rest = setTimeout(() => {
    for (const frame of frames.slice(1)) response.write(frame)
    response.end()
  }, 900)
  response.once("close", () => clearTimeout(rest))
})

for (const mount of mounts) {
  describe(`SSE keepalive (${mount} mount)`, () => {
    it.scopedLive("writes `: keepalive` comments while the upstream is silent, and none when it is off", () =>
      Effect.gen(function* () {
        const upstream = yield* startUpstream("openai", [thinkingUpstream])
        const registry = registryFromDocument({ models: [deploymentOf("m", upstream)], settings: { retry: { max_retries: 0 } } })
        const gateway = yield* startGateway({ mount, registry, settings: { sseKeepaliveMs: 200 } })
        const answer = yield* postChat(gateway.baseUrl, chatRequest("m", { stream: true }))
        expect(answer.status).toBe(200)
        const comments = answer.text.split("\n\n").filter((frame) => frame === ": keepalive").length
        expect(comments).toBeGreaterThanOrEqual(2)
        expect(comments).toBeLessThanOrEqual(6)
        expect(streamedContent(answer.text)).toBe("after thinking")
        // the official SDK reads through them
        const client = new OpenAI({ baseURL: `${gateway.baseUrl}/v1`, apiKey: testKey, maxRetries: 0 })
        const stream = yield* Effect.promise(() => client.chat.completions.create({ model: "m", stream: true, messages: [{ role: "user", content: "hi" }] }))
        let text = ""
        yield* Effect.promise(async () => {
          for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ""
        })
        expect(text).toBe("after thinking")

        const quiet = yield* startGateway({ mount, registry, settings: { sseKeepaliveMs: 0 } })
        const silent = yield* postChat(quiet.baseUrl, chatRequest("m", { stream: true }))
        expect(silent.text).not.toContain(": keepalive")
        expect(streamedContent(silent.text)).toBe("after thinking")
      }))
  })
}
