import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { readFileSync } from "node:fs"
import { ChatCompletion } from "../../../src/OpenAi/Schemas.js"
import type { ChatCompletionRequest } from "../../../src/OpenAi/Schemas.js"
import type { ProviderError } from "../../../src/Providers/Provider.js"
import { responseFormatToolName, toAnthropicRequest } from "../../../src/Providers/Anthropic/Request.js"
import type { AnthropicRequestBody } from "../../../src/Providers/Anthropic/Request.js"
import { decodeAnthropicMessage, finishReasonFor, fromAnthropicMessage } from "../../../src/Providers/Anthropic/Response.js"
import type { AnthropicMessage } from "../../../src/Providers/Anthropic/Response.js"
import { carry, uncarry } from "../../../src/Providers/ToolCallCarriage.js"
import { refineError } from "../../../src/Providers/Anthropic/Provider.js"
import { ProviderError as ProviderErrorClass } from "../../../src/Providers/Provider.js"

const options = { defaultMaxTokens: 4096 }

const translate = (request: ChatCompletionRequest): AnthropicRequestBody =>
  Either.getOrThrowWith(toAnthropicRequest(request, options), (error) => new Error(error.message))

const translateError = (request: ChatCompletionRequest): ProviderError =>
  Either.match(toAnthropicRequest(request, options), {
    onLeft: (error) => error,
    onRight: () => {
      throw new Error("expected the translation to fail")
    }
  })

const ctx = { id: "chatcmpl-test", created: 1_700_000_000, model: "claude-test" }

const message = (overrides: Partial<AnthropicMessage>): AnthropicMessage => ({
  id: "msg_01",
  type: "message",
  role: "assistant",
  content: [],
  stop_reason: "end_turn",
  usage: { input_tokens: 10, output_tokens: 5 },
  ...overrides
})

