/**
 * The mock's embeddings: deterministic unit vectors derived from the text, so that retrieval code can be tested
 * against it without a model. Each word (lower-cased letters and digits) adds a few ±1 entries at positions drawn
 * from its hash, so texts that share words point the same way (positive cosine similarity) and the same text always
 * gets the same vector (case and punctuation aside). A text without words hashes whole; token ids count as words of
 * their own. L2-normalised,
 * `dimensions` honoured (256 by default), float32 values as OpenAI's models give.
 */
import { Effect } from "effect"
import { inputTexts, inputTokens } from "../../OpenAi/Embeddings.js"
import type { EmbeddingRequest, Embeddings } from "../../OpenAi/Embeddings.js"
import { ProviderError } from "../ProviderError.js"

/** The dimensions of a mock vector when the request names none. */
export const defaultDimensions = 256

/** The most numbers the mock writes for one request (inputs × dimensions): no request makes it build gigabytes. */
export const maxValues = 1 << 20

/** Entries each word adds: enough that two different words rarely cancel out. */
const entriesPerFeature = 8

/** FNV-1a over UTF-16 code units: a stable 32-bit hash. */
const hashOf = (text: string): number => {
  let hash = 0x811c9dc5
  for (let index = 0; index < text.length; index++) {
    hash ^= text.charCodeAt(index)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

/** The `step`th draw of a small counter-based generator (mulberry32's mix) seeded by `seed`. */
const draw = (seed: number, step: number): number => {
  let t = (seed + Math.imul(step + 1, 0x6d2b79f5)) | 0
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return (t ^ (t >>> 14)) >>> 0
}

/** Adds one feature's entries to `sums`. */
const addFeature = (sums: Float64Array, feature: string) => {
  const seed = hashOf(feature)
  for (let entry = 0; entry < entriesPerFeature; entry++) {
    const position = draw(seed, 2 * entry) % sums.length
    sums[position] = (sums[position] ?? 0) + (draw(seed, 2 * entry + 1) & 1 ? 1 : -1)
  }
}

/** The words of a text: runs of letters and digits, lower-cased. */
const wordsOf = (text: string): ReadonlyArray<string> => text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []

/** The unit vector of some features, as float32. */
const unitVector = (features: ReadonlyArray<string>, dimensions: number, fallback: string): Float32Array => {
  const sums = new Float64Array(dimensions)
  for (const feature of features) addFeature(sums, feature)
  let norm = 0
  for (const value of sums) norm += value * value
  const vector = new Float32Array(dimensions)
  // Entries that all cancelled out still make a direction: one of the text's own.
  if (norm === 0) vector[hashOf(fallback) % dimensions] = 1
  else {
    const scale = 1 / Math.sqrt(norm)
    for (let index = 0; index < dimensions; index++) vector[index] = sums[index]! * scale
  }
  return vector
}

const refused = (message: string) => new ProviderError({ reason: "InvalidRequest", message, provider: "mock", param: "dimensions", code: null })

/** The mock's answer to an embeddings request; usage counts the words embedded (token ids one each). */
export const embed = (request: EmbeddingRequest): Effect.Effect<Embeddings, ProviderError> =>
  Effect.suspend((): Effect.Effect<Embeddings, ProviderError> => {
    const dimensions = request.dimensions ?? defaultDimensions
    const texts = inputTexts(request.input)
    const tokens = inputTokens(request.input) ?? []
    const inputs = texts?.length ?? tokens.length
    if (inputs * dimensions > maxValues) {
      return Effect.fail(refused(`the mock writes at most ${maxValues} numbers per request: ${inputs} inputs × ${dimensions} dimensions is more`))
    }
    let promptTokens = 0
    const vectors =
      texts !== undefined
        ? texts.map((text) => {
            const words = wordsOf(text)
            promptTokens += words.length
            return unitVector(words.length > 0 ? words : [text], dimensions, text)
          })
        : tokens.map((ids) => {
            promptTokens += ids.length
            return unitVector(ids.map((id) => `#${id}`), dimensions, `#${ids.join(",")}`)
          })
    return Effect.succeed({ vectors, usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } })
  })
