import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import type { ChatCompletionRequest } from "../../../src/OpenAi/Schemas.js"
import type { ProviderError } from "../../../src/Providers/Provider.js"
import { errorFromBody } from "../../../src/Providers/Gemini/Errors.js"
import { toGeminiRequest } from "../../../src/Providers/Gemini/Request.js"
import type { GeminiRequestBody } from "../../../src/Providers/Gemini/Request.js"
import { fromGeminiResponse } from "../../../src/Providers/Gemini/Response.js"
import { uncarry } from "../../../src/Providers/ToolCallCarriage.js"

const fixtures = fileURLToPath(new URL("../../fixtures/gemini/", import.meta.url))
const googleai = (name: string): unknown =>
  JSON.parse(readFileSync(`${fixtures}vertexai-sdk-test-data/googleai/${name}`, "utf8"))

interface Recording {
  readonly interactions: ReadonlyArray<{
    readonly request: { readonly url: string; readonly bodySegments: ReadonlyArray<unknown> }
    readonly response: { readonly statusCode: number; readonly bodySegments: ReadonlyArray<unknown> }
  }>
}
const recording = (name: string): Recording =>
  JSON.parse(readFileSync(`${fixtures}js-genai-recordings/${name}.json`, "utf8")) as Recording

/** A recorded body with its tools' `parameters` (Gemini's OpenAPI subset) sent as `parametersJsonSchema`, unchanged. */
const asJsonSchemaTools = (body: unknown): unknown =>
  JSON.parse(JSON.stringify(body).replaceAll('"parameters":', '"parametersJsonSchema":'))

const ctx = { id: "chatcmpl-abc123", created: 1_700_000_000, model: "gemini-2.5-flash" }

interface RecordedBody {
  readonly candidates: ReadonlyArray<{
    readonly content: { readonly parts: ReadonlyArray<{ readonly functionCall?: unknown; readonly thoughtSignature?: string; readonly text?: string; readonly thought?: boolean }> }
  }>
}
/** The thought signature of the first function call of a recorded body. */
const recordedSignature = (body: unknown): string =>
  (body as RecordedBody).candidates[0]!.content.parts.find((part) => part.functionCall !== undefined)!.thoughtSignature!

const translate = (request: ChatCompletionRequest): GeminiRequestBody => Either.getOrThrow(toGeminiRequest(request))
const translateError = (request: ChatCompletionRequest): ProviderError =>
  Either.getOrThrowWith(Either.flip(toGeminiRequest(request)), () => new Error("expected a failure"))

const complete = (body: unknown) => Either.getOrThrow(fromGeminiResponse(body, ctx))
const completeError = (body: unknown): ProviderError =>
  Either.getOrThrowWith(Either.flip(fromGeminiResponse(body, ctx)), () => new Error("expected a failure"))

const divideTool = {
  type: "function",
  function: {
    name: "customDivide",
    description: "Custom divide function",
    parameters: { type: "OBJECT", properties: { denominator: { type: "NUMBER" }, numerator: { type: "NUMBER" } } }
  }
} as const

