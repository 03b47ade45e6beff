/**
 * The plain Messages request recogniser must give the answers the Schema gives: whatever it accepts, the Schema
 * decodes to the same value; what it declines goes to the Schema. Hostile variations of real requests hold it to that.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import fc from "fast-check"
import { plainMessagesRequest } from "../../src/Anthropic/PlainRequest.js"
import { MessagesRequest } from "../../src/Anthropic/Wire.js"
import { jsonText, mutatedJson } from "../support/FuzzArbitraries.js"

const decode = Schema.decodeUnknownEither(MessagesRequest)

const bases: ReadonlyArray<unknown> = [
  { model: "claude-sonnet-4-5", max_tokens: 1024, messages: [{ role: "user", content: "Hi" }] },
  {
    model: "m",
    max_tokens: 64,
    system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
    messages: [
      { role: "user", content: [{ type: "text", text: "q" }] },
      { role: "assistant", content: "a" },
      { role: "user", content: "again" }
    ],
    stop_sequences: ["END"],
    temperature: 0.5,
    top_p: 1,
    top_k: 40,
    metadata: { user_id: "u" },
    stream: true,
    service_tier: "auto"
  },
  { model: "m", max_tokens: 8, system: "s", messages: [{ role: "user", content: "x" }], tools: [{ name: "t", input_schema: { type: "object" } }] },
  { model: "m", max_tokens: 8, messages: [{ role: "user", content: [{ type: "image", source: { type: "url", url: "https://x" } }] }] }
]

const requests = fc.oneof(fc.constantFrom(...bases), fc.constantFrom(...bases).chain((base) => mutatedJson(base, 3))).map((value) => JSON.parse(jsonText(value)) as unknown)

describe("plainMessagesRequest", () => {
  it("accepts only what the Schema decodes to the same value", () => {
    let accepted = 0
    fc.assert(
      fc.property(requests, (payload) => {
        const plain = plainMessagesRequest(payload)
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

  it("takes the common requests and leaves tools, images and invalid settings to the Schema", () => {
    expect(plainMessagesRequest(bases[0])).toBe(bases[0])
    expect(plainMessagesRequest(bases[1])).toBe(bases[1])
    expect(plainMessagesRequest(bases[2])).toBeUndefined()
    expect(plainMessagesRequest(bases[3])).toBeUndefined()
    expect(plainMessagesRequest({ model: "m", messages: [{ role: "user", content: "x" }] })).toBeUndefined()
    expect(plainMessagesRequest({ model: "m", max_tokens: 1, messages: [{ role: "user", content: "x" }], temperature: 1.5 })).toBeUndefined()
  })
})
