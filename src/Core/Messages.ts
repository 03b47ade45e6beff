/**
 * Anthropic's Messages API through the core: admitted by the same gate as chat (allow-list, limits, lease), routed
 * by the same Router (names, balancing, retries, fallbacks, stream commit, deadlines; each attempt native to an
 * Anthropic deployment, translated through chat completions to any other), accounted the same way: Anthropic's
 * usage (cache reads and writes count as prompt tokens), else the gateway's count of the texts.
 *
 * count_tokens is checked against the allow-list and routed, but is no request of the key's limits or usage: it
 * costs nothing upstream, and Claude Code asks it often.
 */
import { Effect, Stream } from "effect"
import type { Context } from "effect"
import { messagesPromptTexts } from "../Anthropic/Count.js"
import type { CountTokensCall, EventUsage, MessageAnswer, MessagesCall, MessagesEvent } from "../Anthropic/Wire.js"
import { ModelNotFound } from "../Errors.js"
import { estimatedTokens, promptTexts } from "../Governance/Tokenizer.js"
import type { TokenizerService } from "../Governance/Tokenizer.js"
import { mayUse } from "../Http/Auth.js"
import type { Caller } from "../Http/Auth.js"
import type { ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { pullOf, releaseOf } from "../Providers/ChunkSource.js"
import type { ChunkSource } from "../Providers/ChunkSource.js"
import type { Deployment } from "../Router/Registry.js"
import type { RoutedMessageStream, Router, Served } from "../Router/Router.js"
import { DeliveredText } from "./Delivered.js"
import { ChatFailure, noteServed } from "./Gate.js"
import type { AnswerHeaders, Gate, Pass, PromptTexts } from "./Gate.js"
import type { RequestRecord } from "./RequestRecord.js"

/** What a Messages request became: a message, or a committed event stream (its first events in hand). */
export type MessagesAnswer =
  | { readonly _tag: "Message"; readonly answer: MessageAnswer; readonly served: Served; readonly headers: AnswerHeaders }
  | { readonly _tag: "Stream"; readonly stream: RoutedMessageStream; readonly headers: AnswerHeaders }

/** A count_tokens answer: the count, whether it is the gateway's estimate, and who would have served. */
export interface CountAnswer {
  readonly inputTokens: number
  readonly estimated: boolean
  readonly served: Served
}

const isCount = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/** Anthropic's usage as the gateway's token counts, when it has both sides. */
const countsOf = (usage: EventUsage | undefined): { readonly prompt_tokens: number; readonly completion_tokens: number } | undefined => {
  if (usage === undefined || !isCount(usage.input_tokens) || !isCount(usage.output_tokens)) return undefined
  const cacheCreation = isCount(usage.cache_creation_input_tokens) ? usage.cache_creation_input_tokens : 0
  const cacheRead = isCount(usage.cache_read_input_tokens) ? usage.cache_read_input_tokens : 0
  return { prompt_tokens: usage.input_tokens + cacheCreation + cacheRead, completion_tokens: usage.output_tokens }
}

/** The prompt's texts: of the chat request a translated attempt sent, else of the Messages request. */
const promptOf = (call: MessagesCall, translated: ChatCompletionRequest | undefined): PromptTexts =>
  translated === undefined ? messagesPromptTexts(call.request) : promptTexts(translated)

/** The texts of a message's content, for counting its output tokens. */
const messageTexts = (message: Readonly<Record<string, unknown>>): ReadonlyArray<string> => {
  const texts: Array<string> = []
  const content = message["content"]
  if (!Array.isArray(content)) return texts
  for (const block of content as ReadonlyArray<Record<string, unknown>>) {
    if (typeof block !== "object" || block === null) continue
    for (const field of ["text", "thinking", "name"]) if (typeof block[field] === "string") texts.push(block[field])
    if (block["type"] === "tool_use") texts.push(JSON.stringify(block["input"] ?? {}))
  }
  return texts
}

/**
 * A committed event stream's source that keeps its usage (message_start's, then message_delta's: cumulative) and
 * the text it delivered, and reports them once, when the stream ends however it ends.
 */
const accountedEvents = (
  source: ChunkSource<MessagesEvent>,
  onEnd: (usage: EventUsage | undefined, finished: boolean, delivered: DeliveredText) => void
): ChunkSource<MessagesEvent> => {
  let usage: EventUsage | undefined
  // Output tokens are known only from message_delta: message_start's are a placeholder.
  let finished = false
  const delivered = new DeliveredText()
  let ended = false
  const end = () => {
    if (ended) return
    ended = true
    onEnd(usage, finished, delivered)
  }
  return {
    poll: () => {
      const take = source.poll()
      if (Array.isArray(take)) {
        for (const event of take as ReadonlyArray<MessagesEvent>) {
          if (event.usage !== undefined) {
            usage = { ...usage, ...event.usage }
            if (event.event === "message_delta" && isCount(event.usage.output_tokens)) finished = true
          }
          if (event.text !== undefined) delivered.add(event.text)
        }
      } else if (take !== undefined) end()
      return take
    },
    onReady: source.onReady,
    close: () => {
      source.close()
      end()
    },
    release: Effect.suspend(() => {
      end()
      return releaseOf(source)
    })
  }
}

/** The core's Messages operations over the gate, the Router and the Tokenizer. */
export const makeMessages = (gate: Gate, router: Context.Tag.Service<typeof Router>, tokenizer: TokenizerService) => {
  const finishMessage = (pass: Pass, call: MessagesCall, deployment: Deployment, answer: MessageAnswer, translated: ChatCompletionRequest | undefined) => {
    const counts = countsOf(answer.usage)
    if (counts !== undefined) pass.finish(deployment, counts)
    else pass.finishCounted(deployment, promptOf(call, translated), messageTexts(answer.message))
  }

  const serve = (call: MessagesCall, pass: Pass): Effect.Effect<MessagesAnswer, ChatFailure["error"]> => {
    const { headers, record } = pass
    if (call.request.stream === true) {
      return Effect.map(router.messageStream(call, record), (routed): MessagesAnswer => {
        noteServed(record, routed)
        const source = accountedEvents(routed.source, (usage, finished, delivered) => {
          const endedAt = performance.now()
          const counts = finished ? countsOf(usage) : undefined
          if (counts !== undefined) pass.finish(routed.deployment, counts, endedAt)
          else pass.finishCounted(routed.deployment, promptOf(call, routed.translated), delivered.texts, endedAt, delivered.estimatedTokens)
        })
        const events = Stream.repeatEffectChunkOption(pullOf(source)).pipe(Stream.ensuring(releaseOf(source)))
        return { _tag: "Stream", stream: { ...routed, source, events }, headers }
      })
    }
    return Effect.map(router.message(call, record), (routed): MessagesAnswer => {
      noteServed(record, routed)
      finishMessage(pass, call, routed.deployment, routed.answer, routed.translated)
      return { _tag: "Message", answer: routed.answer, served: routed, headers }
    })
  }

  const messages = (call: MessagesCall, caller: Caller, record?: RequestRecord): Effect.Effect<MessagesAnswer, ChatFailure> =>
    gate.admit(call.request.model, caller, record, (pass) => serve(call, pass))

  /** The gateway's count of a request's input tokens: the tokenizer's, its estimate when the tokenizer fails. */
  const counted = (call: CountTokensCall): Effect.Effect<number> => {
    const prompt = messagesPromptTexts(call.request)
    return tokenizer.count(prompt.texts).pipe(
      Effect.catchAll(() => Effect.succeed(prompt.texts.map(estimatedTokens))),
      Effect.map((counts) => counts.reduce((sum, count) => sum + count, prompt.overhead))
    )
  }

  const countTokens = (call: CountTokensCall, caller: Caller, record?: RequestRecord): Effect.Effect<CountAnswer, ChatFailure> =>
    Effect.suspend(() => {
      const model = call.request.model
      if (record !== undefined) {
        record.keyId = caller.id
        record.model = model
      }
      if (!mayUse(caller, model)) return Effect.fail(new ChatFailure({ error: new ModelNotFound({ model }), headers: {} }))
      return router.countTokens(call, record).pipe(
        Effect.mapError((error) => new ChatFailure({ error, headers: {} })),
        Effect.flatMap((routed): Effect.Effect<CountAnswer> => {
          noteServed(record, routed)
          const served = { deployment: routed.deployment, attempts: routed.attempts }
          return routed.inputTokens !== undefined
            ? Effect.succeed({ inputTokens: routed.inputTokens, estimated: false, served })
            : Effect.map(counted(call), (inputTokens) => ({ inputTokens, estimated: true, served }))
        })
      )
    })

  return { messages, countTokens }
}
