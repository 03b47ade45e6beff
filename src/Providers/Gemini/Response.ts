/**
 * Pure translation of a Gemini `GenerateContentResponse` into an OpenAI chat completion.
 */
import { Either, Schema } from "effect"
import type {
  ChatCompletion,
  FinishReason,
  ToolCall,
  Usage } from "../../OpenAi/Schemas.js"
import { usageOf as checkedUsage } from "../../OpenAi/Wire.js"
import { ProviderError } from "../Provider.js"
import { carry } from "../ToolCallCarriage.js"
import { malformed } from "../Upstream/Transport.js"

import { provider } from "./Errors.js"

const GeminiResponsePart = Schema.Struct({
  text: Schema.optional(Schema.String),
  thought: Schema.optional(Schema.Boolean),
  thoughtSignature: Schema.optional(Schema.String),
  functionCall: Schema.optional(
    Schema.Struct({
      name: Schema.String,
      args: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
    })
  )
})

const GeminiCandidate = Schema.Struct({
  index: Schema.optional(Schema.Int),
  content: Schema.optional(Schema.Struct({ parts: Schema.optional(Schema.Array(GeminiResponsePart)) })),
  finishReason: Schema.optional(Schema.String)
})
export type GeminiCandidate = typeof GeminiCandidate.Type

const GeminiUsageMetadata = Schema.Struct({
  promptTokenCount: Schema.optional(Schema.Number),
  candidatesTokenCount: Schema.optional(Schema.Number),
  thoughtsTokenCount: Schema.optional(Schema.Number),
  totalTokenCount: Schema.optional(Schema.Number),
  cachedContentTokenCount: Schema.optional(Schema.Number)
})
export type GeminiUsageMetadata = typeof GeminiUsageMetadata.Type

/** The part of a `GenerateContentResponse` (unary body or one stream frame) this proxy reads. */
export const GeminiResponse = Schema.Struct({
  candidates: Schema.optional(Schema.Array(GeminiCandidate)),
  promptFeedback: Schema.optional(
    Schema.Struct({ blockReason: Schema.optional(Schema.String), blockReasonMessage: Schema.optional(Schema.String) })
  ),
  usageMetadata: Schema.optional(GeminiUsageMetadata)
})
export type GeminiResponse = typeof GeminiResponse.Type

const decodeResponse = Schema.decodeUnknownEither(GeminiResponse)

/** Decodes one `GenerateContentResponse`, failing with `MalformedResponse` when it does not have that shape. */
export const decodeGeminiResponse = (body: unknown): Either.Either<GeminiResponse, ProviderError> =>
  Either.mapLeft(decodeResponse(body), () => malformed(provider, "a body that is not a GenerateContentResponse"))

const contentFilterReasons: ReadonlySet<string> = new Set([
  "SAFETY",
  "RECITATION",
  "BLOCKLIST",
  "PROHIBITED_CONTENT",
  "SPII",
  "IMAGE_SAFETY",
  "IMAGE_PROHIBITED_CONTENT",
  "IMAGE_RECITATION"
])

/** Reasons newer than this table that name a filter or a limit. */
const filterLike = /SAFETY|RECITATION|BLOCK|PROHIBITED|SPII|HARM/
const limitLike = /MAX_TOKENS|TOKEN_LIMIT/

/**
 * Gemini's `finishReason` as OpenAI's: the filters (SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII and
 * their IMAGE_ variants, and any newer reason that names one) are `content_filter`, MAX_TOKENS is `length`; every
 * other reason (STOP, OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL, an unknown one) is `stop`, or `tool_calls` after
 * function calls.
 */
export const finishReasonOf = (finishReason: string, producedToolCalls: boolean): FinishReason => {
  if (finishReason === "MAX_TOKENS" || limitLike.test(finishReason)) return "length"
  if (contentFilterReasons.has(finishReason) || filterLike.test(finishReason)) return "content_filter"
  return producedToolCalls ? "tool_calls" : "stop"
}

const isCount = (value: number): boolean => Number.isSafeInteger(value) && value >= 0

/**
 * `usageMetadata` as OpenAI usage. Thinking tokens are billed as output, so they count as completion tokens and
 * are reported again as `reasoning_tokens`. Counts that are not counts (negative, fractional, beyond 2^53,
 * `1e999`) make the usage unknown (`undefined`), never wrong.
 */
export const usageOf = (metadata: GeminiUsageMetadata): Usage | undefined => {
  const prompt = metadata.promptTokenCount ?? 0
  // Each part must be a count: a sum could hide a negative one. A bad total or detail is fixed or dropped below.
  if (![prompt, metadata.candidatesTokenCount ?? 0, metadata.thoughtsTokenCount ?? 0].every(isCount)) return undefined
  const completion = (metadata.candidatesTokenCount ?? 0) + (metadata.thoughtsTokenCount ?? 0)
  return checkedUsage({
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: metadata.totalTokenCount ?? prompt + completion,
    ...(metadata.cachedContentTokenCount === undefined
      ? {}
      : { prompt_tokens_details: { cached_tokens: metadata.cachedContentTokenCount } }),
    ...(metadata.thoughtsTokenCount === undefined
      ? {}
      : { completion_tokens_details: { reasoning_tokens: metadata.thoughtsTokenCount } })
  })
}