describe("toAnthropicRequest", () => {
  it("hoists system and developer messages into one system prompt and defaults max_tokens", () => {
    const body = translate({
      model: "claude-sonnet",
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "Hi" },
        { role: "developer", content: [{ type: "text", text: "Answer in French." }, { type: "text", text: "No emoji." }] }
      ]
    })
    expect(body).toEqual({
      model: "claude-sonnet",
      max_tokens: 4096,
      system: "You are terse.\n\nAnswer in French.\nNo emoji.",
      messages: [{ role: "user", content: [{ type: "text", text: "Hi" }] }]
    })
  })

  it("prefers max_completion_tokens over max_tokens over the default", () => {
    const base = { model: "m", messages: [{ role: "user", content: "x" }] } as const
    expect(translate({ ...base, max_tokens: 50 }).max_tokens).toBe(50)
    expect(translate({ ...base, max_tokens: 50, max_completion_tokens: 70 }).max_tokens).toBe(70)
    expect(translate({ ...base, max_tokens: null }).max_tokens).toBe(4096)
    expect(Either.getOrThrow(toAnthropicRequest(base, { defaultMaxTokens: 123 })).max_tokens).toBe(123)
  })

  it("turns assistant tool calls into tool_use blocks and merges consecutive tool results into one user turn", () => {
    const body = translate({
      model: "m",
      messages: [
        { role: "user", content: "Weather in Paris and Rome?" },
        {
          role: "assistant",
          content: "Checking both.",
          tool_calls: [
            { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
            { id: "call_2", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } }
          ]
        },
        { role: "tool", tool_call_id: "call_1", content: "18C" },
        { role: "tool", tool_call_id: "call_2", content: [{ type: "text", text: "24C" }] },
        { role: "user", content: "Thanks, which is warmer?" }
      ]
    })
    expect(body.messages).toEqual([
      { role: "user", content: [{ type: "text", text: "Weather in Paris and Rome?" }] },
      {
        role: "assistant",
        content: [
          { type: "text", text: "Checking both." },
          { type: "tool_use", id: "call_1", name: "get_weather", input: { city: "Paris" } },
          { type: "tool_use", id: "call_2", name: "get_weather", input: { city: "Rome" } }
        ]
      },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "call_1", content: "18C" },
          { type: "tool_result", tool_use_id: "call_2", content: [{ type: "text", text: "24C" }] },
          { type: "text", text: "Thanks, which is warmer?" }
        ]
      }
    ])
  })

  it("merges consecutive same-role messages so turns alternate, and drops empty ones", () => {
    const body = translate({
      model: "m",
      messages: [
        { role: "user", content: "one" },
        { role: "user", content: "" },
        { role: "user", content: [{ type: "text", text: "two" }] },
        { role: "assistant", content: "a" },
        { role: "assistant", content: null, tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "" } }] }
      ]
    })
    expect(body.messages).toEqual([
      { role: "user", content: [{ type: "text", text: "one" }, { type: "text", text: "two" }] },
      {
        role: "assistant",
        content: [{ type: "text", text: "a" }, { type: "tool_use", id: "c", name: "f", input: {} }]
      }
    ])
  })

  it("translates image URLs and base64 data URLs", () => {
    const body = translate({
      model: "m",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Compare" },
            { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "high" } },
            { type: "image_url", image_url: { url: "data:image/jpeg;base64,/9j/4AAQ" } }
          ]
        }
      ]
    })
    expect(body.messages[0]?.content).toEqual([
      { type: "text", text: "Compare" },
      { type: "image", source: { type: "url", url: "https://example.com/cat.png" } },
      { type: "image", source: { type: "base64", media_type: "image/jpeg", data: "/9j/4AAQ" } }
    ])
  })

  it("maps stop, sampling parameters and user", () => {
    const base = { model: "m", messages: [{ role: "user", content: "x" }] } as const
    expect(translate({ ...base, stop: "END" }).stop_sequences).toEqual(["END"])
    expect(translate({ ...base, stop: ["a", "b"] }).stop_sequences).toEqual(["a", "b"])
    expect(translate({ ...base, stop: null })).not.toHaveProperty("stop_sequences")
    const body = translate({ ...base, temperature: 1.7, top_p: 0.9, user: "user-42" })
    expect(body.temperature).toBe(1)
    expect(body.top_p).toBe(0.9)
    expect(body.metadata).toEqual({ user_id: "user-42" })
    expect(translate({ ...base, temperature: 0.3 }).temperature).toBe(0.3)
  })

  it("forwards top_k but not unknown OpenAI-only fields", () => {
    const request = { model: "m", messages: [{ role: "user", content: "x" }], top_k: 5, seed: 1, logprobs: false } as const
    const body = translate(request)
    expect(body.top_k).toBe(5)
    expect(body).not.toHaveProperty("seed")
    expect(body).not.toHaveProperty("logprobs")
  })

  it("maps tools, tool_choice and parallel_tool_calls", () => {
    const tools = [
      {
        type: "function",
        function: {
          name: "get_weather",
          description: "Current weather",
          parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
        }
      },
      { type: "function", function: { name: "now" } }
    ] as const
    const base = { model: "m", messages: [{ role: "user", content: "x" }], tools } as const
    const body = translate(base)
    expect(body.tools).toEqual([
      {
        name: "get_weather",
        description: "Current weather",
        input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
      },
      { name: "now", input_schema: { type: "object", properties: {} } }
    ])
    expect(body).not.toHaveProperty("tool_choice")
    expect(translate({ ...base, tool_choice: "none" }).tool_choice).toEqual({ type: "none" })
    expect(translate({ ...base, tool_choice: "auto" }).tool_choice).toEqual({ type: "auto" })
    expect(translate({ ...base, tool_choice: "required" }).tool_choice).toEqual({ type: "any" })
    expect(translate({ ...base, tool_choice: { type: "function", function: { name: "now" } } }).tool_choice).toEqual({
      type: "tool",
      name: "now"
    })
    expect(translate({ ...base, parallel_tool_calls: false }).tool_choice).toEqual({
      type: "auto",
      disable_parallel_tool_use: true
    })
    expect(translate({ ...base, tool_choice: "required", parallel_tool_calls: false }).tool_choice).toEqual({
      type: "any",
      disable_parallel_tool_use: true
    })
  })

  it("turns response_format json_schema into a forced tool named after the schema", () => {
    const request: ChatCompletionRequest = {
      model: "m",
      messages: [{ role: "user", content: "Extract the person" }],
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "person",
          schema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
          strict: true
        }
      }
    }
    const body = translate(request)
    expect(responseFormatToolName(request)).toBe("person")
    expect(body.tools).toHaveLength(1)
    expect(body.tools?.[0]).toMatchObject({
      name: "person",
      input_schema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] }
    })
    expect(body.tool_choice).toEqual({ type: "tool", name: "person" })
  })

  it("lets the model still call its own tools when response_format json_schema comes with tools", () => {
    const body = translate({
      model: "m",
      messages: [{ role: "user", content: "x" }],
      tools: [{ type: "function", function: { name: "lookup" } }],
      response_format: { type: "json_schema", json_schema: { name: "answer" } }
    })
    expect(body.tools?.map((tool) => tool.name)).toEqual(["lookup", "answer"])
    expect(body.tool_choice).toEqual({ type: "any" })
  })

  it("asks for JSON in the system prompt for response_format json_object", () => {
    const body = translate({
      model: "m",
      messages: [{ role: "system", content: "Be helpful." }, { role: "user", content: "x" }],
      response_format: { type: "json_object" }
    })
    expect(body.system).toMatch(/^Be helpful\.\n\n.*JSON object/)
    expect(body).not.toHaveProperty("tools")
  })

  it("fails with InvalidRequest for tool-call arguments that are not a JSON object", () => {
    const call = (args: string) =>
      translateError({
        model: "m",
        messages: [
          { role: "user", content: "x" },
          { role: "assistant", tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: args } }] }
        ]
      })
    const error = call("{not json")
    expect(error.reason).toBe("InvalidRequest")
    expect(error.provider).toBe("anthropic")
    expect(error.param).toBe("messages[1].tool_calls[0].function.arguments")
    expect(call("[1,2]").reason).toBe("InvalidRequest")
  })

  it("fails with InvalidRequest for what Anthropic cannot express", () => {
    expect(translateError({ model: "m", messages: [{ role: "user", content: "x" }], n: 2 }).param).toBe("n")
    const audio = translateError({
      model: "m",
      messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "AAAA", format: "wav" } }] }]
    })
    expect(audio.reason).toBe("InvalidRequest")
    expect(audio.param).toBe("messages[0].content[0]")
    const dataUrl = translateError({
      model: "m",
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:image/png,rawbytes" } }] }]
    })
    expect(dataUrl.reason).toBe("InvalidRequest")
  })
})

