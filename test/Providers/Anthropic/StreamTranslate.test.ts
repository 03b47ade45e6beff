import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { ChatCompletionChunk } from "../../../src/OpenAi/Schemas.js"
import type { ProviderError } from "../../../src/Providers/Provider.js"
import { makeSseDecoder } from "../../../src/Providers/Upstream/SseDecoder.js"
import { finish, initialState, step } from "../../../src/Providers/Anthropic/StreamTranslate.js"
import type { AnthropicStreamEvent, StreamState } from "../../../src/Providers/Anthropic/StreamTranslate.js"
import type { CompletionContext } from "../../../src/Providers/Anthropic/Response.js"
import { uncarry } from "../../../src/Providers/ToolCallCarriage.js"

const ctx: CompletionContext = { id: "chatcmpl-stream", created: 1_700_000_000, model: "claude-test" }

const fixture = (name: string): string =>
  readFileSync(new URL(`../../fixtures/anthropic/${name}`, import.meta.url), "utf8")

/** Decodes an SSE body with the project's own decoder, fed in pieces of `size` characters. */
const events = (body: string, size = body.length): Array<AnthropicStreamEvent> => {
  const decoder = makeSseDecoder()
  const out: Array<AnthropicStreamEvent> = []
  for (let i = 0; i < body.length; i += size) {
    const decoded = decoder.feed(body.slice(i, i + size))
    if (decoded === undefined) throw new Error("oversized event")
    out.push(...decoded.map((event) => ({ event: event.event, data: JSON.parse(event.data) as unknown })))
  }
  out.push(...decoder.end().map((event) => ({ event: event.event, data: JSON.parse(event.data) as unknown })))
  return out
}

/** Runs the machine over `input` and then `finish`, as the provider does. */
const run = (
  input: ReadonlyArray<AnthropicStreamEvent>,
  context: CompletionContext = ctx
): Either.Either<Array<ChatCompletionChunk>, ProviderError> => {
  let state: StreamState = initialState(context)
  const chunks: Array<ChatCompletionChunk> = []
  for (const event of [...input, undefined]) {
    const result = event === undefined ? finish(state) : step(state, event)
    if (Either.isLeft(result)) return Either.left(result.left)
    state = result.right[0]
    chunks.push(...result.right[1])
  }
  return Either.right(chunks)
}

const runOk = (input: ReadonlyArray<AnthropicStreamEvent>, context: CompletionContext = ctx) =>
  Either.getOrThrowWith(run(input, context), (error) => new Error(error.message))

const runFail = (input: ReadonlyArray<AnthropicStreamEvent>): ProviderError =>
  Either.match(run(input), {
    onLeft: (error) => error,
    onRight: () => {
      throw new Error("expected the stream to fail")
    }
  })

const text = (chunks: ReadonlyArray<ChatCompletionChunk>): string =>
  chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")

/** Reassembles tool calls from their deltas, by index. */
const toolCalls = (chunks: ReadonlyArray<ChatCompletionChunk>) => {
  const calls: Array<{ id?: string; name?: string; arguments: string }> = []
  for (const chunk of chunks) {
    for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
      const call = (calls[delta.index] ??= { arguments: "" })
      if (delta.id !== undefined) call.id = delta.id
      if (delta.function?.name !== undefined) call.name = delta.function.name
      call.arguments += delta.function?.arguments ?? ""
    }
  }
  return calls
}

const reasoning = (chunks: ReadonlyArray<ChatCompletionChunk>): string =>
  chunks.map((chunk) => chunk.choices[0]?.delta.reasoning_content ?? "").join("")

/** Every thinking block the deltas announced, in order. */
const thinkingBlocks = (chunks: ReadonlyArray<ChatCompletionChunk>) => chunks.flatMap((chunk) => chunk.choices[0]?.delta.thinking_blocks ?? [])

const finishReasons = (chunks: ReadonlyArray<ChatCompletionChunk>) =>
  chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.finish_reason)).filter((reason) => reason !== null)

