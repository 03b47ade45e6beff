/**
 * Gemini embeddings without HTTP: the request as `batchEmbedContents` calls of at most 100 texts, token ids refused,
 * and the answer read back in order or refused as malformed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import fc from "fast-check"
import { maxBatch, toGeminiEmbedBatches, vectorsOfGemini } from "../../../src/Providers/Gemini/Embed.js"
import { jsonText, mutatedJson, weirdValue } from "../../support/FuzzArbitraries.js"

describe("Gemini embeddings request", () => {
  it("sends the texts in order, 100 per call, each naming the model, with outputDimensionality", () => {
    const texts = Array.from({ length: 250 }, (_, index) => `text ${index}`)
    const batches = Either.getOrThrow(toGeminiEmbedBatches({ model: "gemini-embedding-001", input: texts, dimensions: 768 }))
    expect(batches.map((batch) => batch.requests.length)).toEqual([100, 100, 50])
    expect(batches.flatMap((batch) => batch.requests.map((request) => request.content.parts[0]?.text))).toEqual(texts)
    expect(batches[0]?.requests[0]).toEqual({ model: "models/gemini-embedding-001", content: { parts: [{ text: "text 0" }] }, outputDimensionality: 768 })
    expect(maxBatch).toBe(100)
    const single = Either.getOrThrow(toGeminiEmbedBatches({ model: "m", input: "one" }))
    expect(single).toEqual([{ requests: [{ model: "models/m", content: { parts: [{ text: "one" }] } }] }])
  })

  it("refuses token ids with a 400 on input: Gemini takes text", () => {
    for (const input of [[1, 2, 3], [[1], [2]]]) {
      const error = Either.getLeft(toGeminiEmbedBatches({ model: "m", input }))
      expect(error._tag).toBe("Some")
      if (error._tag === "Some") {
        expect(error.value).toMatchObject({ reason: "InvalidRequest", param: "input" })
        expect(error.value.message).toContain("text only")
      }
    }
  })
})

describe("Gemini embeddings answer", () => {
  it("reads embeddings[i].values in order", () => {
    expect(vectorsOfGemini({ embeddings: [{ values: [0.5, 1] }, { values: [-1, 0] }] }, 2)).toEqual([[0.5, 1], [-1, 0]])
  })

  it("refuses a count that is not the texts', and values that are not float32 numbers", () => {
    for (const body of [{}, { embeddings: [] }, { embeddings: [{ values: [1] }] }, { embeddings: [{ values: [1] }, { values: [] }] }, { embeddings: [{ values: [1] }, { values: ["1"] }] }, { embeddings: [{ values: [1] }, { values: "AACAPw==" }] }, { embeddings: [{ values: [1] }, null] }]) {
      expect({ body, answer: typeof vectorsOfGemini(body, 2) }).toEqual({ body, answer: "string" })
    }
  })

  it.prop("never throws on any JSON, and what it accepts has one vector per text", [fc.oneof(mutatedJson({ embeddings: [{ values: [0.1, 0.2] }, { values: [0.3, 0.4] }] }), weirdValue, fc.jsonValue()), fc.integer({ min: 1, max: 3 })], ([body, count]) => {
    const answer = vectorsOfGemini(JSON.parse(jsonText(body)) as unknown, count)
    if (typeof answer !== "string") expect(answer).toHaveLength(count)
  })
})
