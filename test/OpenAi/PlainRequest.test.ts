/**
 * The plain-request recogniser of the fast path must give the answers the Schema gives: whatever it accepts, the
 * Schema decodes to the same value; what it declines goes to the Schema. Hostile variations of real requests (wrong
 * types, nulls, extremes, added and removed fields, ±Infinity and -0 as JSON can carry them) hold it to that.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import fc from "fast-check"
import { plainChatRequest } from "../../src/OpenAi/PlainRequest.js"
import { ChatCompletionRequest } from "../../src/OpenAi/Schemas.js"
import { jsonText, mutatedJson } from "../support/FuzzArbitraries.js"

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

/** A request as a client could send it: a base, or a base with hostile edits, read back from JSON text. */
const requests = fc.oneof(fc.constantFrom(...bases), fc.constantFrom(...bases).chain((base) => mutatedJson(base, 3))).map((value) => JSON.parse(jsonText(value)) as unknown)

describe("plainChatRequest", () => {
  it("accepts only what the Schema decodes to the same value", () => {
    let accepted = 0
    fc.assert(
      fc.property(requests, (payload) => {
        const plain = plainChatRequest(payload)
        if (plain === undefined) return
        accepted++
        const decoded = decode(payload)
        expect(Either.isRight(decoded)).toBe(true)
        if (Either.isRight(decoded)) expect(plain).toStrictEqual(decoded.right)
      }),
      { numRuns: 5000 }
    )
    // The recogniser is not a no-op: a good share of real requests take it.
    expect(accepted).toBeGreaterThan(500)
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
