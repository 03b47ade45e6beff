/**
 * The built-in deterministic `mock` model: it answers with the last user message, word by word. The same
 * request always gets the same answer, so it serves with zero configuration and doubles as the fake in tests.
 */
import { Clock, Effect, Stream } from "effect"
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatMessage,
  FinishReason,
  ToolCall,
  Usage
} from "../../OpenAi/Schemas.js"
import type { Provider } from "../Provider.js"

/** How the mock behaves. */
export interface MockOptions {
  /** Pause before each streamed token. */
  readonly tokenDelayMs: number
}

/** Splits text into word tokens, each keeping the whitespace that follows it, so tokens concatenate back. */
export const tokenize = (text: string): ReadonlyArray<string> => text.match(/\s*\S+\s*/g) ?? []

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
  const echo = lastUser === undefined ? "Hello from the mock model." : messageText(lastUser)
  const promptTokens = request.messages.reduce((sum, message) => sum + tokenize(messageText(message)).length, 0)
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
  const limit = request.max_completion_tokens ?? request.max_tokens ?? Number.POSITIVE_INFINITY
  const tokens = all.length > limit ? all.slice(0, limit) : all
  return {
    tokens,
    finishReason: all.length > limit ? "length" : "stop",
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
      const paced = Stream.fromIterable(body).pipe(
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

/** A mock provider; `request.model` is reported back as the model. */
export const make = (options: MockOptions): Provider => ({
  complete,
  stream: stream(options)
})
