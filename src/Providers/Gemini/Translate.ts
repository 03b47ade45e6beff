/**
 * Pure translation between OpenAI's chat-completions dialect and Gemini's `generateContent`
 * (Generative Language API, v1beta): the request one way, the response and error bodies the other.
 */
import { Either, Schema } from "effect"
import type {
  ChatCompletion,
  ChatCompletionRequest,
  ChatMessage,
  FinishReason,
  ToolCall,
  ToolChoice,
  Usage,
  UserContentPart
} from "../../OpenAi/Schemas.js"
import { ProviderError } from "../Provider.js"
import { malformed, parseErrorBody, reasonForStatus } from "../Upstream.js"

/** The provider kind named in every `ProviderError` this dialect raises. */
export const provider = "gemini"

// ---------------------------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------------------------

export interface GeminiPart {
  readonly text?: string
  readonly inlineData?: { readonly mimeType: string; readonly data: string }
  readonly fileData?: { readonly fileUri: string; readonly mimeType?: string }
  readonly functionCall?: { readonly name: string; readonly args: Readonly<Record<string, unknown>> }
  readonly functionResponse?: { readonly name: string; readonly response: Readonly<Record<string, unknown>> }
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
}

export interface GeminiFunctionDeclaration {
  readonly name: string
  readonly description?: string
  readonly parameters?: Readonly<Record<string, unknown>>
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

const assistantParts = (message: Extract<ChatMessage, { role: "assistant" }>): ReadonlyArray<GeminiPart> => {
  const parts: Array<GeminiPart> = []
  const text = message.content === undefined || message.content === null ? "" : textOf(message.content)
  if (text.length > 0) parts.push({ text })
  for (const call of message.tool_calls ?? []) {
    parts.push({ functionCall: { name: call.function.name, args: argsOf(call.function.arguments) } })
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
    config.responseJsonSchema = format.json_schema.schema
  }
  return config
}

const toolConfigOf = (choice: ToolChoice): GeminiToolConfig => {
  if (choice === "none") return { functionCallingConfig: { mode: "NONE" } }
  if (choice === "auto") return { functionCallingConfig: { mode: "AUTO" } }
  if (choice === "required") return { functionCallingConfig: { mode: "ANY" } }
  return { functionCallingConfig: { mode: "ANY", allowedFunctionNames: [choice.function.name] } }
}

/** Gemini rejects an OBJECT schema with no properties; a function without parameters simply omits them. */
const hasNoProperties = (parameters: Readonly<Record<string, unknown>>): boolean =>
  isRecord(parameters["properties"]) && Object.keys(parameters["properties"]).length === 0

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
          for (const call of message.tool_calls ?? []) toolNames.set(call.id, call.function.name)
          appendTurn(contents, "model", assistantParts(message))
          break
        case "tool": {
          const name = toolNames.get(message.tool_call_id)
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
        ...(parameters === undefined || hasNoProperties(parameters) ? {} : { parameters })
      }
    })

    const body: GeminiRequestBody = {
      contents,
      ...(system.length === 0 ? {} : { systemInstruction: { parts: system } }),
      generationConfig: generationConfigOf(request),
      ...(declarations.length === 0 ? {} : { tools: [{ functionDeclarations: declarations }] }),
      ...(declarations.length === 0 || request.tool_choice === undefined ? {} : { toolConfig: toolConfigOf(request.tool_choice) })
    }
    return body
  })

// ---------------------------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------------------------

