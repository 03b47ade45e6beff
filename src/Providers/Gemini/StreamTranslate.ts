/**
 * A pure state machine from Gemini's `streamGenerateContent?alt=sse` frames to `chat.completion.chunk`s.
 *
 * Gemini frames are whole `GenerateContentResponse`s: text arrives in pieces, function calls arrive whole, and
 * `usageMetadata` is cumulative. `step` consumes one parsed frame; `finish` is called when the upstream ends.
 *
 * Thought summaries (`thought: true` parts) go out as `reasoning_content`, never as content. A `finishReason` may
 * come on any frame and a later one replaces it (text marked STOP can still end in SAFETY): each choice's reason
 * is sent once, by `finish`, after all its content, as the last reason the upstream gave. A clean end without any
 * reason is a normal stop when something was said; a stream that said nothing at all failed.
 */
import { Either } from "effect"
import type { ChatCompletionChunk, FinishReason, Usage } from "../../OpenAi/Schemas.js"
import { ProviderError } from "../Provider.js"
import { errorFromBody, isErrorBody, provider } from "./Errors.js"
import { blockedPromptError, decodeGeminiResponse, finishReasonOf, partsOf, toolCallId, toolCallOf, usageOf } from "./Response.js"

/** What every chunk of one completion shares. */
export interface StreamContext {
  readonly id: string
  readonly created: number
  readonly model: string
}

interface ChoiceState {
  /** How many tool calls this choice has produced so far: the next one's `index`. */
  readonly toolCalls: number
  /** Whether any text, thought or tool call came for this choice. */
  readonly produced: boolean
  /** The last finishReason the upstream gave this choice, held until the stream ends. */
  readonly finishReason: string | undefined
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
      let choice: ChoiceState = known ?? { toolCalls: 0, produced: false, finishReason: undefined }

      // Consecutive pieces of one kind go out as one delta; thoughts and answer text never share one.
      let pending: { readonly kind: "reasoning_content" | "content"; text: string } | undefined
      const flush = () => {
        if (pending !== undefined && pending.text.length > 0) {
          out.push(choiceChunk(ctx, index, pending.kind === "content" ? { content: pending.text } : { reasoning_content: pending.text }))
          choice = { ...choice, produced: true }
        }
        pending = undefined
      }
      for (const part of partsOf(candidate)) {
        if (part.text !== undefined) {
          const kind = part.thought === true ? "reasoning_content" : "content"
          if (pending?.kind !== kind) flush()
          pending ??= { kind, text: "" }
          pending.text += part.text
        }
        if (part.functionCall !== undefined) {
          flush()
          const ordinal: number = choice.toolCalls
          const call = toolCallOf(part, part.functionCall, toolCallId(ctx.id, index, ordinal))
          out.push(choiceChunk(ctx, index, { tool_calls: [{ ...call, index: ordinal }] }))
          choice = { ...choice, toolCalls: ordinal + 1, produced: true }
        }
      }
      flush()

      if (candidate.finishReason !== undefined) choice = { ...choice, finishReason: candidate.finishReason }
      choices.set(index, choice)
    }

    const usage = response.usageMetadata === undefined ? state.usage : usageOf(response.usageMetadata)
    return [{ ctx, choices, usage }, out] as const
  })

/**
 * Called when the upstream stream has ended cleanly: each choice's finish reason (the last one the upstream gave,
 * else `stop` / `tool_calls`), then the usage chunk (`choices: []`). Fails with `Unavailable` when the stream
 * carried nothing at all: no content and no finish reason.
 */
export const finish = (state: StreamState): Either.Either<ReadonlyArray<ChatCompletionChunk>, ProviderError> => {
  const choices = [...state.choices.entries()]
  if (choices.every(([, choice]) => !choice.produced && choice.finishReason === undefined)) {
    return Either.left(
      new ProviderError({
        reason: "Unavailable",
        message: "gemini upstream stream ended early, before any content or finishReason",
        provider
      })
    )
  }
  const out = choices.map(([index, choice]) =>
    choiceChunk(state.ctx, index, {}, finishReasonOf(choice.finishReason ?? "STOP", choice.toolCalls > 0))
  )
  if (state.usage !== undefined) out.push(chunk(state.ctx, [], state.usage))
  return Either.right(out)
}
