/**
 * A pure state machine from Gemini's `streamGenerateContent?alt=sse` frames to `chat.completion.chunk`s.
 *
 * Gemini frames are whole `GenerateContentResponse`s: text arrives in pieces, function calls arrive whole, and
 * `usageMetadata` is cumulative. `step` consumes one parsed frame; `finish` is called when the upstream ends.
 */
import { Either } from "effect"
import type { ChatCompletionChunk, FinishReason, Usage } from "../../OpenAi/Schemas.js"
import { ProviderError } from "../Provider.js"
import { errorFromBody, isErrorBody, provider } from "./Errors.js"
import { blockedPromptError, decodeGeminiResponse, finishReasonOf, partsOf, toolCallId, usageOf } from "./Response.js"

/** What every chunk of one completion shares. */
export interface StreamContext {
  readonly id: string
  readonly created: number
  readonly model: string
}

interface ChoiceState {
  /** How many tool calls this choice has produced so far: the next one's `index`. */
  readonly toolCalls: number
  readonly finished: boolean
}

export interface StreamState {
  readonly ctx: StreamContext
  /** Per choice index, once that choice has been announced with its role chunk. */
  readonly choices: ReadonlyMap<number, ChoiceState>
  /** The last `usageMetadata` seen, already translated; Gemini repeats it cumulatively. */
  readonly usage: Usage | undefined
}

type Delta = ChatCompletionChunk["choices"][number]["delta"]

/** The state before the first frame. */
export const initial = (ctx: StreamContext): StreamState => ({ ctx, choices: new Map(), usage: undefined })

const chunk = (
  ctx: StreamContext,
  choices: ChatCompletionChunk["choices"],
  usage?: Usage
): ChatCompletionChunk => ({
  id: ctx.id,
  object: "chat.completion.chunk",
  created: ctx.created,
  model: ctx.model,
  choices,
  ...(usage === undefined ? {} : { usage })
})

const choiceChunk = (ctx: StreamContext, index: number, delta: Delta, finishReason: FinishReason | null = null) =>
  chunk(ctx, [{ index, delta, finish_reason: finishReason, logprobs: null }])

/**
 * Consumes one parsed SSE data frame. Fails with `ContentPolicy` for a blocked prompt, with the error's own reason
 * for an in-stream `{error:{...}}` frame, and with `MalformedResponse` for anything else that is not a response.
 */
export const step = (
  state: StreamState,
  frame: unknown
): Either.Either<readonly [StreamState, ReadonlyArray<ChatCompletionChunk>], ProviderError> =>
  Either.gen(function*() {
    if (isErrorBody(frame)) return yield* Either.left(errorFromBody(frame, 500))
    const response = yield* decodeGeminiResponse(frame)
    const blocked = blockedPromptError(response)
    if (blocked !== undefined) return yield* Either.left(blocked)

    const { ctx } = state
    const choices = new Map(state.choices)
    const out: Array<ChatCompletionChunk> = []

    for (const [position, candidate] of (response.candidates ?? []).entries()) {
      const index = candidate.index ?? position
      const known = choices.get(index)
      if (known === undefined) out.push(choiceChunk(ctx, index, { role: "assistant", content: "" }))
      let choice: ChoiceState = known ?? { toolCalls: 0, finished: false }

      let text = ""
      const flushText = () => {
        if (text.length > 0) out.push(choiceChunk(ctx, index, { content: text }))
        text = ""
      }
      for (const part of partsOf(candidate)) {
        if (part.text !== undefined && part.thought !== true) text += part.text
        if (part.functionCall !== undefined) {
          flushText()
          const ordinal: number = choice.toolCalls
          out.push(
            choiceChunk(ctx, index, {
              tool_calls: [
                {
                  index: ordinal,
                  id: toolCallId(ctx.id, index, ordinal),
                  type: "function",
                  function: { name: part.functionCall.name, arguments: JSON.stringify(part.functionCall.args ?? {}) }
                }
              ]
            })
          )
          choice = { ...choice, toolCalls: ordinal + 1 }
        }
      }
      flushText()

      if (candidate.finishReason !== undefined && !choice.finished) {
        out.push(choiceChunk(ctx, index, {}, finishReasonOf(candidate.finishReason, choice.toolCalls > 0)))
        choice = { ...choice, finished: true }
      }
      choices.set(index, choice)
    }

    const usage = response.usageMetadata === undefined ? state.usage : usageOf(response.usageMetadata)
    return [{ ctx, choices, usage }, out] as const
  })

/**
 * Called when the upstream stream ends: the closing usage chunk (`choices: []`), or `Unavailable` when some choice
 * never got a `finishReason` (the stream broke off).
 */
export const finish = (state: StreamState): Either.Either<ReadonlyArray<ChatCompletionChunk>, ProviderError> => {
  const choices = [...state.choices.values()]
  if (choices.length === 0 || choices.some((choice) => !choice.finished)) {
    return Either.left(
      new ProviderError({
        reason: "Unavailable",
        message: "gemini upstream stream ended early, before a finishReason",
        provider
      })
    )
  }
  return Either.right(state.usage === undefined ? [] : [chunk(state.ctx, [], state.usage)])
}
