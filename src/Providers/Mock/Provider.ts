/**
 * The built-in deterministic `mock` model: it answers with the last user message, word by word, and embeds text as
 * deterministic unit vectors (Embed.ts). The same request always gets the same answer, so it serves with zero
 * configuration and doubles as the fake in tests.
 */
import { Clock, Effect, Layer, Stream } from "effect"
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatMessage,
  FinishReason,
  ToolCall,
  Usage
} from "../../OpenAi/Schemas.js"
import { embed } from "./Embed.js"
import { ChatProvider, fromStream } from "../Provider.js"
import type { Provider, StreamProvider } from "../Provider.js"

/** How the mock behaves. */
export interface MockOptions {
  /** Pause before each streamed token. */
  readonly tokenDelayMs: number
}

/**
 * The most the mock writes for one request: characters of echo over all choices, and content deltas over all
 * choices of a stream (each streamed token repeats its chunk's envelope per choice). A huge message with `n: 128`
 * is answered cut short with `finish_reason: "length"`, never with hundreds of megabytes.
 */
export const maxOutputChars = 1024 * 1024
export const maxStreamedDeltas = 16 * 1024

const isSpace = (code: number): boolean =>
  code === 32 ||
  (code >= 9 && code <= 13) ||
  code === 0xa0 ||
  code === 0xfeff ||
  code === 0x2028 ||
  code === 0x2029 ||
  (code >= 0x2000 && code <= 0x200a) ||
  code === 0x1680 ||
  code === 0x202f ||
  code === 0x205f ||
  code === 0x3000

/**
 * Splits text into word tokens, each keeping the whitespace around it, so tokens concatenate back (leading
 * whitespace goes to the first token; text with no word has no tokens). One linear scan: a regular expression
 * backtracks quadratically on long runs of whitespace.
 */
export const tokenize = (text: string): ReadonlyArray<string> => {
  const tokens: Array<string> = []
  let start = 0
  let index = 0
  while (index < text.length && isSpace(text.charCodeAt(index))) index++
  while (index < text.length) {
    while (index < text.length && !isSpace(text.charCodeAt(index))) index++
    while (index < text.length && isSpace(text.charCodeAt(index))) index++
    tokens.push(text.slice(start, index))
    start = index
  }
  return tokens
}

/** How many word tokens `tokenize` would find, counted without building them (prompts may be megabytes). */
export const countTokens = (text: string): number => {
  let count = 0
  let inWord = false
  for (let index = 0; index < text.length; index++) {
    const space = isSpace(text.charCodeAt(index))
    if (!space && !inWord) count++
    inWord = !space
  }
  return count
}

const messageText = (message: ChatMessage): string => {
  const content = message.content
  if (content === undefined || content === null) return ""
  if (typeof content === "string") return content
  return content.map((part) => (part.type === "text" ? part.text : "")).join(" ")
}

interface MockAnswer {
  readonly tokens: ReadonlyArray<string>
  readonly finishReason: FinishReason
  readonly toolCall: ToolCall | undefined
  readonly usage: Usage
}

const forcedToolName = (request: ChatCompletionRequest): string | undefined => {
  const choice = request.tool_choice
  const tools = request.tools ?? []
  if (choice === undefined || choice === "none" || choice === "auto" || tools.length === 0) return undefined
  return choice === "required" ? tools[0]?.function.name : choice.function.name
}

/** The answer to a request, computed without I/O: the same request gives the same answer. */
export const answer = (request: ChatCompletionRequest): MockAnswer => {
  const lastUser = [...request.messages].reverse().find((message) => message.role === "user")
  const choices = request.n ?? 1
  const fullEcho = lastUser === undefined ? "Hello from the mock model." : messageText(lastUser)
  // Cut to the output bound: the text kept ends at a token boundary, and the answer says it was cut.
  const echo = fullEcho.length * choices > maxOutputChars ? fullEcho.slice(0, Math.floor(maxOutputChars / choices)) : fullEcho
  const cutByBound = echo.length < fullEcho.length
  const promptTokens = request.messages.reduce((sum, message) => sum + countTokens(messageText(message)), 0)
  const toolName = forcedToolName(request)
  if (toolName !== undefined) {
    const toolCall: ToolCall = {
      id: `call_mock_${toolName}`,
      type: "function",
      function: { name: toolName, arguments: JSON.stringify({ input: echo }) }
    }
    const completionTokens = tokenize(toolCall.function.arguments).length
    return {
      tokens: [],
      finishReason: "tool_calls",
      toolCall,
      usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens }
    }
  }
  const all = tokenize(echo)
  const limit = Math.min(request.max_completion_tokens ?? request.max_tokens ?? Number.POSITIVE_INFINITY, Math.floor(maxStreamedDeltas / choices))
  const tokens = all.length > limit ? all.slice(0, limit) : all
  return {
    tokens,
    finishReason: all.length > limit || cutByBound ? "length" : "stop",
    toolCall: undefined,
    usage: { prompt_tokens: promptTokens, completion_tokens: tokens.length, total_tokens: promptTokens + tokens.length }
  }
}