const expectWellFormed = (chunks: ReadonlyArray<ChatCompletionChunk>) => {
  for (const chunk of chunks) {
    expect(Schema.is(ChatCompletionChunk)(chunk)).toBe(true)
    expect(chunk).toMatchObject({ id: ctx.id, object: "chat.completion.chunk", created: ctx.created, model: ctx.model })
  }
  expect(chunks[0]?.choices[0]?.delta).toEqual({ role: "assistant", content: "" })
  const last = chunks[chunks.length - 1]
  expect(last?.choices).toEqual([])
  expect(chunks.filter((chunk) => chunk.choices.length === 0)).toHaveLength(1)
  for (const chunk of chunks.slice(0, -1)) {
    expect(chunk.choices).toHaveLength(1)
    expect(chunk.choices[0]).toMatchObject({ index: 0, logprobs: null })
    expect(chunk.usage).toBeUndefined()
  }
}

const event = (name: string, data: object): AnthropicStreamEvent => ({ event: name, data: { type: name, ...data } })

const messageStart = event("message_start", {
  message: { id: "msg_1", type: "message", role: "assistant", content: [], usage: { input_tokens: 7, output_tokens: 1 } }
})
const messageDelta = (stop_reason: string, output_tokens: number) =>
  event("message_delta", { delta: { stop_reason, stop_sequence: null }, usage: { output_tokens } })
const messageStop = event("message_stop", {})

describe("StreamTranslate on recorded streams", () => {
  it("reassembles the basic text stream", () => {
    const chunks = runOk(events(fixture("basic_response.txt")))
    expectWellFormed(chunks)
    expect(text(chunks)).toBe("Hello there!")
    expect(finishReasons(chunks)).toEqual(["stop"])
    expect(chunks[chunks.length - 1]?.usage).toEqual({
      prompt_tokens: 11,
      completion_tokens: 6,
      total_tokens: 17,
      prompt_tokens_details: { cached_tokens: 0 }
    })
  })

  it("gives the same chunks however the body is split", () => {
    const body = fixture("tool_use_response.txt")
    const whole = runOk(events(body))
    for (const size of [1, 7, 64]) expect(runOk(events(body, size))).toEqual(whole)
  })

  it("reassembles text and a tool call whose arguments arrive in pieces", () => {
    const chunks = runOk(events(fixture("tool_use_response.txt")))
    expectWellFormed(chunks)
    expect(text(chunks)).toBe("I'll check the current weather in Paris for you.")
    const calls = toolCalls(chunks)
    expect(calls).toHaveLength(1)
    expect(calls[0]).toMatchObject({ id: "toolu_01NRLabsLyVHZPKxbKvkfSMn", name: "get_weather" })
    expect(JSON.parse(calls[0]?.arguments ?? "")).toEqual({ location: "Paris" })
    const start = chunks.find((chunk) => chunk.choices[0]?.delta.tool_calls?.[0]?.id !== undefined)
    expect(start?.choices[0]?.delta.tool_calls).toEqual([
      { index: 0, id: "toolu_01NRLabsLyVHZPKxbKvkfSMn", type: "function", function: { name: "get_weather", arguments: "" } }
    ])
    expect(finishReasons(chunks)).toEqual(["tool_calls"])
    expect(chunks[chunks.length - 1]?.usage).toMatchObject({ prompt_tokens: 377, completion_tokens: 65, total_tokens: 442 })
  })

  it("reports a max_tokens cut-off as finish_reason length, with the partial arguments as sent", () => {
    const chunks = runOk(events(fixture("incomplete_partial_json_response.txt")))
    expectWellFormed(chunks)
    expect(text(chunks)).toBe(
      "I'll create a comprehensive tax guide for someone with multiple W2s and save it in a file called taxes.txt. Let me do that for you now."
    )
    const calls = toolCalls(chunks)
    expect(calls[0]?.name).toBe("make_file")
    expect(calls[0]?.arguments).toBe(
      '{"filename": "taxes.txt", "lines_of_text": [\n"# COMPREHENSIVE TAX GUIDE FOR INDIVIDUALS WITH MULTIPLE W-2s",\n"",\n"## INTRODUCTION",\n"",\n"Filing taxes'
    )
    expect(finishReasons(chunks)).toEqual(["length"])
    expect(chunks[chunks.length - 1]?.usage).toMatchObject({ prompt_tokens: 450, completion_tokens: 124, total_tokens: 574 })
  })

  it("fails with Unavailable when the stream ends before message_stop", () => {
    const all = events(fixture("basic_response.txt"))
    for (const cut of [all.length - 1, 4, 0]) {
      const error = runFail(all.slice(0, cut))
      expect(error.reason).toBe("Unavailable")
      expect(error.message).toMatch(/ended early/)
    }
  })
})

