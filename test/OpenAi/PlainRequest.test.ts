/**
 * The plain-request recogniser of the fast path must give the answers the Schema gives: whatever it accepts, the
 * Schema decodes to the same value; what it declines goes to the Schema. Hostile variations of real requests (wrong
 * types, nulls, extremes, added and removed fields, ±Infinity and -0 as JSON can carry them) hold it to that.
 */
import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { plainChatRequest } from "../../src/OpenAi/PlainRequest.js"
import { ChatCompletionRequest } from "../../src/OpenAi/Schemas.js"
import { expectAgreesWithSchema } from "../support/PlainRequest.js"

const decode = Schema.decodeUnknownEither(ChatCompletionRequest)

const bases: ReadonlyArray<unknown> = [
  { model: "gpt-4o", messages: [{ role: "user", content: "Hi" }] },
  { model: "m", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi", name: "ann" }], stream: true, stream_options: { include_usage: true } },
  {
    model: "m",
    messages: [
      { role: "developer", content: "d" },
      { role: "user", content: "q" },
      { role: "assistant", content: null, refusal: null, reasoning_content: "r" },
      { role: "tool", content: "42", tool_call_id: "call_1" }
    ],
    temperature: 0.7,
    top_p: 1,
    n: 1,
    stop: ["\n", "END"],
    max_tokens: 100,
    max_completion_tokens: 200,
    presence_penalty: -2,
    frequency_penalty: 2,
    seed: 7,
    user: "u",
    parallel_tool_calls: false,
    reasoning_effort: "low",
    logprobs: true,
    top_logprobs: 20,
    metadata: { any: "thing" }
  },
  { model: "m", messages: [{ role: "user", content: [{ type: "text", text: "parts go to the Schema" }] }], tools: [{ type: "function", function: { name: "f" } }] }
]


describe("plainChatRequest", () => {
  it("accepts only what the Schema decodes to the same value", () => {
    expectAgreesWithSchema(plainChatRequest, decode, bases)
  })

  it("takes the common requests and leaves parts, tools and invalid settings to the Schema", () => {
    for (const base of bases.slice(0, 3)) expect(plainChatRequest(base)).toBe(base)
    expect(plainChatRequest(bases[3])).toBeUndefined()
    expect(plainChatRequest({ model: "m", messages: [{ role: "user", content: "x" }], temperature: 3 })).toBeUndefined()
    expect(plainChatRequest({ model: "m", messages: [{ role: "user", content: "x" }], response_format: { type: "text" } })).toBeUndefined()
    expect(plainChatRequest({ model: "", messages: [{ role: "user", content: "x" }] })).toBeUndefined()
    expect(plainChatRequest({ model: "m", messages: [] })).toBeUndefined()
  })
})
