/**
 * What a client of the gateway sees, over HTTP, of the reasoning and stream rules: reasoning_content before the
 * content, signed thinking blocks, Gemini's finish reasons and unframed errors, and the providers' own error codes.
 * The upstreams are fakes replaying recorded bodies.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import { readFileSync } from "node:fs"
import { startGateway } from "../support/Gateway.js"
import { Anthropic, Gemini, json, OpenAi, registryFromDocument, splitFrames, sse, startUpstream, text } from "../support/FakeUpstreams.js"
import type { Reply, UpstreamCall } from "../support/FakeUpstreams.js"
import { chatRequest, expectEnvelope, postChat } from "../support/Http.js"
import { ssePayloads, streamError, streamedContent } from "../support/Sse.js"

const fixture = (path: string): string => readFileSync(new URL(`../fixtures/${path}`, import.meta.url), "utf8")

const recitationFrames = Gemini.googleAiText("streaming-success-basic-reply-long.txt")
  .split("\r\n\r\n")
  .filter((frame) => frame.startsWith("data: "))

/** The recorded long reply with STOP on its first frame and SAFETY on its last: the last reason counts. */
const stopThenSafety = (): Reply => {
  const frames = recitationFrames.map((frame, index) => {
    if (index === 0) return frame.replace('"role": "model"}', '"role": "model"},"finishReason": "STOP"')
    if (index === recitationFrames.length - 1) return frame.replace('"finishReason": "STOP"', '"finishReason": "SAFETY"')
    return frame
  })
  return sse(frames.map((frame) => `${frame}\r\n\r\n`))
}

const shortReply = Gemini.googleAiText("streaming-success-basic-reply-short.txt")

const geminiScript = (call: UpstreamCall): Reply => {
  switch (call.model) {
    case "bare-error":
      return text(200, fixture("gemini/vertexai-sdk-test-data/googleai/streaming-failure-image-rejected.txt"), "text/event-stream")
    case "error-after-content":
      return sse([
        shortReply.replace(/,\s*"finishReason": "STOP"/, ""),
        JSON.stringify({ error: { code: 503, message: "The model is overloaded.", status: "UNAVAILABLE" } }, null, 2)
      ])
    case "invalid-after-content":
      return sse([
        shortReply.replace(/,\s*"finishReason": "STOP"/, ""),
        `[${JSON.stringify({ error: { code: 400, message: "Request contains an invalid argument.", status: "INVALID_ARGUMENT" } })}]`
      ])
    case "stop-then-safety":
      return stopThenSafety()
    case "no-finish-reason":
      return sse([shortReply.replace(/,\s*"finishReason": "STOP"/, "")])
    case "thinking":
      return call.stream
        ? sse(splitFrames(fixture("gemini/vertexai-sdk-test-data/googleai/streaming-success-thinking-reply-thought-summary.txt")))
        : Gemini.googleAiUnary("unary-success-thinking-reply-thought-summary.json")
    case "invalid":
      return Gemini.error(400, "Invalid value at 'generation_config.thinking_config.thinking_level'", "INVALID_ARGUMENT")
    default:
      return Gemini.error(404, `models/${call.model} is not found`, "NOT_FOUND")
  }
}

const anthropicScript = (call: UpstreamCall): Reply => {
  switch (call.model) {
    case "thinking-json":
      // Answered whole even to a stream request: told as the stream it would have been.
      return text(200, fixture("anthropic/vercel-ai-fixtures/issue-13430-thinking-tool-call.json"), "application/json")
    case "thinking-stream":
      return sse(
        fixture("anthropic/vercel-ai-fixtures/anthropic-clear-thinking.1.chunks.txt")
          .split("\n")
          .map((line) => `event: ${(JSON.parse(line) as { type: string }).type}\ndata: ${line}\n\n`)
      )
    default:
      return Anthropic.error(400, "invalid_request_error", "max_tokens: Field required")
  }
}

