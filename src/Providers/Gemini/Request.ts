/**
 * Pure translation of an OpenAI chat request into Gemini's `generateContent` request (Generative Language API,
 * v1beta).
 */
import { Either } from "effect"
import type {
  ChatCompletionRequest,
  ChatMessage,
  ToolCall,
  ToolChoice,
  UserContentPart
} from "../../OpenAi/Schemas.js"
import { ProviderError } from "../Provider.js"
import { reasoningEffortOf } from "../ReasoningEffort.js"
import type { ReasoningEffort } from "../ReasoningEffort.js"
import { baseOf, uncarry } from "../ToolCallCarriage.js"
import { provider } from "./Errors.js"

export interface GeminiPart {
  readonly text?: string
  readonly inlineData?: { readonly mimeType: string; readonly data: string }
  readonly fileData?: { readonly fileUri: string; readonly mimeType?: string }
  readonly functionCall?: { readonly name: string; readonly args: Readonly<Record<string, unknown>> }
  readonly functionResponse?: { readonly name: string; readonly response: Readonly<Record<string, unknown>> }
  /** The signature of the thinking behind a function call; Gemini 3 requires it back on the next turn. */
  readonly thoughtSignature?: string
}

export interface GeminiContent {
  readonly role: "user" | "model"
  readonly parts: ReadonlyArray<GeminiPart>
}

export interface GeminiGenerationConfig {
  readonly temperature?: number
  readonly topP?: number
  readonly maxOutputTokens?: number
  readonly stopSequences?: ReadonlyArray<string>
  readonly candidateCount?: number
  readonly seed?: number
  readonly presencePenalty?: number
  readonly frequencyPenalty?: number
  readonly responseMimeType?: string
  /** Plain JSON Schema; `responseSchema` would want Gemini's OpenAPI subset instead. */
  readonly responseJsonSchema?: Readonly<Record<string, unknown>>
  readonly thinkingConfig?: GeminiThinkingConfig | Readonly<Record<string, unknown>>
}

/** How a Gemini model thinks: a token budget (2.5) or a level (3), and whether thought summaries come back. */
export interface GeminiThinkingConfig {
  readonly thinkingBudget?: number
  readonly thinkingLevel?: "minimal" | "low" | "medium" | "high"
  readonly includeThoughts?: boolean
}

export interface GeminiFunctionDeclaration {
  readonly name: string
  readonly description?: string
  /** Plain JSON Schema, as the client sent it; `parameters` would want Gemini's OpenAPI subset instead. */
  readonly parametersJsonSchema?: Readonly<Record<string, unknown>>
}

export interface GeminiToolConfig {
  readonly functionCallingConfig: {
    readonly mode: "NONE" | "AUTO" | "ANY"
    readonly allowedFunctionNames?: ReadonlyArray<string>
  }
}

/** The body of `POST /v1beta/models/{model}:generateContent` (the model travels in the path, not here). */
export interface GeminiRequestBody {
  readonly contents: ReadonlyArray<GeminiContent>
  readonly systemInstruction?: { readonly parts: ReadonlyArray<GeminiPart> }
  readonly generationConfig: GeminiGenerationConfig
  readonly tools?: ReadonlyArray<{ readonly functionDeclarations: ReadonlyArray<GeminiFunctionDeclaration> }>
  readonly toolConfig?: GeminiToolConfig
}

const invalidRequest = (message: string, param?: string): ProviderError =>
  new ProviderError({ reason: "InvalidRequest", message, provider, param: param ?? null })

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const textOf = (content: string | ReadonlyArray<{ readonly type: string; readonly text?: string; readonly refusal?: string }>): string =>
  typeof content === "string" ? content : content.map((part) => part.text ?? part.refusal ?? "").join("")

const dataUrlPattern = /^data:([^;,]*)((?:;[^;,]*)*),(.*)$/s

