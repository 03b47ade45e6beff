/**
 * The embeddings dialect without HTTP: request decoding (every input shape OpenAI takes, and a clear 400 naming the
 * offending item for everything else), base64 byte-exact with OpenAI's little-endian float32, and the checks of an
 * OpenAI-compatible upstream's answer (nothing JSON can hold makes them throw; what they accept is whole and in
 * input order).
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import fc from "fast-check"
import { invalidRequestOfParseError } from "../../src/Http/Edge.js"
import {
  EmbeddingRequest,
  embeddingResponse,
  embeddingsOf,
  fromBase64,
  inputCount,
  inputProblem,
  inputTexts,
  inputTokens,
  maxEmbeddingInputs,
  maxTokenId,
  toBase64
} from "../../src/OpenAi/Embeddings.js"
import type { EmbeddingInputValue, Vector } from "../../src/OpenAi/Embeddings.js"
import { extremeNumber, jsonText, mutatedJson, nastyString, weirdValue } from "../support/FuzzArbitraries.js"

const decode = Schema.decodeUnknownEither(EmbeddingRequest)

/** The 400 a body gets, as the edge words it, or the decoded request. */
const decoded = (body: unknown) => Either.mapLeft(decode(body), invalidRequestOfParseError)

const refusal = (body: unknown) => {
  const result = decoded(body)
  if (Either.isRight(result)) throw new Error(`accepted: ${JSON.stringify(body)}`)
  return result.left
}

const text = fc.string({ minLength: 1, maxLength: 40 })
const tokenId = fc.integer({ min: 0, max: maxTokenId })

/** Every valid shape of `input`. */
const validInput: fc.Arbitrary<EmbeddingInputValue> = fc.oneof(
  text,
  fc.array(text, { minLength: 1, maxLength: 20 }),
  fc.array(tokenId, { minLength: 1, maxLength: 20 }),
  fc.array(fc.array(tokenId, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 20 })
)

describe("EmbeddingRequest decoding", () => {
  it.prop("accepts every input shape, with dimensions, encoding_format and user, keeping unknown fields", [validInput, fc.option(fc.integer({ min: 1, max: 65_536 }), { nil: undefined }), fc.option(fc.constantFrom("float" as const, "base64" as const), { nil: undefined })], ([input, dimensions, format]) => {
    const body = {
      model: "m",
      input,
      ...(dimensions === undefined ? {} : { dimensions }),
      ...(format === undefined ? {} : { encoding_format: format }),
      user: "u-1",
      input_type: "query"
    }
    const result = decoded(body)
    expect(Either.isRight(result)).toBe(true)
    expect(Either.getOrThrow(result)).toStrictEqual(body)
    expect(inputProblem(input)).toBeUndefined()
  })

  it.prop("tells the inputs apart: texts or token arrays, counted as OpenAI counts them", [validInput], ([input]) => {
    const texts = inputTexts(input)
    const tokens = inputTokens(input)
    expect((texts === undefined) !== (tokens === undefined)).toBe(true)
    expect(inputCount(input)).toBe(texts?.length ?? tokens?.length)
    if (typeof input === "string") expect(texts).toEqual([input])
  })

  it("refuses each bad input with a 400 on `input` naming what is wrong", () => {
    const cases: ReadonlyArray<readonly [unknown, string]> = [
      ["", "must not be an empty string"],
      [[], "must not be an empty array"],
      [["a", ""], "input[1] is an empty string"],
      [["a", 1], "input[1] is 1: an array of strings holds only strings"],
      [Array.from({ length: maxEmbeddingInputs + 1 }, () => "x"), `holds ${maxEmbeddingInputs + 1} inputs: at most 2048 per request`],
      [[1, 2.5], "input[1] is 2.5: token ids are integers"],
      [[1, -1], "input[1] is -1: token ids are integers"],
      [[2 ** 31], "input[0] is 2147483648: token ids are integers"],
      [[[1], []], "input[1] is an empty array"],
      [[[1], [2, "3"]], 'input[1][1] is "3": token ids are integers'],
      [[[1], 2], "input[1] is 2: an array of token-id arrays holds only arrays"],
      [[null], "input[0] is null"],
      [{ text: "a" }, "must be a string, an array of strings, an array of token ids or an array of token-id arrays, not an object"],
      [42, "not 42"]
    ]
    for (const [input, message] of cases) {
      const error = refusal({ model: "m", input })
      expect({ input, param: error.param }).toEqual({ input, param: "input" })
      expect(error.message).toContain(message)
      expect(error.message.length).toBeLessThan(300)
    }
    // 2048 inputs are fine, and a token array may be longer than 2048 ids (it is one input)
    expect(Either.isRight(decoded({ model: "m", input: Array.from({ length: maxEmbeddingInputs }, () => "x") }))).toBe(true)
    expect(Either.isRight(decoded({ model: "m", input: Array.from({ length: 5000 }, (_, index) => index) }))).toBe(true)
  })

  it("refuses a missing input, bad dimensions, an unknown encoding_format and a bad model, naming the field", () => {
    expect(refusal({ model: "m" }).param).toBe("input")
    for (const dimensions of [0, -3, 1.5, 65_537, "256", null]) expect(refusal({ model: "m", input: "a", dimensions }).param).toBe("dimensions")
    for (const encoding_format of ["base32", "", null, 1]) expect(refusal({ model: "m", input: "a", encoding_format }).param).toBe("encoding_format")
    for (const model of ["", 7, undefined]) expect(refusal({ model, input: "a" }).param).toBe("model")
    expect(refusal({ model: "m", input: "a", user: 1 }).param).toBe("user")
  })

  it.prop("never throws on any JSON value, and what it accepts has a valid input", [fc.oneof(mutatedJson({ model: "m", input: ["a", "b"], dimensions: 8, encoding_format: "base64" }), mutatedJson({ model: "m", input: [[1, 2], [3]] }), weirdValue, fc.jsonValue())], ([body]) => {
    const result = decoded(body)
    if (Either.isRight(result)) expect(inputProblem(result.right.input)).toBeUndefined()
    else {
      expect(result.left.message.length).toBeGreaterThan(0)
      expect(result.left.param).not.toBe(null)
    }
  })
})

