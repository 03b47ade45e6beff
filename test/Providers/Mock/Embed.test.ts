/**
 * The mock's embeddings: deterministic unit vectors from the text, `dimensions` honoured (256 by default), texts
 * that share words closer than texts that do not, bounded output.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"
import fc from "fast-check"
import type { EmbeddingRequest, Vector } from "../../../src/OpenAi/Embeddings.js"
import { defaultDimensions, embed, maxValues } from "../../../src/Providers/Mock/Embed.js"
import * as Mock from "../../../src/Providers/Mock/Provider.js"

const vectorsOf = (request: EmbeddingRequest): ReadonlyArray<Vector> => Effect.runSync(embed(request)).vectors

const norm = (vector: Vector): number => Math.sqrt(Array.from(vector).reduce((sum, value) => sum + value * value, 0))

const cosine = (a: Vector, b: Vector): number => Array.from(a).reduce((sum, value, index) => sum + value * b[index]!, 0) / (norm(a) * norm(b))

describe("mock embeddings", () => {
  it.prop("are unit vectors of the asked dimensions (256 by default), the same for the same text", [fc.array(fc.string({ minLength: 1, maxLength: 60 }), { minLength: 1, maxLength: 8 }), fc.option(fc.integer({ min: 1, max: 1024 }), { nil: undefined })], ([texts, dimensions]) => {
    const request: EmbeddingRequest = { model: "mock", input: texts, ...(dimensions === undefined ? {} : { dimensions }) }
    const first = vectorsOf(request)
    expect(first).toHaveLength(texts.length)
    for (const vector of first) {
      expect(vector.length).toBe(dimensions ?? defaultDimensions)
      expect(Math.abs(norm(vector) - 1)).toBeLessThan(1e-5)
      expect(Array.from(vector).every((value) => Math.fround(value) === value)).toBe(true)
    }
    expect(vectorsOf(request)).toEqual(first)
    // one text alone gets the vector it gets in a batch
    expect(vectorsOf({ model: "mock", input: texts[0]!, ...(dimensions === undefined ? {} : { dimensions }) })[0]).toEqual(first[0])
  })

  it("puts texts that share words closer together than texts that do not, whatever their case and punctuation", () => {
    const [query, near, far] = vectorsOf({ model: "mock", input: ["the cat sat on the mat", "A cat, on a mat!", "quarterly revenue forecast"] })
    expect(cosine(query!, near!)).toBeGreaterThan(0.25)
    expect(cosine(query!, near!)).toBeGreaterThan(cosine(query!, far!) + 0.2)
    const [upper, lower] = vectorsOf({ model: "mock", input: ["Hello World", "hello world"] })
    expect(upper).toEqual(lower)
  })

  it("embeds token ids and wordless text too; usage counts words and token ids", () => {
    const tokens = Effect.runSync(embed({ model: "mock", input: [[1, 2, 3], [4]] }))
    expect(tokens.vectors).toHaveLength(2)
    expect(tokens.usage).toEqual({ prompt_tokens: 4, total_tokens: 4 })
    expect(Math.abs(norm(tokens.vectors[0]!) - 1)).toBeLessThan(1e-5)
    const wordless = Effect.runSync(embed({ model: "mock", input: ["!!!", "   ", "one two"], dimensions: 1 }))
    expect(wordless.vectors.map((vector) => Array.from(vector).map(Math.abs))).toEqual([[1], [1], [1]])
    expect(wordless.usage).toEqual({ prompt_tokens: 2, total_tokens: 2 })
  })

  it("refuses a request that would write more than its bound, with a 400 naming dimensions", () => {
    const exit = Effect.runSyncExit(embed({ model: "mock", input: ["a", "b", "c", "d", "e"], dimensions: Math.floor(maxValues / 4) }))
    const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
    expect(Option.getOrUndefined(failure)).toMatchObject({ reason: "InvalidRequest", param: "dimensions" })
    // four inputs of that size are within the bound
    expect(Exit.isSuccess(Effect.runSyncExit(embed({ model: "mock", input: ["a", "b", "c", "d"], dimensions: Math.floor(maxValues / 4) })))).toBe(true)
  })

  it.effect("is what the mock provider answers, within a deadline", () =>
    Effect.gen(function* () {
      const answer = yield* Mock.make({ tokenDelayMs: 0 }).embed({ model: "mock", input: "hi there" })
      expect(answer.vectors[0]).toEqual(vectorsOf({ model: "mock", input: "hi there" })[0])
    }))
})
