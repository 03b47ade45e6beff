/**
 * OpenAI and every OpenAI-compatible server (vLLM, Ollama, OpenRouter, Groq, LM Studio…): a pass-through.
 * Unknown request and response fields survive both ways; only the upstream key is added.
 */
import { Effect, Redacted } from "effect"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from "../../OpenAi/Schemas.js"
import { ProviderError } from "../Provider.js"
import type { AttemptDeadline, Provider, UpstreamTarget } from "../Provider.js"
import { eventSource, malformed, parseErrorBody, postJson, readJson, reasonForStatus, streamFromOpen } from "../Upstream.js"
import type { EventBatch, SseEvent } from "../Upstream.js"

export const defaultBaseUrl = "https://api.openai.com/v1"
const provider = "openai"

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

const isCompletion = (value: unknown): value is ChatCompletion => isObject(value) && Array.isArray(value["choices"])

const isChunk = (value: unknown): value is ChatCompletionChunk => isObject(value) && Array.isArray(value["choices"])

/** An `{"error":{...}}` payload sent inside a 200 stream, as OpenAI and vLLM do. */
const inStreamError = (payload: Record<string, unknown>): ProviderError => {
  const details = parseErrorBody(JSON.stringify(payload))
  const status = typeof details.code === "string" && /^\d{3}$/.test(details.code) ? Number(details.code) : 500
  return new ProviderError({
    reason: reasonForStatus(status, details),
    message: details.message ?? "the upstream stream reported an error",
    provider,
    code: details.code ?? null
  })
}

/** A `data:` payload as a chunk, or the failure it stands for. */
const decodeChunk = (data: string): ChatCompletionChunk | ProviderError => {
  let payload: unknown
  try {
    payload = JSON.parse(data)
  } catch {
    return malformed(provider, "an SSE event whose data is not JSON")
  }
  if (isObject(payload) && payload["error"] !== undefined) return inStreamError(payload)
  return isChunk(payload) ? payload : malformed(provider, "a stream event that is not a chat.completion.chunk")
}

const endedEarly = new ProviderError({ reason: "Unavailable", message: `${provider} upstream stream ended early`, provider })

/** A provider for one OpenAI-compatible deployment. */
export const make = (target: UpstreamTarget): Effect.Effect<Provider> =>
  Effect.gen(function* () {
    const url = `${target.baseUrl.replace(/\/+$/, "")}/chat/completions`
    const headers: Record<string, string> = {
      ...target.headers,
      accept: "application/json",
      ...(target.apiKey === undefined ? {} : { authorization: `Bearer ${Redacted.value(target.apiKey)}` })
    }
    const streamHeaders = { ...headers, accept: "text/event-stream" }

    const completeBy = (request: ChatCompletionRequest, deadline?: AttemptDeadline) =>
      postJson(provider, url, headers, { ...request, stream: false }, undefined, deadline).pipe(
        Effect.flatMap((response) => readJson(provider, response, deadline)),
        Effect.flatMap((body) =>
          isCompletion(body) ? Effect.succeed(body) : Effect.fail(malformed(provider, "a body that is not a chat.completion"))
        )
      )

    const decodeEvents = () => {
      // A stream that stops with neither [DONE] nor a finish reason broke off upstream.
      let finished = false
      const decode = (events: ReadonlyArray<SseEvent>): EventBatch<ChatCompletionChunk> => {
        const chunks: Array<ChatCompletionChunk> = []
        for (const event of events) {
          if (event.data.trim() === "[DONE]") return { items: chunks, done: true }
          const chunk = decodeChunk(event.data)
          if (chunk instanceof ProviderError) return chunk
          finished = finished || chunk.choices.some((choice) => choice.finish_reason != null)
          chunks.push(chunk)
        }
        return { items: chunks, done: false }
      }
      return { decode, atEnd: () => (finished ? [] : endedEarly) }
    }

    const open = (request: ChatCompletionRequest, deadline?: AttemptDeadline) =>
      Effect.flatMap(postJson(provider, url, streamHeaders, { ...request, stream: true }, undefined, deadline), (response) => {
        const { atEnd, decode } = decodeEvents()
        return Effect.succeed(eventSource(provider, response, decode, atEnd))
      })

    return { complete: (request) => completeBy(request), completeBy, stream: streamFromOpen(open), open }
  })
