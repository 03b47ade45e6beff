import { describe, expect, it } from "@effect/vitest"
import { Either, ParseResult, Schema } from "effect"
import { ChatCompletionRequest } from "../../src/OpenAi/Schemas.js"

const decode = Schema.decodeUnknownSync(ChatCompletionRequest)
const decodeEither = Schema.decodeUnknownEither(ChatCompletionRequest)

const user = { role: "user", content: "hello" } as const
const base = { model: "mock", messages: [user] }

/** The request with the given fields on top of a valid minimal one. */
const withFields = (fields: Record<string, unknown>): Record<string, unknown> => ({ ...base, ...fields })

const accepts = (fields: Record<string, unknown>) => {
  const result = decodeEither(withFields(fields))
  if (Either.isLeft(result)) {
    throw new Error(`expected ${JSON.stringify(fields)} to decode: ${ParseResult.TreeFormatter.formatErrorSync(result.left)}`)
  }
  return result.right
}

const rejects = (input: unknown): string => {
  const result = decodeEither(input)
  if (Either.isRight(result)) throw new Error(`expected ${JSON.stringify(input)} to be rejected`)
  return ParseResult.TreeFormatter.formatErrorSync(result.left)
}

/** The first issue's path, as the HTTP edge turns it into OpenAI's `param`. */
const firstIssuePath = (input: unknown): ReadonlyArray<PropertyKey> => {
  const result = decodeEither(input)
  if (Either.isRight(result)) throw new Error("expected a failure")
  const issues = ParseResult.ArrayFormatter.formatErrorSync(result.left)
  return issues[0]?.path ?? []
}

describe("ChatCompletionRequest: messages of every role", () => {
  it("decodes system, developer, user, assistant (tool_calls, null content) and tool messages", () => {
    const messages = [
      { role: "system", content: "You are terse." },
      { role: "developer", content: [{ type: "text", text: "Answer in French." }] },
      { role: "user", content: "What is the weather in Paris?", name: "alice" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "call_1", type: "function", function: { name: "weather", arguments: "{\"city\":\"Paris\"}" } }]
      },
      { role: "tool", tool_call_id: "call_1", content: "{\"temp\":21}" },
      { role: "assistant", content: "Il fait 21 degrés." }
    ]
    const decoded = decode({ model: "gpt-4o", messages })
    expect(decoded.messages.map((message) => message.role)).toEqual([
      "system",
      "developer",
      "user",
      "assistant",
      "tool",
      "assistant"
    ])
    const assistant = decoded.messages[3]
    expect(assistant?.role).toBe("assistant")
    if (assistant?.role !== "assistant") return
    expect(assistant.content).toBeNull()
    expect(assistant.tool_calls?.[0]?.function.name).toBe("weather")
    const tool = decoded.messages[4]
    if (tool?.role !== "tool") throw new Error("expected a tool message")
    expect(tool.tool_call_id).toBe("call_1")
  })

  it("decodes an assistant message without content at all (tool calls only)", () => {
    const decoded = accepts({
      messages: [
        user,
        { role: "assistant", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }] }
      ]
    })
    const assistant = decoded.messages[1]
    if (assistant?.role !== "assistant") throw new Error("expected an assistant message")
    expect(assistant.content).toBeUndefined()
    expect(assistant.tool_calls).toHaveLength(1)
  })

  it("decodes user content parts: text and image_url (with and without detail)", () => {
    const decoded = accepts({
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "What is in this image?" },
            { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "high" } },
            { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }
          ]
        }
      ]
    })
    const content = decoded.messages[0]?.content
    expect(Array.isArray(content)).toBe(true)
    if (!Array.isArray(content)) return
    expect(content).toHaveLength(3)
    expect(content[1]).toEqual({ type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "high" } })
  })

  it("rejects an unknown role, a missing role, a tool message without tool_call_id and bad parts", () => {
    expect(rejects({ model: "m", messages: [{ role: "robot", content: "x" }] })).toContain("robot")
    rejects({ model: "m", messages: [{ content: "x" }] })
    rejects({ model: "m", messages: [{ role: "tool", content: "x" }] })
    rejects({ model: "m", messages: [{ role: "user", content: [{ type: "text" }] }] })
    rejects({ model: "m", messages: [{ role: "user", content: [{ type: "video", url: "x" }] }] })
    rejects({ model: "m", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "u", detail: "ultra" } }] }] })
    // system and developer messages take text parts only
    rejects({ model: "m", messages: [{ role: "system", content: [{ type: "image_url", image_url: { url: "u" } }] }] })
    rejects({ model: "m", messages: [{ role: "user", content: 42 }] })
    rejects({ model: "m", messages: [{ role: "assistant", content: null, tool_calls: [{ id: "c", type: "code", function: { name: "f", arguments: "{}" } }] }] })
  })

  it("rejects a missing or empty model, missing or empty messages, and non-objects", () => {
    rejects({ messages: [user] })
    rejects({ model: "", messages: [user] })
    rejects({ model: "m" })
    rejects({ model: "m", messages: [] })
    rejects({ model: "m", messages: "hello" })
    rejects(null)
    rejects("a string")
    rejects([base])
  })

  it("reports the path of the failing field", () => {
    expect(firstIssuePath({ model: "m", messages: [user, { role: "bogus", content: "x" }] })).toEqual(["messages", 1, "role"])
    expect(firstIssuePath(withFields({ temperature: 9 }))).toEqual(["temperature"])
  })
})

