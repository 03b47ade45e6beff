/**
 * The plain Responses request recogniser must give the answers the Schema gives: whatever it accepts, the Schema
 * decodes to the same value; what it declines goes to the Schema. Hostile variations of real requests hold it to that.
 */
import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { plainResponsesRequest } from "../../src/Responses/PlainRequest.js"
import { ResponsesRequest } from "../../src/Responses/Wire.js"
import { expectAgreesWithSchema } from "../support/PlainRequest.js"

const decode = Schema.decodeUnknownEither(ResponsesRequest)

const bases: ReadonlyArray<unknown> = [
  { model: "gpt-4.1", input: "Tell me a joke." },
  {
    model: "m",
    instructions: "Be brief.",
    input: [
      { role: "developer", content: "Answer in French." },
      { type: "message", role: "user", content: [{ type: "input_text", text: "q" }] },
      { role: "assistant", content: [{ type: "output_text", text: "a", annotations: [] }] },
      { role: "user", content: "again" }
    ],
    max_output_tokens: 64,
    temperature: 0.5,
    top_p: 1,
    parallel_tool_calls: true,
    metadata: { run: "7" },
    store: false,
    stream: true,
    previous_response_id: "resp_123",
    user: "u",
    service_tier: "auto",
    include: ["reasoning.encrypted_content"]
  },
  { model: "m", input: "x", tools: [{ type: "function", name: "t", parameters: { type: "object" } }], tool_choice: "auto" },
  { model: "m", input: [{ role: "user", content: [{ type: "input_image", image_url: "https://x/y.png" }] }], text: { format: { type: "json_object" } } },
  { model: "m", input: [{ type: "function_call_output", call_id: "c", output: "42" }], reasoning: { effort: "low" } }
]


describe("plainResponsesRequest", () => {
  it("accepts only what the Schema decodes to the same value", () => {
    expectAgreesWithSchema(plainResponsesRequest, decode, bases)
  })

  it("takes the common requests and leaves tools, images, function calls and invalid settings to the Schema", () => {
    expect(plainResponsesRequest(bases[0])).toBe(bases[0])
    expect(plainResponsesRequest(bases[1])).toBe(bases[1])
    expect(plainResponsesRequest(bases[2])).toBeUndefined()
    expect(plainResponsesRequest(bases[3])).toBeUndefined()
    expect(plainResponsesRequest(bases[4])).toBeUndefined()
    expect(plainResponsesRequest({ model: "", input: "x" })).toBeUndefined()
    expect(plainResponsesRequest({ model: "m", input: "x", temperature: 2.5 })).toBeUndefined()
    expect(plainResponsesRequest({ model: "m", input: [{ role: "tool", content: "x" }] })).toBeUndefined()
    expect(plainResponsesRequest({ model: "m", input: "x", user: null })).toBeUndefined()
  })
})
