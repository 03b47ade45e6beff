/**
 * Pure translation of an OpenAI embeddings request into Gemini's `batchEmbedContents` calls, and of their answers
 * back. Gemini embeds text only, at most `maxBatch` texts per call, and reports no token usage for embeddings.
 */
import { Either } from "effect"
import { inputTexts, vectorOf } from "../../OpenAi/Embeddings.js"
import type { EmbeddingRequest, Vector } from "../../OpenAi/Embeddings.js"
import { ProviderError } from "../Provider.js"
import { provider } from "./Errors.js"

/** The most texts Gemini embeds in one `batchEmbedContents` call. */
export const maxBatch = 100

/** One text of a `batchEmbedContents` call. */
export interface GeminiEmbedContentRequest {
  /** `models/{model}`: Gemini wants the model of the path repeated in every request. */
  readonly model: string
  readonly content: { readonly parts: ReadonlyArray<{ readonly text: string }> }
  readonly outputDimensionality?: number
}

/** The body of `POST /v1beta/models/{model}:batchEmbedContents`. */
export interface GeminiBatchEmbedBody {
  readonly requests: ReadonlyArray<GeminiEmbedContentRequest>
}

const textOnly = new ProviderError({
  reason: "InvalidRequest",
  message: "gemini embeds text only: send input as a string or an array of strings, not token ids",
  provider,
  param: "input",
  code: null
})

/**
 * The calls that embed a request's texts, in input order, `maxBatch` texts each (`dimensions` as
 * `outputDimensionality`); token-id input is refused, since Gemini takes text.
 */
export const toGeminiEmbedBatches = (request: EmbeddingRequest): Either.Either<ReadonlyArray<GeminiBatchEmbedBody>, ProviderError> => {
  const texts = inputTexts(request.input)
  if (texts === undefined) return Either.left(textOnly)
  const model = `models/${request.model}`
  const dimensions = request.dimensions === undefined ? {} : { outputDimensionality: request.dimensions }
  const batches: Array<GeminiBatchEmbedBody> = []
  for (let start = 0; start < texts.length; start += maxBatch) {
    batches.push({ requests: texts.slice(start, start + maxBatch).map((text) => ({ model, content: { parts: [{ text }] }, ...dimensions })) })
  }
  return Either.right(batches)
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * The vectors of one `batchEmbedContents` answer for `count` texts, in their order (`embeddings[i].values`), or what
 * is wrong with it.
 */
export const vectorsOfGemini = (body: unknown, count: number): ReadonlyArray<Vector> | string => {
  const embeddings = isObject(body) ? body["embeddings"] : undefined
  if (!Array.isArray(embeddings)) return "a batchEmbedContents answer without an embeddings array"
  if (embeddings.length !== count) return `${embeddings.length} embeddings for ${count} texts`
  const vectors: Array<Vector> = []
  for (let index = 0; index < embeddings.length; index++) {
    const item: unknown = embeddings[index]
    const values = isObject(item) ? item["values"] : undefined
    // Gemini writes numbers; a string here is no base64 it promised.
    const vector = Array.isArray(values) ? vectorOf(values) : undefined
    if (vector === undefined) return `an embedding (embeddings[${index}]) whose values are not a non-empty array of float32 numbers`
    vectors.push(vector)
  }
  return vectors
}