describe("StreamTranslate on constructed events", () => {
  it("numbers tool calls by tool_use block, not by content block index, and carries thinking in the first call's id", () => {
    const chunks = runOk([
      messageStart,
      event("content_block_start", { index: 0, content_block: { type: "thinking", thinking: "" } }),
      event("content_block_delta", { index: 0, delta: { type: "thinking_delta", thinking: "hmm" } }),
      event("content_block_delta", { index: 0, delta: { type: "signature_delta", signature: "sig" } }),
      event("content_block_stop", { index: 0 }),
      event("content_block_start", { index: 1, content_block: { type: "text", text: "" } }),
      event("content_block_delta", { index: 1, delta: { type: "text_delta", text: "Two calls." } }),
      event("content_block_start", { index: 2, content_block: { type: "tool_use", id: "t_a", name: "a", input: {} } }),
      event("content_block_delta", { index: 2, delta: { type: "input_json_delta", partial_json: '{"x":1}' } }),
      event("content_block_start", { index: 3, content_block: { type: "tool_use", id: "t_b", name: "b", input: {} } }),
      event("content_block_delta", { index: 3, delta: { type: "input_json_delta", partial_json: '{"y":' } }),
      event("content_block_delta", { index: 3, delta: { type: "input_json_delta", partial_json: "2}" } }),
      { event: "ping", data: { type: "ping" } },
      messageDelta("tool_use", 40),
      messageStop
    ])
    expectWellFormed(chunks)
    expect(text(chunks)).toBe("Two calls.")
    const [first, second] = toolCalls(chunks)
    expect(second).toEqual({ id: "t_b", name: "b", arguments: '{"y":2}' })
    expect(first).toMatchObject({ name: "a", arguments: '{"x":1}' })
    expect(uncarry(first?.id ?? "")).toStrictEqual({
      base: "t_a",
      carried: { kind: "anthropic", thinkingBlocks: [{ type: "thinking", thinking: "hmm", signature: "sig" }] }
    })
    expect(reasoning(chunks)).toBe("hmm")
    expect(thinkingBlocks(chunks)).toStrictEqual([{ type: "thinking", thinking: "hmm", signature: "sig" }])
  })

  it("streams the response-format tool's input as content and finishes with stop", () => {
    const chunks = runOk(
      [
        messageStart,
        event("content_block_start", { index: 0, content_block: { type: "tool_use", id: "t", name: "person", input: {} } }),
        event("content_block_delta", { index: 0, delta: { type: "input_json_delta", partial_json: '{"name":' } }),
        event("content_block_delta", { index: 0, delta: { type: "input_json_delta", partial_json: '"Ada"}' } }),
        messageDelta("tool_use", 12),
        messageStop
      ],
      { ...ctx, responseFormatTool: "person" }
    )
    expect(JSON.parse(text(chunks))).toEqual({ name: "Ada" })
    expect(toolCalls(chunks)).toEqual([])
    expect(finishReasons(chunks)).toEqual(["stop"])
  })

  it("maps stop reasons and counts cached prompt tokens", () => {
    const start = event("message_start", {
      message: {
        id: "msg_2",
        usage: { input_tokens: 5, cache_read_input_tokens: 100, cache_creation_input_tokens: 20, output_tokens: 1 }
      }
    })
    for (const [stop, expected] of [
      ["end_turn", "stop"],
      ["stop_sequence", "stop"],
      ["pause_turn", "stop"],
      ["max_tokens", "length"],
      ["refusal", "content_filter"]
    ] as const) {
      const chunks = runOk([start, messageDelta(stop, 9), messageStop])
      expect(finishReasons(chunks)).toEqual([expected])
      expect(chunks[chunks.length - 1]?.usage).toEqual({
        prompt_tokens: 125,
        completion_tokens: 9,
        total_tokens: 134,
        prompt_tokens_details: { cached_tokens: 100 }
      })
    }
  })

  it("turns an error event into a ProviderError with the matching reason", () => {
    const table = [
      ["overloaded_error", "Unavailable"],
      ["api_error", "Unavailable"],
      ["rate_limit_error", "RateLimited"],
      ["invalid_request_error", "InvalidRequest"],
      ["request_too_large", "InvalidRequest"],
      ["authentication_error", "Authentication"],
      ["permission_error", "Authentication"],
      ["not_found_error", "NotFound"],
      ["some_future_error", "Unavailable"]
    ] as const
    for (const [type, reason] of table) {
      const error = runFail([messageStart, event("error", { error: { type, message: `boom: ${type}` } })])
      expect(error).toMatchObject({ _tag: "ProviderError", reason, provider: "anthropic", message: `boom: ${type}` })
    }
  })

  it("fails with MalformedResponse on an event without the fields it needs", () => {
    const error = runFail([messageStart, event("content_block_delta", { delta: { type: "text_delta", text: "x" } })])
    expect(error.reason).toBe("MalformedResponse")
  })

  it("ignores events after message_stop", () => {
    const chunks = runOk([messageStart, messageDelta("end_turn", 2), messageStop, messageStart])
    expect(chunks).toHaveLength(3)
  })
})