/** An OpenAI-compatible reasoning server (vLLM, DeepSeek) that already speaks reasoning_content. */
const openAiScript = (call: UpstreamCall): Reply => {
  const reasoning = "First, 2 + 2 is 4."
  if (!call.stream) {
    return json({
      ...OpenAi.completionBody({ content: "4" }),
      choices: [{ index: 0, message: { role: "assistant", content: "4", reasoning_content: reasoning }, finish_reason: "stop", logprobs: null }]
    })
  }
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    `data: ${JSON.stringify({ id: "chatcmpl-r", object: "chat.completion.chunk", created: 1, model: "r1", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
  return sse([chunk({ role: "assistant", content: "" }), chunk({ reasoning_content: "First, 2 + 2" }), chunk({ reasoning_content: " is 4." }), chunk({ content: "4" }), chunk({}, "stop"), "data: [DONE]\n\n"])
}

const setup: Effect.Effect<string, never, Scope.Scope> = Effect.gen(function* () {
  const gemini = yield* startUpstream("gemini", geminiScript)
  const anthropic = yield* startUpstream("anthropic", anthropicScript)
  const openai = yield* startUpstream("openai", openAiScript)
  const entry = (name: string, provider: string, base_url: string) => ({ name, provider, model: name, base_url })
  const registry = registryFromDocument({
    models: [
      ...["bare-error", "error-after-content", "invalid-after-content", "stop-then-safety", "no-finish-reason", "thinking", "invalid"].map((name) => entry(name, "gemini", gemini.baseUrl)),
      ...["thinking-json", "thinking-stream", "claude-invalid"].map((name) => entry(name, "anthropic", anthropic.baseUrl)),
      entry("r1", "openai", openai.baseUrl)
    ],
    settings: { retry: { max_retries: 0 } }
  })
  const gateway = yield* startGateway({ registry, settings: { shutdownGraceMs: 100 } })
  return gateway.baseUrl
})

interface Delta {
  readonly content?: string | null
  readonly reasoning_content?: string
  readonly thinking_blocks?: ReadonlyArray<unknown>
  readonly tool_calls?: ReadonlyArray<{ readonly id?: string }>
}
interface ChunkPayload {
  readonly choices: ReadonlyArray<{ readonly delta: Delta; readonly finish_reason: string | null }>
}
const chunksOf = (body: string): ReadonlyArray<ChunkPayload> =>
  ssePayloads(body).filter((payload): payload is ChunkPayload => typeof payload === "object" && payload !== null && "choices" in payload)
const deltasOf = (body: string) => chunksOf(body).flatMap((chunk) => chunk.choices.map((choice) => choice.delta))
const finishReasonsOf = (body: string) =>
  chunksOf(body).flatMap((chunk) => chunk.choices.flatMap((choice) => (choice.finish_reason === null ? [] : [choice.finish_reason])))

const stream = (model: string) => chatRequest(model, { stream: true })

describe("reasoning and stream semantics over HTTP", () => {
  it.scopedLive("a Gemini stream whose body is a bare JSON error is that error's status before the commit, with Google's code", () =>
    Effect.gen(function* () {
      const baseUrl = yield* setup
      const answer = yield* postChat(baseUrl, stream("bare-error"))
      const error = expectEnvelope(answer, 400, "INVALID_ARGUMENT")
      expect(error).toMatchObject({ type: "invalid_request_error", message: "Request contains an invalid argument." })
    }))

  it.scopedLive("a JSON error after a Gemini stream's last frame is an error frame after the content, with no finish_reason and no [DONE]", () =>
    Effect.gen(function* () {
      const baseUrl = yield* setup
      const answer = yield* postChat(baseUrl, stream("error-after-content"))
      expect(answer.status).toBe(200)
      expect(streamedContent(answer.text)).toBe("The capital of Wyoming is **Cheyenne**.\n")
      expect(finishReasonsOf(answer.text)).toStrictEqual([])
      // A 503 after the commit is the table's upstream_unavailable (the provider's code shows for the caller's own mistakes).
      expect(streamError(answer.text)).toMatchObject({ type: "upstream_error", code: "upstream_unavailable", message: "The model is overloaded." })
      expect(answer.text).not.toContain("[DONE]")
      const invalid = yield* postChat(baseUrl, stream("invalid-after-content"))
      expect(streamedContent(invalid.text)).toBe("The capital of Wyoming is **Cheyenne**.\n")
      expect(streamError(invalid.text)).toMatchObject({ type: "invalid_request_error", code: "INVALID_ARGUMENT" })
    }))

  it.scopedLive("Gemini's last finishReason is sent once, after all the content: STOP then SAFETY is content_filter", () =>
    Effect.gen(function* () {
      const baseUrl = yield* setup
      const answer = yield* postChat(baseUrl, stream("stop-then-safety"))
      expect(finishReasonsOf(answer.text)).toStrictEqual(["content_filter"])
      const chunks = chunksOf(answer.text)
      const finishAt = chunks.findIndex((chunk) => chunk.choices.some((choice) => choice.finish_reason !== null))
      expect(chunks.slice(finishAt + 1).every((chunk) => chunk.choices.length === 0)).toBe(true)
      expect(streamedContent(answer.text).length).toBeGreaterThan(1000)
      expect(ssePayloads(answer.text).at(-1)).toBe("[DONE]")
    }))

  it.scopedLive("a Gemini stream that ends cleanly after content without a finishReason ends with stop and [DONE]", () =>
    Effect.gen(function* () {
      const baseUrl = yield* setup
      const answer = yield* postChat(baseUrl, stream("no-finish-reason"))
      expect(streamedContent(answer.text)).toBe("The capital of Wyoming is **Cheyenne**.\n")
      expect(finishReasonsOf(answer.text)).toStrictEqual(["stop"])
      expect(ssePayloads(answer.text).at(-1)).toBe("[DONE]")
    }))

  it.scopedLive("Gemini thought summaries stream as reasoning_content before the content, and come whole on the message", () =>
    Effect.gen(function* () {
      const baseUrl = yield* setup
      const answer = yield* postChat(baseUrl, stream("thinking"))
      const deltas = deltasOf(answer.text)
      const reasoning = deltas.map((delta) => delta.reasoning_content ?? "").join("")
      expect(reasoning).toMatch(/^\*\*Exploring Sky Color\*\*/)
      expect(streamedContent(answer.text)).not.toContain("Exploring Sky Color")
      const lastReasoning = deltas.map((delta) => delta.reasoning_content !== undefined).lastIndexOf(true)
      const firstContent = deltas.findIndex((delta) => typeof delta.content === "string" && delta.content.length > 0)
      expect(lastReasoning).toBeLessThan(firstContent)
      const whole = JSON.parse((yield* postChat(baseUrl, chatRequest("thinking", { reasoning_effort: "high" }))).text) as {
        choices: ReadonlyArray<{ message: { content: string; reasoning_content: string } }>
      }
      expect(whole.choices[0]?.message.content).toBe("Mountain View")
      expect(whole.choices[0]?.message.reasoning_content).toMatch(/^\*\*Thinking About Google's Headquarters\*\*/)
    }))

  it.scopedLive("Anthropic's signed thinking comes as reasoning_content and thinking_blocks, streamed (even from a whole answer) and not", () =>
    Effect.gen(function* () {
      const baseUrl = yield* setup
      const recorded = JSON.parse(fixture("anthropic/vercel-ai-fixtures/issue-13430-thinking-tool-call.json")) as { content: ReadonlyArray<{ thinking?: string; signature?: string }> }
      const block = { type: "thinking", thinking: recorded.content[0]!.thinking, signature: recorded.content[0]!.signature }
      const whole = JSON.parse((yield* postChat(baseUrl, chatRequest("thinking-json"))).text) as {
        choices: ReadonlyArray<{ message: { reasoning_content: string; thinking_blocks: ReadonlyArray<unknown>; tool_calls: ReadonlyArray<{ id: string }> } }>
      }
      expect(whole.choices[0]?.message).toMatchObject({ reasoning_content: block.thinking, thinking_blocks: [block] })
      expect(whole.choices[0]?.message.tool_calls[0]?.id).toMatch(/^toolu_017R7ACrx7NF7sLDDtvdQ1u9\.lp1a\./)
      const told = deltasOf((yield* postChat(baseUrl, stream("thinking-json"))).text)
      expect(told.flatMap((delta) => delta.thinking_blocks ?? [])).toStrictEqual([block])
      expect(told.map((delta) => delta.reasoning_content ?? "").join("")).toBe(block.thinking)
      const streamed = (yield* postChat(baseUrl, stream("thinking-stream"))).text
      expect(deltasOf(streamed).map((delta) => delta.reasoning_content ?? "").join("")).toBe(
        "The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185"
      )
      expect(deltasOf(streamed).flatMap((delta) => delta.thinking_blocks ?? [])).toHaveLength(1)
      expect(streamedContent(streamed)).toBe("925 ÷ 5 = 185")
    }))

  it.scopedLive("reasoning_content from an OpenAI-compatible upstream passes through unchanged", () =>
    Effect.gen(function* () {
      const baseUrl = yield* setup
      const whole = JSON.parse((yield* postChat(baseUrl, chatRequest("r1", { reasoning_effort: "xhigh" }))).text) as {
        choices: ReadonlyArray<{ message: { reasoning_content: string } }>
      }
      expect(whole.choices[0]?.message.reasoning_content).toBe("First, 2 + 2 is 4.")
      const streamed = deltasOf((yield* postChat(baseUrl, stream("r1"))).text)
      expect(streamed.flatMap((delta) => (delta.reasoning_content === undefined ? [] : [delta.reasoning_content]))).toStrictEqual(["First, 2 + 2", " is 4."])
    }))

  it.scopedLive("error envelopes carry Gemini's and Anthropic's own codes, never a number", () =>
    Effect.gen(function* () {
      const baseUrl = yield* setup
      expectEnvelope(yield* postChat(baseUrl, chatRequest("invalid")), 400, "INVALID_ARGUMENT")
      expectEnvelope(yield* postChat(baseUrl, stream("invalid")), 400, "INVALID_ARGUMENT")
      expectEnvelope(yield* postChat(baseUrl, chatRequest("claude-invalid")), 400, "invalid_request_error")
      expectEnvelope(yield* postChat(baseUrl, chatRequest("invalid", { reasoning_effort: "extreme" })), 400, null, "reasoning_effort")
    }))
})