describe("fromAnthropicMessage", () => {
  it("joins text, maps tool_use to tool_calls and gives thinking as reasoning_content and thinking_blocks, carried in the call's id", () => {
    const decoded = Either.getOrThrow(
      decodeAnthropicMessage({
        id: "msg_01",
        type: "message",
        role: "assistant",
        model: "claude-sonnet-4-5",
        content: [
          { type: "thinking", thinking: "Let me think", signature: "sig" },
          { type: "text", text: "I'll check " },
          { type: "text", text: "the weather." },
          { type: "tool_use", id: "toolu_1", name: "get_weather", input: { location: "Paris" } }
        ],
        stop_reason: "tool_use",
        stop_sequence: null,
        usage: { input_tokens: 100, output_tokens: 20, cache_read_input_tokens: 30, cache_creation_input_tokens: 5 }
      })
    )
    const completion = fromAnthropicMessage(decoded, ctx)
    expect(Schema.is(ChatCompletion)(completion)).toBe(true)
    const carriedId = completion.choices[0]?.message.tool_calls?.[0]?.id ?? ""
    expect(uncarry(carriedId)).toStrictEqual({
      base: "toolu_1",
      carried: { kind: "anthropic", thinkingBlocks: [{ type: "thinking", thinking: "Let me think", signature: "sig" }] }
    })
    expect(completion).toEqual({
      id: "chatcmpl-test",
      object: "chat.completion",
      created: 1_700_000_000,
      model: "claude-test",
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: "I'll check the weather.",
            refusal: null,
            reasoning_content: "Let me think",
            thinking_blocks: [{ type: "thinking", thinking: "Let me think", signature: "sig" }],
            tool_calls: [
              { id: carriedId, type: "function", function: { name: "get_weather", arguments: '{"location":"Paris"}' } }
            ]
          },
          finish_reason: "tool_calls",
          logprobs: null
        }
      ],
      usage: {
        prompt_tokens: 135,
        completion_tokens: 20,
        total_tokens: 155,
        prompt_tokens_details: { cached_tokens: 30 }
      }
    })
  })

  it("answers with null content when there is only a tool call", () => {
    const completion = fromAnthropicMessage(
      message({ content: [{ type: "tool_use", id: "t", name: "f", input: {} }], stop_reason: "tool_use" }),
      ctx
    )
    expect(completion.choices[0]?.message.content).toBeNull()
    expect(completion.choices[0]?.message.tool_calls?.[0]?.function.arguments).toBe("{}")
  })

  it("maps every stop_reason", () => {
    expect(finishReasonFor("end_turn")).toBe("stop")
    expect(finishReasonFor("stop_sequence")).toBe("stop")
    expect(finishReasonFor("pause_turn")).toBe("stop")
    expect(finishReasonFor("max_tokens")).toBe("length")
    expect(finishReasonFor("tool_use")).toBe("tool_calls")
    expect(finishReasonFor("refusal")).toBe("content_filter")
    const cut = fromAnthropicMessage(message({ content: [{ type: "text", text: "Once upon" }], stop_reason: "max_tokens" }), ctx)
    expect(cut.choices[0]?.finish_reason).toBe("length")
    expect(cut.usage).toEqual({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, prompt_tokens_details: { cached_tokens: 0 } })
  })

  it("returns the response-format tool's input as JSON content with finish_reason stop", () => {
    const completion = fromAnthropicMessage(
      message({
        content: [{ type: "tool_use", id: "toolu_9", name: "person", input: { name: "Ada", born: 1815 } }],
        stop_reason: "tool_use"
      }),
      { ...ctx, responseFormatTool: "person" }
    )
    const choice = completion.choices[0]
    expect(choice?.finish_reason).toBe("stop")
    expect(choice?.message.tool_calls).toBeUndefined()
    expect(JSON.parse(choice?.message.content ?? "")).toEqual({ name: "Ada", born: 1815 })
  })

  it("rejects bodies that are not a Messages response as MalformedResponse", () => {
    for (const body of [{ hello: "world" }, null, { ...message({}), content: [{ type: "text" }] }]) {
      const result = decodeAnthropicMessage(body)
      expect(Either.isLeft(result) && result.left.reason).toBe("MalformedResponse")
    }
  })
})