const GeminiResponsePart = Schema.Struct({
  text: Schema.optional(Schema.String),
  thought: Schema.optional(Schema.Boolean),
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

/** Gemini's `finishReason` as OpenAI's; `STOP` after function calls is `tool_calls`. */
export const finishReasonOf = (finishReason: string, producedToolCalls: boolean): FinishReason => {
  if (finishReason === "MAX_TOKENS") return "length"
  if (contentFilterReasons.has(finishReason)) return "content_filter"
  return producedToolCalls ? "tool_calls" : "stop"
}

/**
 * `usageMetadata` as OpenAI usage. Thinking tokens are billed as output, so they count as completion tokens and
 * are reported again as `reasoning_tokens`.
 */
export const usageOf = (metadata: GeminiUsageMetadata): Usage => {
  const prompt = metadata.promptTokenCount ?? 0
  const completion = (metadata.candidatesTokenCount ?? 0) + (metadata.thoughtsTokenCount ?? 0)
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: metadata.totalTokenCount ?? prompt + completion,
    ...(metadata.cachedContentTokenCount === undefined
      ? {}
      : { prompt_tokens_details: { cached_tokens: metadata.cachedContentTokenCount } }),
    ...(metadata.thoughtsTokenCount === undefined
      ? {}
      : { completion_tokens_details: { reasoning_tokens: metadata.thoughtsTokenCount } })
  }
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

const choiceOf = (candidate: GeminiCandidate, position: number, completionId: string) => {
  const index = candidate.index ?? position
  const parts = partsOf(candidate)
  const texts = parts.filter((part) => part.text !== undefined && part.thought !== true).map((part) => part.text ?? "")
  const toolCalls: Array<ToolCall> = []
  for (const part of parts) {
    if (part.functionCall === undefined) continue
    toolCalls.push({
      id: toolCallId(completionId, index, toolCalls.length),
      type: "function",
      function: { name: part.functionCall.name, arguments: JSON.stringify(part.functionCall.args ?? {}) }
    })
  }
  return {
    index,
    message: {
      role: "assistant" as const,
      content: texts.length > 0 ? texts.join("") : toolCalls.length > 0 ? null : "",
      refusal: null,
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
    const completion: ChatCompletion = {
      id: ctx.id,
      object: "chat.completion",
      created: ctx.created,
      model: ctx.model,
      choices: candidates.map((candidate, position) => choiceOf(candidate, position, ctx.id)),
      ...(response.usageMetadata === undefined ? {} : { usage: usageOf(response.usageMetadata) })
    }
    return completion
  })

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

/** What Gemini's `error.details` add to the shared error table: the ErrorInfo reason and the RetryInfo delay. */
export interface GeminiErrorDetails {
  readonly errorInfoReason?: string | undefined
  readonly retryDelayMs?: number | undefined
}

/** ErrorInfo reasons that mean the gateway's credential is wrong, whatever the status (Gemini sends 400). */
const authenticationReasons: ReadonlySet<string> = new Set(["API_KEY_INVALID", "API_KEY_EXPIRED"])

/** Reads `error.details[]` (google.rpc ErrorInfo / RetryInfo) from a Gemini error body, possibly array-wrapped. */
export const geminiErrorDetails = (body: unknown): GeminiErrorDetails => {
  const root = Array.isArray(body) ? body[0] : body
  const error = isRecord(root) ? root["error"] : undefined
  const details = isRecord(error) && Array.isArray(error["details"]) ? error["details"] : []
  let errorInfoReason: string | undefined
  let retryDelayMs: number | undefined
  for (const detail of details) {
    if (!isRecord(detail)) continue
    const type = String(detail["@type"] ?? "")
    if (type.endsWith("google.rpc.ErrorInfo") && typeof detail["reason"] === "string") errorInfoReason = detail["reason"]
    if (type.endsWith("google.rpc.RetryInfo") && typeof detail["retryDelay"] === "string") {
      const seconds = Number.parseFloat(detail["retryDelay"])
      if (Number.isFinite(seconds) && seconds >= 0) retryDelayMs = Math.round(seconds * 1000)
    }
  }
  return { errorInfoReason, retryDelayMs }
}

/** Adds what only Gemini's error details tell: an invalid API key is `Authentication`; RetryInfo sets the wait. */
export const refineError = (error: ProviderError, details: GeminiErrorDetails): ProviderError =>
  new ProviderError({
    reason:
      details.errorInfoReason !== undefined && authenticationReasons.has(details.errorInfoReason)
        ? "Authentication"
        : error.reason,
    message: error.message,
    provider: error.provider,
    status: error.status,
    retryAfterMs: error.retryAfterMs ?? details.retryDelayMs,
    param: error.param,
    code: error.code
  })

/** Whether a parsed body (or stream frame) is Gemini's `{error:{code,message,status}}` rather than a response. */
export const isErrorBody = (body: unknown): boolean => {
  const root = Array.isArray(body) ? body[0] : body
  return isRecord(root) && root["error"] !== undefined
}

/**
 * A `ProviderError` for an error body that arrived where a response was expected (a 2xx body or a stream frame);
 * the status comes from `error.code`, else `fallbackStatus`.
 */
export const errorFromBody = (body: unknown, fallbackStatus: number): ProviderError => {
  const details = parseErrorBody(JSON.stringify(body))
  const code = Number(details.code)
  const status = Number.isInteger(code) && code >= 400 && code <= 599 ? code : fallbackStatus
  return refineError(
    new ProviderError({
      reason: reasonForStatus(status, details),
      message: details.message !== undefined && details.message.length > 0 ? details.message : `gemini upstream failed with ${status}`,
      provider,
      status,
      param: details.param ?? null,
      code: details.code ?? null
    }),
    geminiErrorDetails(body)
  )
}
