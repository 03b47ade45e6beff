/**
 * The embeddings dialect llm-proxy serves: OpenAI's `POST /v1/embeddings` request and response, the checks of its
 * input, and what an upstream's answer must be before a client sees it.
 *
 * Vectors travel inside the gateway as float values (`Vector`): an upstream's JSON numbers as it wrote them, or
 * float32 values (a decoded base64 answer, the mock's). The edge writes them as JSON numbers or, with
 * `encoding_format: "base64"`, as base64 of their little-endian float32 bytes: what OpenAI sends and its SDKs decode
 * (the openai SDKs ask for base64 by default).
 */
import { Schema } from "effect"

const preserve = { parseOptions: { onExcessProperty: "preserve" } } as const

/** The most inputs one request may carry (strings, or token-id arrays): OpenAI's own bound. */
export const maxEmbeddingInputs = 2048

/** The largest `dimensions` a request may ask for. */
export const maxEmbeddingDimensions = 65_536

/** The largest token id an input may hold (ids of real tokenizers are far below it). */
export const maxTokenId = 2 ** 31 - 1

/** What may be embedded: a string, strings, one array of token ids, or arrays of token ids. */
export type EmbeddingInputValue = string | ReadonlyArray<string> | ReadonlyArray<number> | ReadonlyArray<ReadonlyArray<number>>

const isTokenId = (value: unknown): value is number => typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= maxTokenId

/** A value named for a message: its JSON text when short, else its kind. */
const shown = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  if (typeof value === "object") return "an object"
  if (typeof value === "string") return value.length <= 20 ? JSON.stringify(value) : "a string"
  return String(value)
}

const tokenIdRule = `token ids are integers from 0 to ${maxTokenId}`

/** The first token of `tokens` that is not a token id, described; `undefined` when all are. */
const tokenProblem = (tokens: ReadonlyArray<unknown>, where: string): string | undefined => {
  for (let index = 0; index < tokens.length; index++) {
    if (!isTokenId(tokens[index])) return `${where}[${index}] is ${shown(tokens[index])}: ${tokenIdRule}`
  }
  return undefined
}

const tooMany = (count: number) => `holds ${count} inputs: at most ${maxEmbeddingInputs} per request`

/**
 * What is wrong with an `input`, in words a client can act on, naming the first offending item; `undefined` when it
 * is valid. An array's kind is told by its first item: strings, token ids, or arrays of token ids.
 */
export const inputProblem = (input: unknown): string | undefined => {
  if (typeof input === "string") return input.length === 0 ? "must not be an empty string" : undefined
  if (!Array.isArray(input)) {
    return `must be a string, an array of strings, an array of token ids or an array of token-id arrays, not ${shown(input)}`
  }
  if (input.length === 0) return "must not be an empty array"
  const first: unknown = input[0]
  if (typeof first === "string") {
    if (input.length > maxEmbeddingInputs) return tooMany(input.length)
    for (let index = 0; index < input.length; index++) {
      const item: unknown = input[index]
      if (typeof item !== "string") return `input[${index}] is ${shown(item)}: an array of strings holds only strings`
      if (item.length === 0) return `input[${index}] is an empty string`
    }
    return undefined
  }
  if (typeof first === "number") return tokenProblem(input, "input")
  if (Array.isArray(first)) {
    if (input.length > maxEmbeddingInputs) return tooMany(input.length)
    for (let index = 0; index < input.length; index++) {
      const item: unknown = input[index]
      if (!Array.isArray(item)) return `input[${index}] is ${shown(item)}: an array of token-id arrays holds only arrays`
      if (item.length === 0) return `input[${index}] is an empty array`
      const problem = tokenProblem(item, `input[${index}]`)
      if (problem !== undefined) return problem
    }
    return undefined
  }
  return `input[0] is ${shown(first)}: input items are strings, token ids or arrays of token ids`
}

const tokenIdSchema = { type: "integer", minimum: 0, maximum: maxTokenId }

/**
 * `input`: a string, an array of strings, an array of token ids, or an array of token-id arrays; nothing empty, at
 * most 2048 inputs. Checked by `inputProblem`, whose message names the first offending item.
 */
export const EmbeddingInput = Schema.declare((value: unknown): value is EmbeddingInputValue => inputProblem(value) === undefined, {
  identifier: "EmbeddingInput",
  description: `What to embed: a string, an array of up to ${maxEmbeddingInputs} strings, an array of token ids, or an array of up to ${maxEmbeddingInputs} token-id arrays. Nothing empty.`,
  jsonSchema: {
    anyOf: [
      { type: "string", minLength: 1 },
      { type: "array", minItems: 1, maxItems: maxEmbeddingInputs, items: { type: "string", minLength: 1 } },
      { type: "array", minItems: 1, items: tokenIdSchema },
      { type: "array", minItems: 1, maxItems: maxEmbeddingInputs, items: { type: "array", minItems: 1, items: tokenIdSchema } }
    ]
  },
  message: (issue) => ({ message: inputProblem(issue.actual) ?? "is not a valid input", override: true })
})

