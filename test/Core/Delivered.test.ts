/**
 * The delivered-text collector: whole below its bound, measured past it, so an endless stream holds a bounded text.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { DeliveredText } from "../../src/Core/Delivered.js"
import type { ChatCompletionChunk } from "../../src/OpenAi/Schemas.js"

const chunkOf = (delta: Record<string, unknown>): ChatCompletionChunk =>
  ({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, finish_reason: null }] }) as ChatCompletionChunk

describe("DeliveredText", () => {
  it("keeps content, reasoning, refusal and tool calls in order while under its bound", () => {
    const delivered = new DeliveredText(1000)
    delivered.addChunk(chunkOf({ role: "assistant", content: "Hel" }))
    delivered.addChunk(chunkOf({ content: "lo", reasoning_content: "think" }))
    delivered.addChunk(chunkOf({ refusal: "no", tool_calls: [{ index: 0, function: { name: "f", arguments: '{"a":1}' } }] }))
    delivered.addChunk(chunkOf({ content: "" }))
    expect(delivered.texts).toEqual(["Hel", "lo", "think", "no", "f", '{"a":1}'])
    expect(delivered.estimatedTokens).toBe(0)
  })

  it("past its bound keeps no more text, and estimates what came after at four characters a token", () => {
    const delivered = new DeliveredText(10)
    delivered.add("12345678")
    delivered.add("abcd")
    // Once a piece went past the bound, later pieces are measured too, even small ones: the text kept is a prefix.
    delivered.add("x")
    expect(delivered.texts).toEqual(["12345678"])
    expect(delivered.estimatedTokens).toBe(Math.ceil(5 / 4))
  })

  it.prop("never keeps more than its bound, and accounts for every character it was given", [fc.array(fc.string({ maxLength: 50 }), { maxLength: 200 }), fc.integer({ min: 1, max: 500 })], ([pieces, bound]) => {
    const delivered = new DeliveredText(bound)
    for (const piece of pieces) delivered.add(piece)
    const kept = delivered.texts.join("")
    const total = pieces.join("")
    expect(kept.length).toBeLessThanOrEqual(bound)
    expect(total.startsWith(kept)).toBe(true)
    expect(delivered.estimatedTokens).toBe(Math.ceil((total.length - kept.length) / 4))
  })
})