describe("ChatCompletionRequest: sampling and output parameters", () => {
  it("accepts temperature from 0 to 2 and null, rejects outside or non-numbers", () => {
    for (const temperature of [0, 0.7, 1, 2, null]) expect(accepts({ temperature }).temperature).toBe(temperature)
    for (const temperature of [-0.01, 2.01, 100, "1", Number.NaN]) rejects(withFields({ temperature }))
  })

  it("accepts top_p from 0 to 1, rejects outside", () => {
    for (const top_p of [0, 0.5, 1, null]) expect(accepts({ top_p }).top_p).toBe(top_p)
    for (const top_p of [-0.1, 1.1]) rejects(withFields({ top_p }))
  })

  it("accepts n as a positive integer up to 128", () => {
    for (const n of [1, 2, 128, null]) expect(accepts({ n }).n).toBe(n)
    for (const n of [0, -1, 1.5, 129, "2"]) rejects(withFields({ n }))
  })

  it("accepts stop as a string or up to 4 strings", () => {
    expect(accepts({ stop: "\n" }).stop).toBe("\n")
    expect(accepts({ stop: ["a", "b", "c", "d"] }).stop).toEqual(["a", "b", "c", "d"])
    expect(accepts({ stop: [] }).stop).toEqual([])
    expect(accepts({ stop: null }).stop).toBeNull()
    rejects(withFields({ stop: ["a", "b", "c", "d", "e"] }))
    rejects(withFields({ stop: [1] }))
    rejects(withFields({ stop: 1 }))
  })

  it("accepts max_tokens and max_completion_tokens as positive integers", () => {
    const decoded = accepts({ max_tokens: 16, max_completion_tokens: 32 })
    expect(decoded.max_tokens).toBe(16)
    expect(decoded.max_completion_tokens).toBe(32)
    expect(accepts({ max_tokens: null }).max_tokens).toBeNull()
    for (const value of [0, -5, 2.5, "10"]) {
      rejects(withFields({ max_tokens: value }))
      rejects(withFields({ max_completion_tokens: value }))
    }
  })

  it("accepts presence and frequency penalties from -2 to 2", () => {
    for (const value of [-2, -0.5, 0, 2]) {
      expect(accepts({ presence_penalty: value }).presence_penalty).toBe(value)
      expect(accepts({ frequency_penalty: value }).frequency_penalty).toBe(value)
    }
    for (const value of [-2.1, 2.1]) {
      rejects(withFields({ presence_penalty: value }))
      rejects(withFields({ frequency_penalty: value }))
    }
  })

  it("accepts logit_bias, an integer seed and a user string", () => {
    const decoded = accepts({ logit_bias: { "50256": -100 }, seed: 42, user: "user-1234" })
    expect(decoded.logit_bias).toEqual({ "50256": -100 })
    expect(decoded.seed).toBe(42)
    expect(decoded.user).toBe("user-1234")
    rejects(withFields({ seed: 1.5 }))
    rejects(withFields({ user: 7 }))
    rejects(withFields({ logit_bias: { "1": "high" } }))
  })

  it("accepts logprobs with top_logprobs from 0 to 20", () => {
    const decoded = accepts({ logprobs: true, top_logprobs: 20 })
    expect(decoded.logprobs).toBe(true)
    expect(decoded.top_logprobs).toBe(20)
    expect(accepts({ top_logprobs: 0 }).top_logprobs).toBe(0)
    rejects(withFields({ top_logprobs: 21 }))
    rejects(withFields({ top_logprobs: -1 }))
    rejects(withFields({ logprobs: "yes" }))
  })

  it("accepts stream and stream_options", () => {
    const decoded = accepts({ stream: true, stream_options: { include_usage: true } })
    expect(decoded.stream).toBe(true)
    expect(decoded.stream_options?.include_usage).toBe(true)
    expect(accepts({ stream: null, stream_options: null }).stream_options).toBeNull()
    rejects(withFields({ stream: "true" }))
    rejects(withFields({ stream_options: { include_usage: "yes" } }))
  })
})