/** How the vectors of an answer are written. */
export const EncodingFormat = Schema.Literal("float", "base64")
export type EncodingFormat = typeof EncodingFormat.Type

/** `POST /v1/embeddings` body. Unknown fields are kept and forwarded to OpenAI-compatible upstreams. */
export const EmbeddingRequest = Schema.Struct({
  model: Schema.String.pipe(Schema.minLength(1)),
  input: EmbeddingInput,
  /** How many dimensions each vector should have (models that support shortening honour it). */
  dimensions: Schema.optional(Schema.Int.pipe(Schema.between(1, maxEmbeddingDimensions))),
  /** `float` (the default): JSON numbers; `base64`: little-endian float32 bytes, base64-encoded. */
  encoding_format: Schema.optional(EncodingFormat),
  user: Schema.optional(Schema.String)
}).annotations({ identifier: "CreateEmbeddingRequest", ...preserve })
export type EmbeddingRequest = typeof EmbeddingRequest.Type

/** Token accounting of an embeddings request: prompt tokens only. */
export const EmbeddingUsage = Schema.Struct({
  prompt_tokens: Schema.Int,
  total_tokens: Schema.Int
}).annotations({ identifier: "EmbeddingUsage" })
export type EmbeddingUsage = typeof EmbeddingUsage.Type

/** One vector of an answer: JSON numbers, or base64 of little-endian float32 with `encoding_format: "base64"`. */
export const Embedding = Schema.Struct({
  object: Schema.Literal("embedding"),
  index: Schema.Int,
  embedding: Schema.Union(Schema.Array(Schema.Number), Schema.String)
}).annotations({ identifier: "Embedding" })
export type Embedding = typeof Embedding.Type

/** The answer to `POST /v1/embeddings`: one vector per input, in input order; `model` is the public name that served. */
export const CreateEmbeddingResponse = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(Embedding),
  model: Schema.String,
  usage: EmbeddingUsage
}).annotations({ identifier: "CreateEmbeddingResponse" })
export type CreateEmbeddingResponse = typeof CreateEmbeddingResponse.Type

// ---------------------------------------------------------------------------------------------------------------
// Inside the gateway

/** One embedding as the gateway holds it: an upstream's JSON numbers as written, or float32 values. */
export type Vector = ReadonlyArray<number> | Float32Array

/** What a provider answers: one vector per input, in input order, and its usage when the upstream reported it. */
export interface Embeddings {
  readonly vectors: ReadonlyArray<Vector>
  readonly usage: EmbeddingUsage | undefined
}

/** How many inputs a (valid) input holds: a string or one token array is one. */
export const inputCount = (input: EmbeddingInputValue): number =>
  typeof input === "string" || typeof input[0] === "number" ? 1 : input.length

/** The texts of an input, or `undefined` when it is made of token ids. */
export const inputTexts = (input: EmbeddingInputValue): ReadonlyArray<string> | undefined =>
  typeof input === "string" ? [input] : typeof input[0] === "string" ? (input as ReadonlyArray<string>) : undefined

/** The token-id arrays of an input, or `undefined` when it is made of text. */
export const inputTokens = (input: EmbeddingInputValue): ReadonlyArray<ReadonlyArray<number>> | undefined =>
  typeof input === "string" || typeof input[0] === "string"
    ? undefined
    : typeof input[0] === "number"
      ? [input as ReadonlyArray<number>]
      : (input as ReadonlyArray<ReadonlyArray<number>>)

// ---------------------------------------------------------------------------------------------------------------
// float32 and base64

/** Whether a number survives as a float32: finite, and within float32's range. */
const isFloat32 = (value: unknown): value is number => typeof value === "number" && Number.isFinite(Math.fround(value))

/** A vector's little-endian float32 bytes in base64, as OpenAI writes `encoding_format: "base64"`. */
export const toBase64 = (vector: Vector): string => {
  const bytes = Buffer.alloc(vector.length * 4)
  for (let index = 0; index < vector.length; index++) bytes.writeFloatLE(vector[index]!, index * 4)
  return bytes.toString("base64")
}

const base64Text = /^[A-Za-z0-9+/]*={0,2}$/