describe("toGeminiRequest", () => {
  it("produces the body js-genai sent for a plain text message", () => {
    const recorded = recording("Chats_Tests_sendMessage_Google_AI_with_text_stream").interactions[0]!
    const body = translate({ model: "gemini-2.0-flash", messages: [{ role: "user", content: "why is the sky blue?" }] })
    expect(body).toStrictEqual(recorded.request.bodySegments[0])
    expect(body).not.toHaveProperty("model")
  })

  it("produces the bodies js-genai sent for a function-calling chat, including the model's earlier call (tool schemas as parametersJsonSchema)", () => {
    const [first, second] = recording("Chats_Tests_chats_function_calling_Google_AI_with_function_calling_stream")
      .interactions
      .map((interaction) => ({
        ...interaction,
        request: { ...interaction.request, bodySegments: interaction.request.bodySegments.map(asJsonSchemaTools) }
      }))
    expect(translate({
      model: "gemini-2.0-flash",
      messages: [{ role: "user", content: "what is the result of 100/2" }],
      tools: [divideTool]
    })).toStrictEqual(first!.request.bodySegments[0])
    expect(translate({
      model: "gemini-2.0-flash",
      messages: [
        { role: "user", content: "what is the result of 100/2" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{
            id: "call_1",
            type: "function",
            function: { name: "customDivide", arguments: "{\"denominator\":2,\"numerator\":100}" }
          }]
        },
        { role: "user", content: "what is the result of 50/2?" }
      ],
      tools: [divideTool]
    })).toStrictEqual(second!.request.bodySegments[0])
  })

  it("gathers system and developer messages into systemInstruction and maps roles", () => {
    const body = translate({
      model: "m",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "developer", content: [{ type: "text", text: "Answer in French." }] },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Bonjour" },
        { role: "user", content: "Again" }
      ]
    })
    expect(body.systemInstruction).toStrictEqual({ parts: [{ text: "Be brief." }, { text: "Answer in French." }] })
    expect(body.contents).toStrictEqual([
      { role: "user", parts: [{ text: "Hi" }] },
      { role: "model", parts: [{ text: "Bonjour" }] },
      { role: "user", parts: [{ text: "Again" }] }
    ])
  })

  it("maps image parts to inlineData (data: URLs) and fileData (other URLs), and merges consecutive user turns", () => {
    const body = translate({
      model: "m",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "What is in these?" },
            { type: "image_url", image_url: { url: "data:image/jpeg;base64,/9j/4AAQ" } },
            { type: "image_url", image_url: { url: "https://example.com/cat.PNG?size=large" } },
            { type: "image_url", image_url: { url: "gs://bucket/object" } }
          ]
        },
        { role: "user", content: "Be precise." }
      ]
    })
    expect(body.contents).toStrictEqual([{
      role: "user",
      parts: [
        { text: "What is in these?" },
        { inlineData: { mimeType: "image/jpeg", data: "/9j/4AAQ" } },
        { fileData: { fileUri: "https://example.com/cat.PNG?size=large", mimeType: "image/png" } },
        { fileData: { fileUri: "gs://bucket/object" } },
        { text: "Be precise." }
      ]
    }])
  })

  it("turns tool results into functionResponse parts named after the assistant's earlier call", () => {
    const body = translate({
      model: "m",
      messages: [
        { role: "user", content: "Weather in Paris and Oslo?" },
        {
          role: "assistant",
          content: "Checking.",
          tool_calls: [
            { id: "call_a", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } },
            { id: "call_b", type: "function", function: { name: "get_time", arguments: "" } }
          ]
        },
        { role: "tool", tool_call_id: "call_a", content: "{\"temp\":21}" },
        { role: "tool", tool_call_id: "call_b", content: [{ type: "text", text: "12:00" }] },
        { role: "user", content: "Thanks" }
      ]
    })
    expect(body.contents).toStrictEqual([
      { role: "user", parts: [{ text: "Weather in Paris and Oslo?" }] },
      {
        role: "model",
        parts: [
          { text: "Checking." },
          { functionCall: { name: "get_weather", args: { city: "Paris" } } },
          { functionCall: { name: "get_time", args: {} } }
        ]
      },
      {
        role: "user",
        parts: [
          { functionResponse: { name: "get_weather", response: { temp: 21 } } },
          { functionResponse: { name: "get_time", response: { content: "12:00" } } },
          { text: "Thanks" }
        ]
      }
    ])
  })

  it("fails with InvalidRequest for a tool message no assistant tool call matches", () => {
    const error = translateError({
      model: "m",
      messages: [{ role: "user", content: "Hi" }, { role: "tool", tool_call_id: "call_missing", content: "42" }]
    })
    expect(error.reason).toBe("InvalidRequest")
    expect(error.message).toContain("call_missing")
    expect(error.param).toBe("messages[1].tool_call_id")
  })

  it("maps sampling parameters into generationConfig", () => {
    const body = translate({
      model: "m",
      messages: [{ role: "user", content: "Hi" }],
      temperature: 0.3,
      top_p: 0.9,
      max_tokens: 100,
      max_completion_tokens: 200,
      stop: "END",
      n: 2,
      seed: 7,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      response_format: { type: "json_object" }
    })
    expect(body.generationConfig).toStrictEqual({
      temperature: 0.3,
      topP: 0.9,
      maxOutputTokens: 200,
      stopSequences: ["END"],
      candidateCount: 2,
      seed: 7,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
      responseMimeType: "application/json"
    })
    expect(translate({ model: "m", messages: [{ role: "user", content: "Hi" }], max_tokens: 50, stop: ["a", "b"] })
      .generationConfig).toStrictEqual({ maxOutputTokens: 50, stopSequences: ["a", "b"] })
  })

  it("sends a json_schema response format as responseJsonSchema", () => {
    const schema = { type: "object", properties: { n: { type: "integer" } }, required: ["n"], additionalProperties: false }
    const body = translate({
      model: "m",
      messages: [{ role: "user", content: "Hi" }],
      response_format: { type: "json_schema", json_schema: { name: "answer", schema, strict: true } }
    })
    expect(body.generationConfig).toStrictEqual({ responseMimeType: "application/json", responseJsonSchema: schema })
  })

  it("maps tools and every tool_choice", () => {
    const base = {
      model: "m",
      messages: [{ role: "user", content: "Hi" }] as const,
      tools: [
        divideTool,
        { type: "function", function: { name: "now", parameters: { type: "object", properties: {} } } }
      ] as const
    }
    const body = translate(base)
    expect(body.tools).toStrictEqual([{
      functionDeclarations: [
        { name: "customDivide", description: "Custom divide function", parametersJsonSchema: divideTool.function.parameters },
        { name: "now", parametersJsonSchema: { type: "object", properties: {} } }
      ]
    }])
    expect(body.toolConfig).toBeUndefined()
    expect(translate({ ...base, tool_choice: "none" }).toolConfig).toStrictEqual({ functionCallingConfig: { mode: "NONE" } })
    expect(translate({ ...base, tool_choice: "auto" }).toolConfig).toStrictEqual({ functionCallingConfig: { mode: "AUTO" } })
    expect(translate({ ...base, tool_choice: "required" }).toolConfig).toStrictEqual({
      functionCallingConfig: { mode: "ANY" }
    })
    expect(translate({ ...base, tool_choice: { type: "function", function: { name: "now" } } }).toolConfig)
      .toStrictEqual({ functionCallingConfig: { mode: "ANY", allowedFunctionNames: ["now"] } })
  })
})