/** The AI SDK's recording format: one event's JSON data per line, its name in its `type`. */
const recordedEvents = (name: string): Array<AnthropicStreamEvent> =>
  fixture(`vercel-ai-fixtures/${name}`)
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => {
      const data = JSON.parse(line) as { readonly type: string }
      return { event: data.type, data }
    })

interface RecordedMessage {
  readonly content: ReadonlyArray<
    | { readonly type: "thinking"; readonly thinking: string; readonly signature: string }
    | { readonly type: "tool_use"; readonly id: string; readonly name: string; readonly input: unknown }
  >
}

/** A recorded non-streamed message told as the events Anthropic streams for it (blocks whole, then stopped). */
const asEvents = (message: RecordedMessage, stopReason: string): Array<AnthropicStreamEvent> => [
  messageStart,
  ...message.content.flatMap((block, index) =>
    block.type === "thinking"
      ? [
          event("content_block_start", { index, content_block: { type: "thinking", thinking: "", signature: "" } }),
          event("content_block_delta", { index, delta: { type: "thinking_delta", thinking: block.thinking } }),
          event("content_block_delta", { index, delta: { type: "signature_delta", signature: block.signature } }),
          event("content_block_stop", { index })
        ]
      : [
          event("content_block_start", { index, content_block: { type: "tool_use", id: block.id, name: block.name, input: {} } }),
          event("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: JSON.stringify(block.input) } }),
          event("content_block_stop", { index })
        ]
  ),
  messageDelta(stopReason, 59),
  messageStop
]

describe("StreamTranslate and extended thinking", () => {
  it("streams a recorded thinking block as reasoning_content before the content, then the signed block once complete", () => {
    const recorded = recordedEvents("anthropic-clear-thinking.1.chunks.txt")
    const chunks = runOk(recorded)
    expectWellFormed(chunks)
    expect(reasoning(chunks)).toBe("The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185")
    expect(text(chunks)).toBe("925 ÷ 5 = 185")
    const signature = (recorded.find((e) => JSON.stringify(e.data).includes("signature_delta"))?.data as { delta: { signature: string } }).delta.signature
    expect(thinkingBlocks(chunks)).toStrictEqual([{ type: "thinking", thinking: reasoning(chunks), signature }])
    const deltas = chunks.map((chunk) => chunk.choices[0]?.delta ?? {})
    const blockAt = deltas.findIndex((delta) => delta.thinking_blocks !== undefined)
    const firstContent = deltas.findIndex((delta) => typeof delta.content === "string" && delta.content.length > 0)
    const reasoningAt = deltas.flatMap((delta, index) => (delta.reasoning_content === undefined ? [] : [index]))
    expect(Math.max(...reasoningAt)).toBeLessThan(blockAt)
    expect(blockAt).toBeLessThan(firstContent)
    expect(deltas.some((delta) => delta.reasoning_content !== undefined && delta.content !== undefined)).toBe(false)
    expect(finishReasons(chunks)).toEqual(["stop"])
  })

  it("carries the recorded signed thinking block in the id of the tool call that follows it", () => {
    const message = JSON.parse(fixture("vercel-ai-fixtures/issue-13430-thinking-tool-call.json")) as RecordedMessage
    const thinking = message.content[0]!
    const chunks = runOk(asEvents(message, "tool_use"))
    expectWellFormed(chunks)
    const [call] = toolCalls(chunks)
    expect(call).toMatchObject({ name: "checkSandboxErrors", arguments: "{}" })
    expect(uncarry(call?.id ?? "")).toStrictEqual({ base: "toolu_017R7ACrx7NF7sLDDtvdQ1u9", carried: { kind: "anthropic", thinkingBlocks: [thinking] } })
    expect(thinkingBlocks(chunks)).toStrictEqual([thinking])
    expect(finishReasons(chunks)).toEqual(["tool_calls"])
  })

  it("passes redacted_thinking on whole, and each call carries only the thinking since the call before it", () => {
    const chunks = runOk([
      messageStart,
      event("content_block_start", { index: 0, content_block: { type: "redacted_thinking", data: "EmwKAhgBEgy3va3pzix" } }),
      event("content_block_stop", { index: 0 }),
      event("content_block_start", { index: 1, content_block: { type: "tool_use", id: "toolu_a", name: "a", input: {} } }),
      event("content_block_stop", { index: 1 }),
      event("content_block_start", { index: 2, content_block: { type: "thinking", thinking: "then b", signature: "" } }),
      event("content_block_delta", { index: 2, delta: { type: "signature_delta", signature: "c2lnLWI=" } }),
      event("content_block_stop", { index: 2 }),
      event("content_block_start", { index: 3, content_block: { type: "tool_use", id: "toolu_b", name: "b", input: {} } }),
      event("content_block_start", { index: 4, content_block: { type: "tool_use", id: "toolu_c", name: "c", input: {} } }),
      messageDelta("tool_use", 9),
      messageStop
    ])
    expectWellFormed(chunks)
    expect(thinkingBlocks(chunks)).toStrictEqual([
      { type: "redacted_thinking", data: "EmwKAhgBEgy3va3pzix" },
      { type: "thinking", thinking: "then b", signature: "c2lnLWI=" }
    ])
    expect(reasoning(chunks)).toBe("then b")
    expect(toolCalls(chunks).map((call) => uncarry(call.id ?? ""))).toStrictEqual([
      { base: "toolu_a", carried: { kind: "anthropic", thinkingBlocks: [{ type: "redacted_thinking", data: "EmwKAhgBEgy3va3pzix" }] } },
      { base: "toolu_b", carried: { kind: "anthropic", thinkingBlocks: [{ type: "thinking", thinking: "then b", signature: "c2lnLWI=" }] } },
      { base: "toolu_c" }
    ])
  })
})