/**
 * The float32 values of a base64 vector, or `undefined` when it is not one: not base64, no whole float32, or a
 * value that is not finite (NaN and infinities would reach a float client as `null`).
 */
export const fromBase64 = (text: string): Float32Array | undefined => {
  if (text.length % 4 === 1 || !base64Text.test(text)) return undefined
  const bytes = Buffer.from(text, "base64")
  if (bytes.length === 0 || bytes.length % 4 !== 0) return undefined
  const vector = new Float32Array(bytes.length / 4)
  for (let index = 0; index < vector.length; index++) {
    const value = bytes.readFloatLE(index * 4)
    if (!Number.isFinite(value)) return undefined
    vector[index] = value
  }
  return vector
}

/** A vector as the client asked for it. */
const encoded = (vector: Vector, format: EncodingFormat): ReadonlyArray<number> | string =>
  format === "base64" ? toBase64(vector) : vector instanceof Float32Array ? Array.from(vector) : vector

/** The answer a client gets: its vectors in input order, encoded as it asked, under the public model name. */
export const embeddingResponse = (vectors: ReadonlyArray<Vector>, usage: EmbeddingUsage, model: string, format: EncodingFormat): CreateEmbeddingResponse => ({
  object: "list",
  data: vectors.map((vector, index) => ({ object: "embedding" as const, index, embedding: encoded(vector, format) })),
  model,
  usage
})

// ---------------------------------------------------------------------------------------------------------------
// What upstreams send

type JsonObject = Record<string, unknown>

const isObject = (value: unknown): value is JsonObject => typeof value === "object" && value !== null && !Array.isArray(value)

const isCount = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/** A vector an upstream sent: a non-empty array of float32-range numbers, or base64 float32; `undefined` otherwise. */
export const vectorOf = (value: unknown): Vector | undefined => {
  if (typeof value === "string") return fromBase64(value)
  if (!Array.isArray(value) || value.length === 0) return undefined
  for (const item of value) if (!isFloat32(item)) return undefined
  return value as ReadonlyArray<number>
}

/** Embeddings usage as reported, or `undefined` when its counts are not counts (the gateway then counts). */
export const embeddingUsageOf = (value: unknown): EmbeddingUsage | undefined => {
  const prompt = isObject(value) ? value["prompt_tokens"] : undefined
  if (!isCount(prompt)) return undefined
  const total = (value as JsonObject)["total_tokens"]
  return { prompt_tokens: prompt, total_tokens: isCount(total) && total >= prompt ? total : prompt }
}

/**
 * What is wrong with an answer's vectors as a whole, or `undefined`: one answer's vectors all have the same length,
 * and that is `dimensions` when the request asked for it (a vector store refuses anything else).
 */
export const vectorsProblem = (vectors: ReadonlyArray<Vector>, dimensions: number | undefined): string | undefined => {
  const length = vectors[0]?.length
  if (length === undefined) return undefined
  for (let index = 1; index < vectors.length; index++) {
    if (vectors[index]!.length !== length) return `embeddings of different lengths (${length} and ${vectors[index]!.length})`
  }
  return dimensions !== undefined && length !== dimensions ? `embeddings of ${length} dimensions where ${dimensions} were asked for` : undefined
}

/**
 * An OpenAI-compatible answer to an embeddings request of `inputs` inputs: exactly one valid vector per input, each
 * `index` once (the answer may list them in any order), or what is wrong with it. Usage is kept when its counts
 * are counts.
 */
export const embeddingsOf = (body: unknown, inputs: number): Embeddings | string => {
  if (!isObject(body)) return "an embeddings answer that is not an object"
  const data = body["data"]
  if (!Array.isArray(data)) return "an embeddings answer without a data array"
  if (data.length !== inputs) return `${data.length} embeddings for ${inputs} inputs`
  const vectors = new Array<Vector | undefined>(inputs).fill(undefined)
  for (let position = 0; position < data.length; position++) {
    const item: unknown = data[position]
    if (!isObject(item)) return `an embedding (data[${position}]) that is not an object`
    const index = item["index"] === undefined ? position : item["index"]
    if (!Number.isSafeInteger(index) || (index as number) < 0 || (index as number) >= inputs) return `an embedding index ${shown(index)} outside 0..${inputs - 1}`
    if (vectors[index as number] !== undefined) return `embedding index ${index as number} twice`
    const vector = vectorOf(item["embedding"])
    if (vector === undefined) return `an embedding (data[${position}]) that is not a non-empty array of float32 numbers or base64 float32`
    vectors[index as number] = vector
  }
  return { vectors: vectors as ReadonlyArray<Vector>, usage: embeddingUsageOf(body["usage"]) }
}