/** A prompt Gemini refused outright: no candidates, and `promptFeedback` saying why. */
export const blockedPromptError = (response: GeminiResponse): ProviderError | undefined => {
  const feedback = response.promptFeedback
  if ((response.candidates?.length ?? 0) > 0 || feedback === undefined) return undefined
  if (feedback.blockReason === undefined && feedback.blockReasonMessage === undefined) return undefined
  const reason = feedback.blockReason ?? "BLOCK_REASON_UNSPECIFIED"
  const detail = feedback.blockReasonMessage === undefined ? "" : `: ${feedback.blockReasonMessage}`
  return new ProviderError({
    reason: "ContentPolicy",
    message: `gemini blocked the prompt (blockReason ${reason})${detail}`,
    provider,
    code: reason
  })
}

/** The id of the `ordinal`-th tool call of choice `choice`, unique per completion id and stable for it. */
export const toolCallId = (completionId: string, choice: number, ordinal: number): string =>
  `call_${completionId.replace(/^chatcmpl-/, "").replace(/[^A-Za-z0-9]/g, "").slice(0, 24)}_${choice}_${ordinal}`

/** A candidate's parts; a candidate may come without content, or content without parts. */
export const partsOf = (candidate: GeminiCandidate) => candidate.content?.parts ?? []

export type GeminiResponsePart = ReturnType<typeof partsOf>[number]

/**
 * A function-call part as a tool call. Its thought signature rides twice: in the id (which every client echoes
 * back, see ToolCallCarriage.ts) and in `extra_content.google.thought_signature`, as Google's own
 * OpenAI-compatible API returns it.
 */
export const toolCallOf = (
  part: GeminiResponsePart,
  functionCall: NonNullable<GeminiResponsePart["functionCall"]>,
  id: string
): ToolCall => {
  const signature = part.thoughtSignature
  const call: ToolCall = {
    id: signature === undefined || signature.length === 0 ? id : carry(id, { kind: "gemini", thoughtSignature: signature }),
    type: "function",
    function: { name: functionCall.name, arguments: JSON.stringify(functionCall.args ?? {}) }
  }
  return signature === undefined || signature.length === 0 ? call : { ...call, extra_content: { google: { thought_signature: signature } } }
}

const choiceOf = (candidate: GeminiCandidate, position: number, completionId: string) => {
  const index = candidate.index ?? position
  const parts = partsOf(candidate)
  const texts = parts.filter((part) => part.text !== undefined && part.thought !== true).map((part) => part.text ?? "")
  const thoughts = parts.filter((part) => part.text !== undefined && part.thought === true).map((part) => part.text ?? "")
  const toolCalls: Array<ToolCall> = []
  for (const part of parts) {
    if (part.functionCall === undefined) continue
    toolCalls.push(toolCallOf(part, part.functionCall, toolCallId(completionId, index, toolCalls.length)))
  }
  const reasoning = thoughts.join("")
  return {
    index,
    message: {
      role: "assistant" as const,
      content: texts.length > 0 ? texts.join("") : toolCalls.length > 0 ? null : "",
      refusal: null,
      ...(reasoning.length === 0 ? {} : { reasoning_content: reasoning }),
      ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls })
    },
    finish_reason: finishReasonOf(candidate.finishReason ?? "STOP", toolCalls.length > 0),
    logprobs: null
  }
}

/**
 * Translates a unary `generateContent` body into a `chat.completion`. A prompt blocked before any candidate
 * fails with `ContentPolicy`; a body with neither candidates nor a block reason fails with `MalformedResponse`.
 */
export const fromGeminiResponse = (
  body: unknown,
  ctx: { readonly id: string; readonly created: number; readonly model: string }
): Either.Either<ChatCompletion, ProviderError> =>
  Either.gen(function*() {
    const response = yield* decodeGeminiResponse(body)
    const blocked = blockedPromptError(response)
    if (blocked !== undefined) return yield* Either.left(blocked)
    const candidates = response.candidates ?? []
    if (candidates.length === 0) return yield* Either.left(malformed(provider, "a response with no candidates"))
    const usage = response.usageMetadata === undefined ? undefined : usageOf(response.usageMetadata)
    const completion: ChatCompletion = {
      id: ctx.id,
      object: "chat.completion",
      created: ctx.created,
      model: ctx.model,
      choices: candidates.map((candidate, position) => choiceOf(candidate, position, ctx.id)),
      ...(usage === undefined ? {} : { usage })
    }
    return completion
  })