/** A non-streamed message recorded from the real API (AI SDK fixtures): signed thinking, then a tool call. */
const recordedThinkingMessage = (): unknown =>
  JSON.parse(readFileSync(new URL("../../fixtures/anthropic/vercel-ai-fixtures/issue-13430-thinking-tool-call.json", import.meta.url), "utf8"))

const recordedThinking = {
  type: "thinking",
  thinking: "The user wants me to call checkSandboxErrors immediately.",
  signature: (recordedThinkingMessage() as { content: ReadonlyArray<{ signature?: string }> }).content[0]!.signature!
} as const

describe("extended thinking", () => {
  const question = { role: "user", content: "Check the sandbox for errors." } as const
  const completion = () => fromAnthropicMessage(Either.getOrThrow(decodeAnthropicMessage(recordedThinkingMessage())), ctx)

  it("gives a recorded signed thinking block as reasoning_content and thinking_blocks, and carries it in the tool call's id", () => {
    const done = completion()
    expect(Schema.is(ChatCompletion)(done)).toBe(true)
    const message = done.choices[0]!.message
    expect(message.reasoning_content).toBe(recordedThinking.thinking)
    expect(message.thinking_blocks).toStrictEqual([recordedThinking])
    expect(message.content).toBeNull()
    expect(message.tool_calls).toHaveLength(1)
    expect(uncarry(message.tool_calls![0]!.id)).toStrictEqual({
      base: "toolu_017R7ACrx7NF7sLDDtvdQ1u9",
      carried: { kind: "anthropic", thinkingBlocks: [recordedThinking] }
    })
    expect(done.choices[0]?.finish_reason).toBe("tool_calls")
  })

  it("sends the signed block back in place, before the tool_use, when the client echoes only the tool call id", () => {
    const call = completion().choices[0]!.message.tool_calls![0]!
    const body = translate({
      model: "claude-sonnet-4-6",
      reasoning_effort: "low",
      messages: [
        question,
        // What the openai SDK's runTools rebuilds: id, type and function only.
        { role: "assistant", content: null, tool_calls: [{ id: call.id, type: "function", function: call.function }] },
        { role: "tool", tool_call_id: call.id, content: "no errors" }
      ]
    })
    expect(body.messages).toStrictEqual([
      { role: "user", content: [{ type: "text", text: question.content }] },
      {
        role: "assistant",
        content: [recordedThinking, { type: "tool_use", id: "toolu_017R7ACrx7NF7sLDDtvdQ1u9", name: "checkSandboxErrors", input: {} }]
      },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_017R7ACrx7NF7sLDDtvdQ1u9", content: "no errors" }] }
    ])
  })

  it("sends a message's own thinking_blocks (the AI SDK, LiteLLM style) first, before its text and tool calls, over what ids carry", () => {
    const redacted = { type: "redacted_thinking", data: "EmwKAhgBEgy3va3pzix" } as const
    const carried = carry("toolu_x", { kind: "anthropic", thinkingBlocks: [{ type: "thinking", thinking: "stale", signature: "c3RhbGU=" }] })
    const body = translate({
      model: "claude-sonnet-4-6",
      messages: [
        question,
        {
          role: "assistant",
          content: "Checking.",
          reasoning_content: "ignored: only signed blocks go back",
          thinking_blocks: [{ ...recordedThinking, cache_control: { type: "ephemeral" } } as typeof recordedThinking, redacted],
          tool_calls: [{ id: carried, type: "function", function: { name: "checkSandboxErrors", arguments: "{}" } }]
        },
        { role: "tool", tool_call_id: carried, content: "ok" }
      ]
    })
    expect(body.messages[1]).toStrictEqual({
      role: "assistant",
      content: [recordedThinking, redacted, { type: "text", text: "Checking." }, { type: "tool_use", id: "toolu_x", name: "checkSandboxErrors", input: {} }]
    })
    expect(body.messages[2]).toStrictEqual({ role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_x", content: "ok" }] })
  })

  it("puts interleaved thinking a later call carries right before that call, and drops a carriage that fails its check", () => {
    const a = carry("toolu_a", { kind: "anthropic", thinkingBlocks: [recordedThinking] })
    const b = carry("toolu_b", { kind: "anthropic", thinkingBlocks: [{ type: "thinking", thinking: "and b", signature: "Yg==" }] })
    const tampered = `${a.slice(0, -3)}${a.endsWith("AAA") ? "BBB" : "AAA"}`
    const body = translate({
      model: "m",
      messages: [
        question,
        {
          role: "assistant",
          content: "Two checks.",
          tool_calls: [
            { id: a, type: "function", function: { name: "f", arguments: "{}" } },
            { id: b, type: "function", function: { name: "g", arguments: "{}" } }
          ]
        },
        { role: "tool", tool_call_id: a, content: "1" },
        { role: "tool", tool_call_id: b, content: "2" }
      ]
    })
    expect(body.messages[1]?.content).toStrictEqual([
      recordedThinking,
      { type: "text", text: "Two checks." },
      { type: "tool_use", id: "toolu_a", name: "f", input: {} },
      { type: "thinking", thinking: "and b", signature: "Yg==" },
      { type: "tool_use", id: "toolu_b", name: "g", input: {} }
    ])
    const spoiled = translate({
      model: "m",
      messages: [question, { role: "assistant", content: null, tool_calls: [{ id: tampered, type: "function", function: { name: "f", arguments: "{}" } }] }]
    })
    expect(spoiled.messages[1]?.content).toStrictEqual([{ type: "tool_use", id: "toolu_a", name: "f", input: {} }])
  })

  it("maps reasoning_effort to a thinking budget, raising max_tokens above it as Anthropic requires", () => {
    const send = (extra: Partial<ChatCompletionRequest>) => translate({ model: "claude-sonnet-4-5", messages: [question], ...extra })
    const budgets = { minimal: 1024, low: 2048, medium: 8192, high: 16384, xhigh: 24576, max: 24576 } as const
    for (const [effort, budget] of Object.entries(budgets)) {
      const body = send({ reasoning_effort: effort })
      expect(body.thinking).toStrictEqual({ type: "enabled", budget_tokens: budget })
      // No max_tokens from the client: the default 4096 for the answer, on top of the budget.
      expect(body.max_tokens).toBe(budget + 4096)
    }
    // A client limit above the budget bounds thinking and answer together; one at or below it is room for the answer.
    expect(send({ reasoning_effort: "medium", max_completion_tokens: 20_000 }).max_tokens).toBe(20_000)
    expect(send({ reasoning_effort: "medium", max_tokens: 500 }).max_tokens).toBe(8192 + 500)
    expect(send({ reasoning_effort: "medium", max_tokens: 8192 }).max_tokens).toBe(8192 * 2)
    // none, null or nothing: no thinking, max_tokens as before.
    for (const extra of [{ reasoning_effort: "none" }, { reasoning_effort: null }, {}]) {
      const body = send({ ...extra, max_tokens: 300 })
      expect(body).not.toHaveProperty("thinking")
      expect(body.max_tokens).toBe(300)
    }
  })

  it("leaves out the sampling settings thinking refuses, and keeps the ones it takes", () => {
    const body = translate({ model: "m", messages: [question], reasoning_effort: "low", temperature: 0.2, top_p: 0.5, top_k: 40 } as ChatCompletionRequest)
    expect(body).not.toHaveProperty("temperature")
    expect(body).not.toHaveProperty("top_p")
    expect(body).not.toHaveProperty("top_k")
    const kept = translate({ model: "m", messages: [question], reasoning_effort: "low", temperature: 1, top_p: 0.97 })
    expect(kept).toMatchObject({ temperature: 1, top_p: 0.97 })
    const plain = translate({ model: "m", messages: [question], temperature: 0.2, top_p: 0.5, top_k: 40 } as ChatCompletionRequest)
    expect(plain).toMatchObject({ temperature: 0.2, top_p: 0.5, top_k: 40 })
  })

  it("forwards a native thinking object as is, over reasoning_effort, and refuses what it cannot map", () => {
    const adaptive = translate({ model: "m", messages: [question], reasoning_effort: "high", thinking: { type: "adaptive", display: "summarized" } } as ChatCompletionRequest)
    expect(adaptive.thinking).toStrictEqual({ type: "adaptive", display: "summarized" })
    expect(adaptive.max_tokens).toBe(4096)
    const enabled = translate({ model: "m", messages: [question], max_tokens: 1000, thinking: { type: "enabled", budget_tokens: 5000 } } as ChatCompletionRequest)
    expect(enabled).toMatchObject({ thinking: { type: "enabled", budget_tokens: 5000 }, max_tokens: 6000 })
    const disabled = translate({ model: "m", messages: [question], temperature: 0.3, thinking: { type: "disabled" } } as ChatCompletionRequest)
    expect(disabled).toMatchObject({ thinking: { type: "disabled" }, temperature: 0.3 })
    expect(translateError({ model: "m", messages: [question], reasoning_effort: "extreme" })).toMatchObject({ reason: "InvalidRequest", param: "reasoning_effort" })
    expect(translateError({ model: "m", messages: [question], thinking: true } as ChatCompletionRequest)).toMatchObject({ reason: "InvalidRequest", param: "thinking" })
  })
})

describe("Anthropic error codes", () => {
  const base = new ProviderErrorClass({ reason: "InvalidRequest", message: "m", provider: "anthropic", status: 400, code: "400" })
  it("carries Anthropic's error type as the code, or null, never a number", () => {
    expect(refineError(base, { type: "error", error: { type: "invalid_request_error", message: "m" } }).code).toBe("invalid_request_error")
    expect(refineError(base, { type: "error", error: { type: "overloaded_error", message: "m" } })).toMatchObject({ code: "overloaded_error", status: 400, reason: "InvalidRequest" })
    expect(refineError(base, { error: { code: 400, message: "m" } }).code).toBeNull()
    expect(refineError(base, { error: { type: 529 } }).code).toBeNull()
    expect(refineError(base, "not an object").code).toBeNull()
  })
})