const choiceIndexes = (request: ChatCompletionRequest): ReadonlyArray<number> =>
  Array.from({ length: request.n ?? 1 }, (_, index) => index)

/** Every choice is generated, so completion tokens count once per choice. */
const usageForChoices = (usage: Usage, choices: number): Usage => ({
  prompt_tokens: usage.prompt_tokens,
  completion_tokens: usage.completion_tokens * choices,
  total_tokens: usage.prompt_tokens + usage.completion_tokens * choices
})

const newId = Effect.sync(() => `chatcmpl-mock-${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`)
const nowSeconds = Effect.map(Clock.currentTimeMillis, (millis) => Math.floor(millis / 1000))

const complete = (request: ChatCompletionRequest): Effect.Effect<ChatCompletion> =>
  Effect.gen(function* () {
    const result = answer(request)
    const indexes = choiceIndexes(request)
    return {
      id: yield* newId,
      object: "chat.completion",
      created: yield* nowSeconds,
      model: request.model,
      choices: indexes.map((index) => ({
        index,
        message: {
          role: "assistant" as const,
          content: result.toolCall === undefined ? result.tokens.join("") : null,
          refusal: null,
          ...(result.toolCall === undefined ? {} : { tool_calls: [result.toolCall] })
        },
        finish_reason: result.finishReason,
        logprobs: null
      })),
      usage: usageForChoices(result.usage, indexes.length)
    }
  })

const stream = (options: MockOptions) => (request: ChatCompletionRequest): Stream.Stream<ChatCompletionChunk> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const result = answer(request)
      const id = yield* newId
      const created = yield* nowSeconds
      const indexes = choiceIndexes(request)
      const chunk = (
        choices: ChatCompletionChunk["choices"],
        usage?: Usage
      ): ChatCompletionChunk => ({
        id,
        object: "chat.completion.chunk",
        created,
        model: request.model,
        choices,
        ...(usage === undefined ? {} : { usage })
      })
      const everyChoice = (delta: ChatCompletionChunk["choices"][number]["delta"], finishReason: FinishReason | null = null) =>
        chunk(indexes.map((index) => ({ index, delta, finish_reason: finishReason, logprobs: null })))
      const toolCall = result.toolCall
      const body: ReadonlyArray<ChatCompletionChunk> =
        toolCall === undefined
          ? result.tokens.map((token) => everyChoice({ content: token }))
          : [everyChoice({ tool_calls: [{ index: 0, id: toolCall.id, type: "function", function: { name: toolCall.function.name, arguments: toolCall.function.arguments } }] })]
      // Small batches, so that a long answer is written as it goes rather than built whole.
      const paced = Stream.fromIterable(body).pipe(
        Stream.rechunk(64),
        options.tokenDelayMs > 0 ? Stream.tap(() => Effect.sleep(options.tokenDelayMs)) : (self) => self
      )
      return Stream.make(everyChoice({ role: "assistant", content: "" })).pipe(
        Stream.concat(paced),
        Stream.concat(
          Stream.make(
            everyChoice({}, result.finishReason),
            chunk([], usageForChoices(result.usage, indexes.length))
          )
        )
      )
    })
  )

/** The mock as an Effect and a Stream; `request.model` is reported back as the model. */
export const streamProvider = (options: MockOptions): StreamProvider => ({
  complete,
  stream: stream(options),
  embed
})

/** The mock as the Router calls it. */
export const make = (options: MockOptions): Provider => fromStream(streamProvider(options))

/** The mock as a `ChatProvider` layer. */
export const layer = (options: MockOptions = { tokenDelayMs: 0 }): Layer.Layer<ChatProvider> => Layer.succeed(ChatProvider, make(options))