describe("base64 vectors", () => {
  const float32s = fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 64 })

  it.prop("are the little-endian float32 bytes OpenAI writes: decoded as the openai SDK does, they give the same floats", [float32s], ([values]) => {
    const encoded = toBase64(values)
    // What the openai SDK does with a base64 embedding: Buffer → Float32Array over its bytes (little-endian hosts).
    const bytes = Buffer.from(encoded, "base64")
    expect(bytes.length).toBe(values.length * 4)
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    expect(Array.from({ length: values.length }, (_, index) => view.getFloat32(index * 4, true))).toEqual(values.map(Math.fround))
    expect(Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)))).toEqual(values.map(Math.fround))
    // the gateway's own decoding reads back what it wrote, and writes it again byte for byte
    const back = fromBase64(encoded)
    expect(back === undefined ? undefined : Array.from(back)).toEqual(values.map(Math.fround))
    expect(toBase64(back!)).toBe(encoded)
  })

  it("writes a known vector exactly as OpenAI does", () => {
    // [1, -2, 0.5] as little-endian float32: 0000803f 000000c0 0000003f
    expect(toBase64([1, -2, 0.5])).toBe(Buffer.from("0000803f000000c00000003f", "hex").toString("base64"))
    expect(toBase64(new Float32Array([0.1]))).toBe(Buffer.from(new Float32Array([0.1]).buffer).toString("base64"))
  })

  it("refuses what is no whole float32 vector: not base64, an empty or partial vector, NaN or infinities", () => {
    for (const bad of ["", "AAA", "AAAAA", "not base64!", "AAAA AAAA", "////", Buffer.from(new Float32Array([Infinity]).buffer).toString("base64"), Buffer.from(new Float32Array([NaN]).buffer).toString("base64")]) {
      expect({ bad, decoded: fromBase64(bad) }).toEqual({ bad, decoded: undefined })
    }
    expect(fromBase64("AACAPw==")).toEqual(new Float32Array([1]))
  })
})

describe("embeddingResponse", () => {
  it("writes OpenAI's list, floats as numbers or base64, in input order, under the public model", () => {
    const vectors: ReadonlyArray<Vector> = [[0.25, -1], new Float32Array([0.5, 2])]
    const usage = { prompt_tokens: 3, total_tokens: 3 }
    expect(embeddingResponse(vectors, usage, "public", "float")).toStrictEqual({
      object: "list",
      data: [
        { object: "embedding", index: 0, embedding: [0.25, -1] },
        { object: "embedding", index: 1, embedding: [0.5, 2] }
      ],
      model: "public",
      usage
    })
    const base64 = embeddingResponse(vectors, usage, "public", "base64")
    expect(base64.data.map((item) => item.embedding)).toEqual([toBase64([0.25, -1]), toBase64([0.5, 2])])
  })
})