/** `data:<mime>[;base64],<payload>` as Gemini's inline data, or `undefined` when `url` is not a data URL. */
const inlineDataOf = (url: string): GeminiPart | undefined => {
  const match = dataUrlPattern.exec(url)
  if (match === null) return undefined
  const [, mime, params, payload] = match
  const isBase64 = (params ?? "").split(";").includes("base64")
  const data = isBase64 ? (payload ?? "") : Buffer.from(decodeURIComponent(payload ?? ""), "utf8").toString("base64")
  return { inlineData: { mimeType: mime || "application/octet-stream", data } }
}

const imageMimeTypes: Readonly<Record<string, string>> = {
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  heic: "image/heic",
  heif: "image/heif"
}

const guessImageMimeType = (url: string): string | undefined => {
  const path = url.split(/[?#]/)[0] ?? ""
  const extension = path.slice(path.lastIndexOf(".") + 1).toLowerCase()
  return imageMimeTypes[extension]
}

const userPart = (part: UserContentPart, at: string): Either.Either<GeminiPart, ProviderError> => {
  switch (part.type) {
    case "text":
      return Either.right({ text: part.text })
    case "image_url": {
      const url = part.image_url.url
      const inline = inlineDataOf(url)
      if (inline !== undefined) return Either.right(inline)
      const mimeType = guessImageMimeType(url)
      return Either.right({ fileData: mimeType === undefined ? { fileUri: url } : { fileUri: url, mimeType } })
    }
    case "input_audio":
      return Either.right({ inlineData: { mimeType: `audio/${part.input_audio.format}`, data: part.input_audio.data } })
    case "file": {
      const inline = part.file.file_data === undefined ? undefined : inlineDataOf(part.file.file_data)
      return inline !== undefined
        ? Either.right(inline)
        : Either.left(invalidRequest("gemini accepts file parts only as data: URLs in file_data", at))
    }
  }
}

/**
 * Gemini wants `args` as an object. Arguments that are not a JSON object (a model's broken output echoed back in
 * history) are kept as a string rather than failing the whole conversation.
 */
const argsOf = (raw: string): Readonly<Record<string, unknown>> => {
  if (raw.trim() === "") return {}
  const parsed = parseJson(raw)
  return isRecord(parsed) ? parsed : { arguments: raw }
}

/** The longest thought signature taken from a client's `extra_content`. */
const maxSignatureChars = 64 * 1024
const signaturePattern = /^[A-Za-z0-9+/_-]+=*$/

/** `extra_content.google.thought_signature` (Google's OpenAI-compatible spelling), when it is a sane signature. */
const extraContentSignature = (extra: unknown): string | undefined => {
  const google = isRecord(extra) ? extra["google"] : undefined
  const signature = isRecord(google) ? google["thought_signature"] : undefined
  return typeof signature === "string" && signature.length <= maxSignatureChars && signaturePattern.test(signature) ? signature : undefined
}

/**
 * The thought signature that goes back with a tool call: the one in its `extra_content`, else the one the gateway
 * carried in its id (see ToolCallCarriage.ts). Clients echo one or the other; most echo only the id.
 */
export const thoughtSignatureOf = (call: ToolCall): string | undefined => {
  const fromExtra = extraContentSignature(call.extra_content)
  if (fromExtra !== undefined) return fromExtra
  const { carried } = uncarry(call.id)
  return carried?.kind === "gemini" ? carried.thoughtSignature : undefined
}

const assistantParts = (message: Extract<ChatMessage, { role: "assistant" }>): ReadonlyArray<GeminiPart> => {
  const parts: Array<GeminiPart> = []
  const text = message.content === undefined || message.content === null ? "" : textOf(message.content)
  if (text.length > 0) parts.push({ text })
  for (const call of message.tool_calls ?? []) {
    const functionCall = { name: call.function.name, args: argsOf(call.function.arguments) }
    const thoughtSignature = thoughtSignatureOf(call)
    parts.push(thoughtSignature === undefined ? { functionCall } : { functionCall, thoughtSignature })
  }
  return parts
}

const toolResponseOf = (text: string): Readonly<Record<string, unknown>> => {
  const parsed = parseJson(text)
  return isRecord(parsed) ? parsed : { content: text }
}

/** Appends `parts` as a turn of `role`, merging into the previous turn when it has the same role. */
const appendTurn = (contents: Array<GeminiContent>, role: GeminiContent["role"], parts: ReadonlyArray<GeminiPart>): void => {
  if (parts.length === 0) return
  const last = contents[contents.length - 1]
  if (last !== undefined && last.role === role) {
    contents[contents.length - 1] = { role, parts: [...last.parts, ...parts] }
  } else {
    contents.push({ role, parts })
  }
}

const generationConfigOf = (request: ChatCompletionRequest): GeminiGenerationConfig => {
  const config: { -readonly [K in keyof GeminiGenerationConfig]: GeminiGenerationConfig[K] } = {}
  if (request.temperature != null) config.temperature = request.temperature
  if (request.top_p != null) config.topP = request.top_p
  const maxTokens = request.max_completion_tokens ?? request.max_tokens
  if (maxTokens != null) config.maxOutputTokens = maxTokens
  if (request.stop != null) config.stopSequences = typeof request.stop === "string" ? [request.stop] : request.stop
  if (request.n != null) config.candidateCount = request.n
  if (request.seed != null) config.seed = request.seed
  if (request.presence_penalty != null) config.presencePenalty = request.presence_penalty
  if (request.frequency_penalty != null) config.frequencyPenalty = request.frequency_penalty
  const format = request.response_format
  if (format?.type === "json_object" || format?.type === "json_schema") config.responseMimeType = "application/json"
  if (format?.type === "json_schema" && format.json_schema.schema !== undefined) {
    config.responseJsonSchema = withoutSchemaKeyword(format.json_schema.schema)
  }
  return config
}

/**
 * JSON Schema as the client wrote it, but for its `$schema` keyword: a dialect marker that zod and the SDKs add and
 * that says nothing about the shape.
 */
const withoutSchemaKeyword = (schema: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> => {
  if (!("$schema" in schema)) return schema
  const { $schema: _dialect, ...rest } = schema
  return rest
}

/** How a Gemini model is told to think, by generation: 3 takes a level, 2.5 a budget, older models do not think. */
type ThinkingGeneration = "level" | "budget" | "none"

export const thinkingGenerationOf = (model: string): ThinkingGeneration => {
  const version = /gemini-(\d+)(?:\.(\d+))?/i.exec(model)
  // A name without a version (an alias such as gemini-flash-latest): the budget, which every thinking model takes.
  if (version === null) return "budget"
  const major = Number(version[1])
  const minor = Number(version[2] ?? 0)
  if (major >= 3) return "level"
  return major === 2 && minor >= 5 ? "budget" : "none"
}

/** reasoning_effort → thinkingBudget (Gemini 2.5). Pro cannot stop thinking (128 is its least) and goes to 32768. */
const thinkingBudgets: Readonly<Record<ReasoningEffort, number>> = {
  none: 0,
  minimal: 512,
  low: 1024,
  medium: 8192,
  high: 24576,
  xhigh: 24576,
  max: 24576
}
const proThinkingBudgets: Readonly<Record<ReasoningEffort, number>> = { ...thinkingBudgets, none: 128, xhigh: 32768, max: 32768 }

/** reasoning_effort → thinkingLevel (Gemini 3). Pro knows only low and high. */
const thinkingLevels: Readonly<Record<ReasoningEffort, NonNullable<GeminiThinkingConfig["thinkingLevel"]>>> = {
  none: "minimal",
  minimal: "minimal",
  low: "low",
  medium: "medium",
  high: "high",
  xhigh: "high",
  max: "high"
}
const proThinkingLevels: typeof thinkingLevels = { none: "low", minimal: "low", low: "low", medium: "high", high: "high", xhigh: "high", max: "high" }

/** The thinkingConfig `reasoning_effort` stands for on `model`, or none for a model that does not think. */
export const thinkingConfigFor = (model: string, effort: ReasoningEffort): GeminiThinkingConfig | undefined => {
  const pro = /pro/i.test(model)
  const includeThoughts = effort !== "none"
  switch (thinkingGenerationOf(model)) {
    case "level":
      return { thinkingLevel: (pro ? proThinkingLevels : thinkingLevels)[effort], includeThoughts }
    case "budget":
      return { thinkingBudget: (pro ? proThinkingBudgets : thinkingBudgets)[effort], includeThoughts }
    case "none":
      return undefined
  }
}

/**
 * The request's thinkingConfig: a native `thinkingConfig` object as sent, else what `reasoning_effort` maps to.
 */
const thinkingConfigOf = (
  request: ChatCompletionRequest
): Either.Either<GeminiGenerationConfig["thinkingConfig"] | undefined, ProviderError> => {
  const native = (request as Readonly<Record<string, unknown>>)["thinkingConfig"]
  if (native !== undefined && native !== null) {
    return isRecord(native) ? Either.right(native) : Either.left(invalidRequest("thinkingConfig must be an object", "thinkingConfig"))
  }
  return Either.map(reasoningEffortOf(request, provider), (effort) => (effort === undefined ? undefined : thinkingConfigFor(request.model, effort)))
}

const toolConfigOf = (choice: ToolChoice): GeminiToolConfig => {
  if (choice === "none") return { functionCallingConfig: { mode: "NONE" } }
  if (choice === "auto") return { functionCallingConfig: { mode: "AUTO" } }
  if (choice === "required") return { functionCallingConfig: { mode: "ANY" } }
  return { functionCallingConfig: { mode: "ANY", allowedFunctionNames: [choice.function.name] } }
}

/**
 * Translates an OpenAI chat request into Gemini's `generateContent` body. Fails with `InvalidRequest` for what
 * Gemini cannot be told: a tool message whose `tool_call_id` no earlier assistant tool call carries (Gemini needs
 * the function's name), or a file part that is not inline data.
 */
export const toGeminiRequest = (request: ChatCompletionRequest): Either.Either<GeminiRequestBody, ProviderError> =>
  Either.gen(function*() {
    const system: Array<GeminiPart> = []
    const contents: Array<GeminiContent> = []
    const toolNames = new Map<string, string>()

    for (const [position, message] of request.messages.entries()) {
      switch (message.role) {
        case "system":
        case "developer":
          system.push({ text: textOf(message.content) })
          break
        case "user": {
          const parts: Array<GeminiPart> = []
          if (typeof message.content === "string") {
            parts.push({ text: message.content })
          } else {
            for (const [index, part] of message.content.entries()) {
              parts.push(yield* userPart(part, `messages[${position}].content[${index}]`))
            }
          }
          appendTurn(contents, "user", parts)
          break
        }
        case "assistant":
          // By the upstream part of the id: a client may echo a carried id in one place and not the other.
          for (const call of message.tool_calls ?? []) toolNames.set(baseOf(call.id), call.function.name)
          appendTurn(contents, "model", assistantParts(message))
          break
        case "tool": {
          const name = toolNames.get(baseOf(message.tool_call_id))
          if (name === undefined) {
            return yield* Either.left(
              invalidRequest(
                `tool message refers to tool_call_id '${message.tool_call_id}', which no earlier assistant tool call has`,
                `messages[${position}].tool_call_id`
              )
            )
          }
          appendTurn(contents, "user", [{ functionResponse: { name, response: toolResponseOf(textOf(message.content)) } }])
          break
        }
      }
    }

    const declarations = (request.tools ?? []).map((tool): GeminiFunctionDeclaration => {
      const { description, name, parameters } = tool.function
      return {
        name,
        ...(description === undefined ? {} : { description }),
        ...(parameters === undefined ? {} : { parametersJsonSchema: withoutSchemaKeyword(parameters) })
      }
    })

    const thinkingConfig = yield* thinkingConfigOf(request)
    const generationConfig = generationConfigOf(request)
    const body: GeminiRequestBody = {
      contents,
      ...(system.length === 0 ? {} : { systemInstruction: { parts: system } }),
      generationConfig: thinkingConfig === undefined ? generationConfig : { ...generationConfig, thinkingConfig },
      ...(declarations.length === 0 ? {} : { tools: [{ functionDeclarations: declarations }] }),
      ...(declarations.length === 0 || request.tool_choice === undefined ? {} : { toolConfig: toolConfigOf(request.tool_choice) })
    }
    return body
  })
