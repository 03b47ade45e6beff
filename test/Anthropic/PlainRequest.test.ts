/**
 * The plain Messages request recogniser must give the answers the Schema gives: whatever it accepts, the Schema
 * decodes to the same value; what it declines goes to the Schema. Hostile variations of real requests hold it to that.
 */
import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { plainMessagesRequest } from "../../src/Anthropic/PlainRequest.js"
import { MessagesRequest } from "../../src/Anthropic/Wire.js"
import { expectAgreesWithSchema } from "../support/PlainRequest.js"

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


describe("plainMessagesRequest", () => {
  it("accepts only what the Schema decodes to the same value", () => {
    expectAgreesWithSchema(plainMessagesRequest, decode, bases)
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