describe("fromGeminiResponse", () => {
  it("translates a plain reply with its usage", () => {
    const completion = complete(googleai("unary-success-basic-reply-short.json"))
    expect(completion).toStrictEqual({
      id: "chatcmpl-abc123",
      object: "chat.completion",
      created: 1_700_000_000,
      model: "gemini-2.5-flash",
      choices: [{
        index: 0,
        message: {
          role: "assistant",
          content: "Google's headquarters, also known as the Googleplex, is located in **Mountain View, California**.\n",
          refusal: null
        },
        finish_reason: "stop",
        logprobs: null
      }],
      usage: { prompt_tokens: 7, completion_tokens: 22, total_tokens: 29 }
    })
  })

  it("maps finishReason SAFETY to content_filter", () => {
    const completion = complete(googleai("unary-failure-finish-reason-safety.json"))
    expect(completion.choices[0]?.finish_reason).toBe("content_filter")
    expect(completion.choices[0]?.message.content).toBe("Safety error incoming in 5, 4, 3, 2...")
    expect(completion.usage).toStrictEqual({ prompt_tokens: 7, completion_tokens: 20, total_tokens: 27 })
  })

  it("leaves thought summaries out of the content and counts thinking as reasoning tokens", () => {
    const completion = complete(googleai("unary-success-thinking-reply-thought-summary.json"))
    expect(completion.choices[0]?.message.content).toBe("Mountain View")
    expect(completion.usage).toStrictEqual({
      prompt_tokens: 14,
      completion_tokens: 2 + 24,
      total_tokens: 40,
      completion_tokens_details: { reasoning_tokens: 24 }
    })
  })

  it("turns functionCall parts into tool_calls with stable ids carrying the thought signature, and finish_reason tool_calls", () => {
    const recorded = googleai("unary-success-thinking-function-call-thought-summary-signature.json")
    const signature = recordedSignature(recorded)
    const completion = complete(recorded)
    const choice = completion.choices[0]!
    expect(choice.finish_reason).toBe("tool_calls")
    expect(choice.message.content).toBeNull()
    const [call, ...others] = choice.message.tool_calls ?? []
    expect(others).toHaveLength(0)
    expect(call).toMatchObject({ type: "function", function: { name: "now", arguments: "{}" } })
    expect(call?.extra_content).toStrictEqual({ google: { thought_signature: signature } })
    expect(uncarry(call?.id ?? "")).toStrictEqual({ base: "call_abc123_0_0", carried: { kind: "gemini", thoughtSignature: signature } })
    expect(choice.message.reasoning_content).toMatch(/^\*\*Thinking Through the New Year's Eve Calculation\*\*/)
    expect(completion.usage?.completion_tokens_details).toStrictEqual({ reasoning_tokens: 501 })
    expect(complete(googleai("unary-success-thinking-function-call-thought-summary-signature.json")))
      .toStrictEqual(completion)
  })

  it("translates every candidate, with cached tokens and MAX_TOKENS", () => {
    const completion = complete({
      candidates: [
        { index: 1, content: { parts: [{ text: "B" }], role: "model" }, finishReason: "MAX_TOKENS" },
        {
          index: 0,
          content: { parts: [{ text: "A" }, { functionCall: { name: "f", args: { x: 1 } } }], role: "model" },
          finishReason: "STOP"
        }
      ],
      usageMetadata: { promptTokenCount: 10, cachedContentTokenCount: 4, candidatesTokenCount: 3, totalTokenCount: 13 }
    })
    expect(completion.choices.map((choice) => [choice.index, choice.finish_reason, choice.message.content])).toStrictEqual([
      [1, "length", "B"],
      [0, "tool_calls", "A"]
    ])
    expect(completion.choices[1]?.message.tool_calls?.[0]?.function).toStrictEqual({ name: "f", arguments: "{\"x\":1}" })
    expect(completion.usage).toStrictEqual({
      prompt_tokens: 10,
      completion_tokens: 3,
      total_tokens: 13,
      prompt_tokens_details: { cached_tokens: 4 }
    })
  })

  it("answers a candidate without content with an empty message", () => {
    const completion = complete(googleai("unary-failure-with-message-no-content.json"))
    expect(completion.choices).toStrictEqual([
      { index: 0, message: { role: "assistant", content: "", refusal: null }, finish_reason: "stop", logprobs: null }
    ])
  })

  it("fails with ContentPolicy naming the block reason when the prompt is blocked", () => {
    const blocked = completeError({ promptFeedback: { blockReason: "SAFETY" } })
    expect(blocked.reason).toBe("ContentPolicy")
    expect(blocked.message).toContain("SAFETY")
    const messageOnly = completeError(googleai("unary-failure-only-prompt-feedback.json"))
    expect(messageOnly.reason).toBe("ContentPolicy")
    expect(messageOnly.message).toContain("Message")
  })

  it("fails with MalformedResponse for a body that is not a GenerateContentResponse", () => {
    expect(completeError({ candidates: "nope" }).reason).toBe("MalformedResponse")
    expect(completeError({ candidates: [] }).reason).toBe("MalformedResponse")
  })
})

describe("errorFromBody", () => {
  it("reads Gemini's error details: an invalid key is Authentication despite status 400", () => {
    const error = errorFromBody(googleai("unary-failure-api-key.json"), 200)
    expect(error).toMatchObject({ reason: "Authentication", status: 400, message: "API key not valid. Please pass a valid API key." })
  })

  it("maps NOT_FOUND, PERMISSION_DENIED and RESOURCE_EXHAUSTED with RetryInfo", () => {
    expect(errorFromBody(googleai("unary-failure-unknown-model.json"), 200)).toMatchObject({ reason: "NotFound", status: 404 })
    expect(errorFromBody(googleai("unary-failure-generativelanguage-api-not-enabled.json"), 200)).toMatchObject({
      reason: "Authentication",
      status: 403
    })
    expect(errorFromBody({
      error: {
        code: 429,
        message: "Resource has been exhausted",
        status: "RESOURCE_EXHAUSTED",
        details: [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "12.5s" }]
      }
    }, 200)).toMatchObject({ reason: "RateLimited", status: 429, retryAfterMs: 12_500 })
  })
})