describe("ChatCompletionRequest: tools and response formats", () => {
  const weather = {
    type: "function",
    function: {
      name: "get_weather",
      description: "Weather for a city",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
      strict: true
    }
  }

  it("accepts function tools and every tool_choice form", () => {
    for (const tool_choice of ["none", "auto", "required", { type: "function", function: { name: "get_weather" } }]) {
      const decoded = accepts({ tools: [weather], tool_choice, parallel_tool_calls: false })
      expect(decoded.tools?.[0]?.function.parameters).toEqual(weather.function.parameters)
      expect(decoded.tool_choice).toEqual(tool_choice)
      expect(decoded.parallel_tool_calls).toBe(false)
    }
  })

  it("rejects malformed tools and tool choices", () => {
    rejects(withFields({ tools: [{ type: "retrieval" }] }))
    rejects(withFields({ tools: [{ type: "function", function: { description: "no name" } }] }))
    rejects(withFields({ tool_choice: "always" }))
    rejects(withFields({ tool_choice: { type: "function" } }))
  })

  it("accepts response_format text, json_object and json_schema", () => {
    expect(accepts({ response_format: { type: "text" } }).response_format).toEqual({ type: "text" })
    expect(accepts({ response_format: { type: "json_object" } }).response_format).toEqual({ type: "json_object" })
    const schema = { type: "json_schema", json_schema: { name: "city", schema: { type: "object" }, strict: true } }
    expect(accepts({ response_format: schema }).response_format).toEqual(schema)
  })

  it("rejects an unknown response_format type or a json_schema without its name", () => {
    rejects(withFields({ response_format: { type: "yaml" } }))
    rejects(withFields({ response_format: { type: "json_schema", json_schema: { schema: {} } } }))
    rejects(withFields({ response_format: "json" }))
  })
})

describe("ChatCompletionRequest: unknown fields are preserved", () => {
  it("keeps unknown top-level fields after decoding", () => {
    const decoded: Record<string, unknown> = accepts({
      top_k: 40,
      metadata: { team: "search" },
      "x-vendor-extra": { nested: [1, 2, 3] },
      reasoning_effort: "low"
    })
    expect(decoded["top_k"]).toBe(40)
    expect(decoded["metadata"]).toEqual({ team: "search" })
    expect(decoded["x-vendor-extra"]).toEqual({ nested: [1, 2, 3] })
    expect(decoded["reasoning_effort"]).toBe("low")
  })

  it("keeps unknown fields inside messages, content parts, tools and stream_options", () => {
    const decoded = accepts({
      messages: [
        { role: "system", content: "be brief", cache_control: { type: "ephemeral" } },
        {
          role: "user",
          content: [{ type: "text", text: "hi", vendor_hint: "bold" }],
          vendor_message_id: "m-1"
        }
      ],
      tools: [{ type: "function", function: { name: "f", vendor_flag: true }, vendor_tool_meta: 1 }],
      stream_options: { include_usage: true, include_obfuscation: false }
    })
    const system = decoded.messages[0] as unknown as Record<string, unknown>
    expect(system["cache_control"]).toEqual({ type: "ephemeral" })
    const userMessage = decoded.messages[1] as unknown as Record<string, unknown>
    expect(userMessage["vendor_message_id"]).toBe("m-1")
    const parts = userMessage["content"] as ReadonlyArray<Record<string, unknown>>
    expect(parts[0]?.["vendor_hint"]).toBe("bold")
    const tool = decoded.tools?.[0] as unknown as Record<string, unknown>
    expect(tool["vendor_tool_meta"]).toBe(1)
    expect((tool["function"] as Record<string, unknown>)["vendor_flag"]).toBe(true)
    expect((decoded.stream_options as unknown as Record<string, unknown>)["include_obfuscation"]).toBe(false)
  })

  it("round-trips through encode with the unknown fields still there", () => {
    const input = withFields({ top_k: 5, metadata: { a: "b" } })
    const encoded = Schema.encodeSync(ChatCompletionRequest)(decode(input)) as unknown as Record<string, unknown>
    expect(encoded["top_k"]).toBe(5)
    expect(encoded["metadata"]).toEqual({ a: "b" })
  })
})
