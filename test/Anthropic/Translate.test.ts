/**
 * The pure parts of the Messages dialect: a Messages request as a chat request, a chat completion as a message,
 * chat chunks as Messages events (thinking with its signature, tool calls), thinking budgets as efforts, and the
 * error table in Anthropic's envelope.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { describeMessagesError } from "../../src/Anthropic/Errors.js"
import { makeEventTranslator } from "../../src/Anthropic/StreamTranslate.js"
import { effortOfThinking, toChatRequest, toMessage } from "../../src/Anthropic/Translate.js"
import { MessagesRequest } from "../../src/Anthropic/Wire.js"
import { InvalidRequest, LimitExceeded, ModelNotFound, Unauthorized } from "../../src/Errors.js"
import type { ChatCompletion, ChatCompletionChunk } from "../../src/OpenAi/Schemas.js"
import { ProviderError } from "../../src/Providers/ProviderError.js"

const decode = Schema.decodeUnknownSync(MessagesRequest)

describe("Messages request → chat request", () => {
  it("maps system blocks, images, documents, tool use and results, thinking, tools and their choice, and the sampling fields", () => {
    const request = decode({
      model: "public",
      max_tokens: 500,
      system: [{ type: "text", text: "A" }, { type: "text", text: "B", cache_control: { type: "ephemeral" } }],
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Look" },
            { type: "image", source: { type: "base64", media_type: "image/png", data: "AAAA" } },
            { type: "image", source: { type: "url", url: "https://example.com/a.png" } },
            { type: "document", source: { type: "base64", media_type: "application/pdf", data: "JVBERi0=" }, title: "doc.pdf" }
          ]
        },
        {
          role: "assistant",
          content: [
            { type: "thinking", thinking: "hmm", signature: "sig" },
            { type: "text", text: "Calling." },
            { type: "tool_use", id: "toolu_1", name: "f", input: { x: 1 } }
          ]
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "toolu_1", content: "boom", is_error: true },
            { type: "text", text: "and?" }
          ]
        }
      ],
      tools: [
        { name: "f", description: "F", input_schema: { type: "object", properties: { x: { type: "number" } } } },
        { type: "web_search_20250305", name: "web_search" }
      ],
      tool_choice: { type: "tool", name: "f", disable_parallel_tool_use: true },
      stop_sequences: ["\n\nHuman:"],
      temperature: 0.2,
      top_p: 0.9,
      top_k: 40,
      metadata: { user_id: "abc" },
      thinking: { type: "enabled", budget_tokens: 10_000 },
      stream: true
    })
    const chat = Either.getOrThrow(toChatRequest(request, "upstream-model"))
    expect(chat).toEqual({
      model: "upstream-model",
      messages: [
        { role: "system", content: "A\nB" },
        {
          role: "user",
          content: [
            { type: "text", text: "Look" },
            { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
            { type: "image_url", image_url: { url: "https://example.com/a.png" } },
            { type: "file", file: { file_data: "data:application/pdf;base64,JVBERi0=", filename: "doc.pdf" } }
          ]
        },
        {
          role: "assistant",
          content: "Calling.",
          tool_calls: [{ id: "toolu_1", type: "function", function: { name: "f", arguments: '{"x":1}' } }],
          reasoning_content: "hmm",
          thinking_blocks: [{ type: "thinking", thinking: "hmm", signature: "sig" }]
        },
        { role: "tool", tool_call_id: "toolu_1", content: "Error: boom" },
        { role: "user", content: "and?" }
      ],
      max_completion_tokens: 500,
      temperature: 0.2,
      top_p: 0.9,
      stop: ["\n\nHuman:"],
      user: "abc",
      tools: [{ type: "function", function: { name: "f", description: "F", parameters: { type: "object", properties: { x: { type: "number" } } } } }],
      tool_choice: { type: "function", function: { name: "f" } },
      parallel_tool_calls: false,
      reasoning_effort: "medium",
      stream: true,
      top_k: 40
    })
  })

  it("refuses, naming it, a block the chat dialect cannot carry", () => {
    const request = decode({
      model: "m",
      max_tokens: 5,
      messages: [{ role: "assistant", content: [{ type: "server_tool_use", id: "s", name: "web_search", input: {} }] }]
    })
    const refused = toChatRequest(request, "m")
    expect(Either.isLeft(refused)).toBe(true)
    if (Either.isLeft(refused)) {
      expect(refused.left).toMatchObject({ reason: "InvalidRequest", param: "messages[0].content[0].type" })
      expect(refused.left.message).toContain("server_tool_use")
    }
  })

  it("thinking budgets map to the strongest effort they reach", () => {
    expect(effortOfThinking({ type: "enabled", budget_tokens: 1024 })).toBe("low")
    expect(effortOfThinking({ type: "enabled", budget_tokens: 2048 })).toBe("low")
    expect(effortOfThinking({ type: "enabled", budget_tokens: 8192 })).toBe("medium")
    expect(effortOfThinking({ type: "enabled", budget_tokens: 31_999 })).toBe("xhigh")
    expect(effortOfThinking({ type: "disabled" })).toBeUndefined()
    expect(effortOfThinking({ type: "adaptive" })).toBeUndefined()
  })
})

describe("chat completion → message", () => {
  const completion = (message: Record<string, unknown>, finish: string, extra: Record<string, unknown> = {}): ChatCompletion =>
    ({
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1,
      model: "u",
      choices: [{ index: 0, message: { role: "assistant", ...message }, finish_reason: finish, logprobs: null, ...extra }],
      usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120, prompt_tokens_details: { cached_tokens: 60 } }
    }) as unknown as ChatCompletion

  it("maps content, tool calls, reasoning, stop reasons and usage (cached prompt tokens as cache reads)", () => {
    const { message, usage } = toMessage(
      completion({ content: "Hi", reasoning_content: "thought", tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: '{"a":[1]}' } }] }, "tool_calls"),
      { id: "msg_1", model: "public", stopSequences: undefined }
    )
    expect(message).toEqual({
      id: "msg_1",
      type: "message",
      role: "assistant",
      model: "public",
      content: [
        { type: "thinking", thinking: "thought", signature: "" },
        { type: "text", text: "Hi" },
        { type: "tool_use", id: "call_1", name: "f", input: { a: [1] } }
      ],
      stop_reason: "tool_use",
      stop_sequence: null,
      usage: { input_tokens: 40, output_tokens: 20, cache_read_input_tokens: 60 }
    })
    expect(usage).toEqual({ input_tokens: 40, output_tokens: 20, cache_read_input_tokens: 60 })
    const lengths = ["length", "content_filter", "stop"].map((finish) => toMessage(completion({ content: "x" }, finish), { id: "m", model: "p", stopSequences: ["END"] }).message["stop_reason"])
    expect(lengths).toEqual(["max_tokens", "refusal", "end_turn"])
    // vLLM names the stop sequence that ended the answer
    const stopped = toMessage(completion({ content: "x" }, "stop", { stop_reason: "END" }), { id: "m", model: "p", stopSequences: ["END"] }).message
    expect(stopped).toMatchObject({ stop_reason: "stop_sequence", stop_sequence: "END" })
  })
})

describe("chat chunks → Messages events", () => {
  const chunk = (delta: Record<string, unknown>, finish: string | null = null): ChatCompletionChunk =>
    ({ id: "c", object: "chat.completion.chunk", created: 1, model: "u", choices: [{ index: 0, delta, finish_reason: finish }] }) as unknown as ChatCompletionChunk

  it("signed thinking becomes thinking_delta then signature_delta in its own block, before the text's block", () => {
    const translator = makeEventTranslator({ id: "msg_1", model: "public", stopSequences: undefined })
    const first = translator.step([
      chunk({ role: "assistant", content: "" }),
      chunk({ reasoning_content: "Let me" }),
      chunk({ reasoning_content: " think." }),
      chunk({ thinking_blocks: [{ type: "thinking", thinking: "Let me think.", signature: "SIG" }] }),
      chunk({ content: "Answer" }),
      chunk({}, "stop")
    ])
    expect(first).not.toBeInstanceOf(ProviderError)
    const events = [...(first as ReadonlyArray<{ event: string; data: string }>), ...translator.finish()].map((event) => JSON.parse(event.data) as Record<string, unknown>)
    expect(events.map((event) => [event["type"], (event["delta"] as { type?: string } | undefined)?.type ?? (event["content_block"] as { type?: string } | undefined)?.type ?? null])).toEqual([
      ["message_start", null],
      ["content_block_start", "thinking"],
      ["content_block_delta", "thinking_delta"],
      ["content_block_delta", "thinking_delta"],
      ["content_block_delta", "signature_delta"],
      ["content_block_stop", null],
      ["content_block_start", "text"],
      ["content_block_delta", "text_delta"],
      ["content_block_stop", null],
      ["message_delta", null],
      ["message_stop", null]
    ])
    expect(events[4]).toEqual({ type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "SIG" } })
    expect(events[9]).toEqual({ type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 0 } })
  })

  it("calls all numbered 0 (some servers do) are told apart by their ids; a repeated id continues its call", () => {
    const translator = makeEventTranslator({ id: "msg_1", model: "public", stopSequences: undefined })
    const out = translator.step([
      chunk({ tool_calls: [{ index: 0, id: "a", function: { name: "f", arguments: '{"x":' } }] }),
      chunk({ tool_calls: [{ index: 0, id: "a", function: { arguments: "1}" } }] }),
      chunk({ tool_calls: [{ index: 0, id: "b", function: { name: "g", arguments: "{}" } }] }),
      chunk({}, "tool_calls")
    ])
    expect(out).not.toBeInstanceOf(ProviderError)
    const starts = (out as ReadonlyArray<{ event: string; data: string }>)
      .filter((event) => event.event === "content_block_start")
      .map((event) => (JSON.parse(event.data) as { index: number; content_block: { id: string } }))
    expect(starts.map((start) => [start.index, start.content_block.id])).toEqual([
      [0, "a"],
      [1, "b"]
    ])
  })

  it("a tool call's arguments after another block began cannot be told: MalformedResponse", () => {
    const translator = makeEventTranslator({ id: "msg_1", model: "public", stopSequences: undefined })
    const out = translator.step([
      chunk({ tool_calls: [{ index: 0, id: "a", function: { name: "f", arguments: "{" } }] }),
      chunk({ content: "text between" }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: "}" } }] })
    ])
    expect(out).toBeInstanceOf(ProviderError)
    expect((out as ProviderError).reason).toBe("MalformedResponse")
  })
})

describe("the error table in Anthropic's envelope", () => {
  it("keeps the table's statuses and names Anthropic's types", () => {
    const cases: ReadonlyArray<readonly [Parameters<typeof describeMessagesError>[0], number, string]> = [
      [new InvalidRequest({ message: "bad", param: "max_tokens" }), 400, "invalid_request_error"],
      [new Unauthorized({ message: "no" }), 401, "authentication_error"],
      [new ModelNotFound({ model: "x" }), 404, "not_found_error"],
      [new LimitExceeded({ keyId: "k", limit: "rpm", value: 1, retryAfterMs: 1000 }), 429, "rate_limit_error"],
      [new ProviderError({ reason: "Unavailable", message: "overloaded", provider: "anthropic", status: 529 }), 529, "overloaded_error"],
      [new ProviderError({ reason: "Unavailable", message: "down", provider: "openai", status: 503 }), 503, "overloaded_error"],
      [new ProviderError({ reason: "Unavailable", message: "reset", provider: "openai" }), 502, "api_error"],
      [new ProviderError({ reason: "Authentication", message: "bad upstream key", provider: "openai", status: 401 }), 502, "api_error"],
      [new ProviderError({ reason: "Timeout", message: "slow", provider: "router" }), 504, "timeout_error"],
      [new ProviderError({ reason: "InvalidRequest", message: "too long", provider: "anthropic", status: 413 }), 413, "request_too_large"]
    ]
    for (const [error, status, type] of cases) {
      const described = describeMessagesError(error)
      expect({ status: described.status, type: described.body.error.type }).toEqual({ status, type })
      expect(Object.keys(described.body)).toEqual(["type", "error"])
      expect(described.body.type).toBe("error")
    }
    expect(describeMessagesError(new LimitExceeded({ keyId: "k", limit: "rpm", value: 1, retryAfterMs: 2500 })).headers).toEqual({ "retry-after": "3" })
  })
})