describe("an OpenAI-compatible upstream's embeddings answer", () => {
  const vector = fc.oneof(
    fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 8 }),
    fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 8 }).map((values) => toBase64(values))
  )

  it.prop("is read in input order whatever order it lists its items in, floats or base64", [fc.array(vector, { minLength: 1, maxLength: 10 }).chain((vectors) => fc.tuple(fc.constant(vectors), fc.shuffledSubarray(vectors.map((_, index) => index), { minLength: vectors.length, maxLength: vectors.length })))], ([[vectors, order]]) => {
    const body = { object: "list", data: order.map((index) => ({ object: "embedding", index, embedding: vectors[index] })), model: "x", usage: { prompt_tokens: 4, total_tokens: 4 } }
    const answer = embeddingsOf(body, vectors.length)
    if (typeof answer === "string") throw new Error(answer)
    expect(answer.usage).toEqual({ prompt_tokens: 4, total_tokens: 4 })
    expect(answer.vectors.map((read) => toBase64(read))).toEqual(vectors.map((sent) => (typeof sent === "string" ? sent : toBase64(sent))))
  })

  it("refuses an answer that is not one whole vector per input", () => {
    const item = (index: unknown, embedding: unknown = [0.5]) => ({ object: "embedding", index, embedding })
    const cases: ReadonlyArray<unknown> = [
      null,
      [],
      { data: "x" },
      { data: [item(0)] },
      { data: [item(0), item(0)] },
      { data: [item(0), item(2)] },
      { data: [item(0), item(-1)] },
      { data: [item(0), item(1.5)] },
      { data: [item(0), item(1, [])] },
      { data: [item(0), item(1, ["0.5"])] },
      { data: [item(0), item(1, [1e39])] },
      { data: [item(0), item(1, "not base64!")] },
      { data: [item(0), item(1, null)] },
      { data: [item(0), "embedding"] }
    ]
    for (const body of cases) expect({ body, answer: typeof embeddingsOf(body, 2) }).toEqual({ body, answer: "string" })
  })

  it("keeps sane usage only: garbage counts leave it to the gateway", () => {
    const data = [{ object: "embedding", index: 0, embedding: [1] }]
    const usageOf = (usage: unknown) => {
      const answer = embeddingsOf({ data, usage }, 1)
      if (typeof answer === "string") throw new Error(answer)
      return answer.usage
    }
    expect(usageOf({ prompt_tokens: 5, total_tokens: 5 })).toEqual({ prompt_tokens: 5, total_tokens: 5 })
    expect(usageOf({ prompt_tokens: 5 })).toEqual({ prompt_tokens: 5, total_tokens: 5 })
    for (const usage of [undefined, null, "5", { prompt_tokens: -1 }, { prompt_tokens: 1.5 }, { prompt_tokens: 1e300 }, { total_tokens: 3 }]) {
      expect(usageOf(usage)).toBeUndefined()
    }
  })

  it.prop("never throws on any JSON an upstream could send, and what it accepts is whole", [fc.oneof(mutatedJson({ object: "list", data: [{ object: "embedding", index: 0, embedding: [0.1, 0.2] }, { object: "embedding", index: 1, embedding: "AACAPw==" }], model: "m", usage: { prompt_tokens: 2, total_tokens: 2 } }), weirdValue, fc.jsonValue(), fc.record({ data: fc.array(fc.record({ index: fc.oneof(fc.nat(3), extremeNumber), embedding: fc.oneof(fc.array(extremeNumber), nastyString) })) })), fc.integer({ min: 1, max: 3 })], ([body, inputs]) => {
    const answer = embeddingsOf(JSON.parse(jsonText(body)) as unknown, inputs)
    if (typeof answer === "string") return
    expect(answer.vectors).toHaveLength(inputs)
    for (const read of answer.vectors) {
      expect(read.length).toBeGreaterThan(0)
      for (const value of read) expect(Number.isFinite(Math.fround(value))).toBe(true)
    }
    if (answer.usage !== undefined) expect(answer.usage.total_tokens).toBeGreaterThanOrEqual(answer.usage.prompt_tokens)
  })
})