describe("reasoning and thought signatures", () => {
  const user = { role: "user", content: "How many days until New Year's Eve?" } as const

  it("gives reasoning_content from thought summaries, apart from the content", () => {
    const recorded = googleai("unary-success-thinking-reply-thought-summary.json") as RecordedBody
    const completion = complete(recorded)
    const thoughts = recorded.candidates[0]!.content.parts.filter((part) => part.thought === true).map((part) => part.text).join("")
    expect(completion.choices[0]?.message.reasoning_content).toBe(thoughts)
    expect(completion.choices[0]?.message.content).toBe("Mountain View")
    expect(complete(googleai("unary-success-basic-reply-short.json")).choices[0]?.message).not.toHaveProperty("reasoning_content")
  })

  it("sends a recorded thought signature back with its function call, from the id the gateway issued", () => {
    const recorded = googleai("unary-success-thinking-function-call-thought-summary-signature.json")
    const signature = recordedSignature(recorded)
    const message = complete(recorded).choices[0]!.message
    const call = message.tool_calls![0]!
    // What the openai SDK's runTools sends back: the id, type and function only.
    const body = translate({
      model: "gemini-3-pro-preview",
      messages: [
        user,
        { role: "assistant", content: null, tool_calls: [{ id: call.id, type: "function", function: call.function }] },
        { role: "tool", tool_call_id: call.id, content: "{\"now\":\"2025-07-28\"}" }
      ]
    })
    expect(body.contents).toStrictEqual([
      { role: "user", parts: [{ text: user.content }] },
      { role: "model", parts: [{ functionCall: { name: "now", args: {} }, thoughtSignature: signature }] },
      { role: "user", parts: [{ functionResponse: { name: "now", response: { now: "2025-07-28" } } }] }
    ])
    expect(JSON.stringify(body)).not.toContain(".lp1g.")
  })

  it("takes the signature from extra_content.google.thought_signature (Google's OpenAI-compatible field) before the id", () => {
    const signature = recordedSignature(googleai("unary-success-thinking-function-call-thought-summary-signature.json"))
    const body = translate({
      model: "m",
      messages: [
        user,
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "call_plain", type: "function", function: { name: "now", arguments: "{}" }, extra_content: { google: { thought_signature: signature } } }]
        },
        { role: "tool", tool_call_id: "call_plain", content: "ok" }
      ]
    })
    expect(body.contents[1]).toStrictEqual({ role: "model", parts: [{ functionCall: { name: "now", args: {} }, thoughtSignature: signature }] })
    // A signature that is not base64 is not sent, and a plain id carries none.
    const junk = translate({
      model: "m",
      messages: [
        user,
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "call_plain", type: "function", function: { name: "now", arguments: "{}" }, extra_content: { google: { thought_signature: "<script>" } } }]
        },
        { role: "tool", tool_call_id: "call_plain", content: "ok" }
      ]
    })
    expect(junk.contents[1]).toStrictEqual({ role: "model", parts: [{ functionCall: { name: "now", args: {} } }] })
  })

  it("matches a tool result to its call by the upstream part of the id, carried or not", () => {
    const signature = recordedSignature(googleai("unary-success-thinking-function-call-thought-summary-signature.json"))
    const call = complete(googleai("unary-success-thinking-function-call-thought-summary-signature.json")).choices[0]!.message.tool_calls![0]!
    const body = translate({
      model: "m",
      messages: [
        user,
        { role: "assistant", content: null, tool_calls: [{ id: call.id, type: "function", function: call.function }] },
        { role: "tool", tool_call_id: "call_abc123_0_0", content: "ok" }
      ]
    })
    expect(body.contents[1]?.parts[0]?.thoughtSignature).toBe(signature)
    expect(body.contents[2]).toStrictEqual({ role: "user", parts: [{ functionResponse: { name: "now", response: { content: "ok" } } }] })
  })

  it("maps reasoning_effort to thinkingBudget on 2.5 and thinkingLevel on 3, with includeThoughts", () => {
    const config = (model: string, reasoning_effort: string) =>
      translate({ model, messages: [user], reasoning_effort }).generationConfig.thinkingConfig
    expect(config("gemini-2.5-flash", "none")).toStrictEqual({ thinkingBudget: 0, includeThoughts: false })
    expect(config("gemini-2.5-flash", "minimal")).toStrictEqual({ thinkingBudget: 512, includeThoughts: true })
    expect(config("gemini-2.5-flash", "low")).toStrictEqual({ thinkingBudget: 1024, includeThoughts: true })
    expect(config("gemini-2.5-flash", "medium")).toStrictEqual({ thinkingBudget: 8192, includeThoughts: true })
    expect(config("gemini-2.5-flash", "high")).toStrictEqual({ thinkingBudget: 24576, includeThoughts: true })
    expect(config("gemini-2.5-pro", "none")).toStrictEqual({ thinkingBudget: 128, includeThoughts: false })
    expect(config("gemini-2.5-pro", "max")).toStrictEqual({ thinkingBudget: 32768, includeThoughts: true })
    expect(config("gemini-flash-latest", "low")).toStrictEqual({ thinkingBudget: 1024, includeThoughts: true })
    expect(config("gemini-3-flash-preview", "minimal")).toStrictEqual({ thinkingLevel: "minimal", includeThoughts: true })
    expect(config("gemini-3-flash-preview", "medium")).toStrictEqual({ thinkingLevel: "medium", includeThoughts: true })
    expect(config("gemini-3-flash-preview", "none")).toStrictEqual({ thinkingLevel: "minimal", includeThoughts: false })
    expect(config("gemini-3-pro-preview", "minimal")).toStrictEqual({ thinkingLevel: "low", includeThoughts: true })
    expect(config("gemini-3-pro-preview", "medium")).toStrictEqual({ thinkingLevel: "high", includeThoughts: true })
    expect(config("gemini-3.1-pro-preview", "high")).toStrictEqual({ thinkingLevel: "high", includeThoughts: true })
    // Models that do not think are not told to.
    expect(config("gemini-2.0-flash", "high")).toBeUndefined()
    expect(translate({ model: "gemini-2.5-flash", messages: [user] }).generationConfig).not.toHaveProperty("thinkingConfig")
    expect(translate({ model: "gemini-2.5-flash", messages: [user], reasoning_effort: null }).generationConfig).not.toHaveProperty("thinkingConfig")
  })

  it("refuses an unknown reasoning_effort, and forwards a native thinkingConfig as is, over reasoning_effort", () => {
    expect(translateError({ model: "gemini-2.5-flash", messages: [user], reasoning_effort: "extreme" })).toMatchObject({
      reason: "InvalidRequest",
      param: "reasoning_effort"
    })
    const native = { thinkingBudget: 333, includeThoughts: true, futureKnob: { on: true } }
    const request = { model: "gemini-2.5-flash", messages: [user], reasoning_effort: "high", thinkingConfig: native } as ChatCompletionRequest
    expect(translate(request).generationConfig.thinkingConfig).toStrictEqual(native)
    expect(translateError({ model: "m", messages: [user], thinkingConfig: "high" } as ChatCompletionRequest)).toMatchObject({
      reason: "InvalidRequest",
      param: "thinkingConfig"
    })
  })

  it("sends tool parameters and response schemas as JSON Schema, unmodified but for $schema", () => {
    // What zod's toJSONSchema (the AI SDK, LangChain, the openai SDK's helpers) produces.
    const zodSchema = {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      properties: {
        city: { type: "string", minLength: 1 },
        when: { anyOf: [{ type: "string", format: "date" }, { type: "null" }] },
        tags: { type: "array", items: { $ref: "#/$defs/tag" } }
      },
      $defs: { tag: { type: "string", enum: ["a", "b"] } },
      required: ["city", "when", "tags"],
      additionalProperties: false
    }
    const { $schema: _dialect, ...expected } = zodSchema
    const body = translate({
      model: "m",
      messages: [user],
      tools: [{ type: "function", function: { name: "weather", parameters: zodSchema } }],
      response_format: { type: "json_schema", json_schema: { name: "out", schema: zodSchema } }
    })
    expect(body.tools).toStrictEqual([{ functionDeclarations: [{ name: "weather", parametersJsonSchema: expected }] }])
    expect(body.generationConfig.responseJsonSchema).toStrictEqual(expected)
    expect(JSON.stringify(body)).not.toContain('"parameters"')
  })
})

describe("Gemini error codes", () => {
  it("carries Google's status name as the code, never the HTTP status as a string", () => {
    expect(errorFromBody(googleai("unary-failure-api-key.json"), 200).code).toBe("INVALID_ARGUMENT")
    expect(errorFromBody(googleai("unary-failure-unknown-model.json"), 200).code).toBe("NOT_FOUND")
    expect(errorFromBody(googleai("unary-failure-generativelanguage-api-not-enabled.json"), 200).code).toBe("PERMISSION_DENIED")
    expect(errorFromBody({ error: { code: 400, message: "bad" } }, 200).code).toBeNull()
    expect(errorFromBody({ error: { code: 500, message: "bad", status: 500 } }, 200).code).toBeNull()
    expect(errorFromBody([{ error: { code: 503, message: "busy", status: "UNAVAILABLE" } }], 200).code).toBe("UNAVAILABLE")
  })
})
