/**
 * OpenAI and every OpenAI-compatible server (vLLM, Ollama, OpenRouter, Groq, LM Studio…): a pass-through.
 * Unknown request and response fields survive both ways; only the upstream key is added. What comes back is
 * checked against the spec's shapes (OpenAi/Wire.ts, OpenAi/Embeddings.ts) before a client sees it.
 */
import { Effect, Layer, Redacted } from "effect"
import { embeddingsOf, inputCount } from "../../OpenAi/Embeddings.js"
import type { EmbeddingRequest } from "../../OpenAi/Embeddings.js"
import type { ChatCompletionChunk, ChatCompletionRequest } from "../../OpenAi/Schemas.js"
import { chunkOf, chunksOfCompletion, completionOf } from "../../OpenAi/Wire.js"
import { fromItems } from "../ChunkSource.js"
import { baseOf } from "../ToolCallCarriage.js"
import { ChatProvider, ProviderError } from "../Provider.js"
import type { Deadline, Provider, UpstreamTarget } from "../Provider.js"
import { eventSource } from "../Upstream/EventSource.js"
import type { EventBatch } from "../Upstream/EventSource.js"
import type { SseEvent } from "../Upstream/SseDecoder.js"
import { inStreamError as upstreamInStreamError } from "../Upstream/Status.js"
import { discard, malformed, mediaTypeOf, parseBoundedJson, postJson, readJson, UpstreamTransport } from "../Upstream/Transport.js"
import type { TransportService, UpstreamResponse } from "../Upstream/Transport.js"
import { makeResponsesNative } from "./Responses.js"

export const defaultBaseUrl = "https://api.openai.com/v1"
const provider = "openai"

/** An `{"error":{...}}` payload sent inside a 200 stream, as OpenAI and vLLM do. */
const inStreamError = (payload: unknown): ProviderError => upstreamInStreamError(provider, payload)

const hasError = (payload: unknown): boolean =>
  typeof payload === "object" && payload !== null && (payload as { error?: unknown }).error !== undefined && (payload as { error?: unknown }).error !== null

/** A `data:` payload as a chunk, or the failure it stands for. */
const decodeChunk = (data: string): ChatCompletionChunk | ProviderError => {
  const payload = parseBoundedJson(data)
  if (payload === undefined) return malformed(provider, "an SSE event whose data is not JSON")
  if (hasError(payload)) return inStreamError(payload)
  const chunk = chunkOf(payload)
  return typeof chunk === "string" ? malformed(provider, `a stream event with ${chunk}`) : chunk
}

const endedEarly = new ProviderError({ reason: "Unavailable", message: `${provider} upstream stream ended early`, provider })

const doneFirst = malformed(provider, "a stream that said [DONE] before any choice")

/**
 * The decoder of one stream: a stream that stops with neither `[DONE]` nor a finish reason broke off upstream, and
 * one whose `[DONE]` comes before any choice (no chunk, or usage alone) answered nothing.
 */
const streamDecoder = () => {
  let finished = false
  let answered = false
  const decode = (events: ReadonlyArray<SseEvent>): EventBatch<ChatCompletionChunk> => {
    const chunks: Array<ChatCompletionChunk> = []
    for (const event of events) {
      if (event.data.trim() === "[DONE]") return answered ? { items: chunks, done: true } : doneFirst
      const chunk = decodeChunk(event.data)
      if (chunk instanceof ProviderError) return chunk
      if (chunk.choices.length > 0) answered = true
      if (!finished) for (const choice of chunk.choices) if (choice.finish_reason != null) finished = true
      chunks.push(chunk)
    }
    return { items: chunks, done: false }
  }
  return { decode, atEnd: () => (finished ? [] : endedEarly) }
}

/** A JSON completion as a stream: some servers ignore `stream: true` and answer JSON. */
const jsonAsStream = (transport: TransportService, response: UpstreamResponse, deadline: Deadline | undefined) =>
  Effect.flatMap(readJson(transport, provider, response, deadline), (body) => {
    if (hasError(body)) return Effect.fail(inStreamError(body))
    const completion = completionOf(body)
    if (typeof completion === "string") return Effect.fail(malformed(provider, `a JSON answer to a stream request with ${completion}`))
    // As a stream it would never say it finished: the same as a stream that ends early.
    if (completion.choices.length === 0) return Effect.fail(malformed(provider, "a JSON answer to a stream request with no choices"))
    return Effect.succeed(fromItems(chunksOfCompletion(completion)))
  })

/** Whether an id carries what another dialect attached to a tool call (see ToolCallCarriage). */
const carries = (id: string): boolean => baseOf(id) !== id

/**
 * The request without the carriage other dialects attach to tool call ids (a conversation that moved here, e.g. by
 * a fallback from Gemini): OpenAI-compatible upstreams get the plain ids, which some refuse past 40 characters.
 * The request itself when nothing carries, which is nearly always.
 */
const withPlainToolCallIds = (request: ChatCompletionRequest): ChatCompletionRequest => {
  const carried = request.messages.some(
    (message) =>
      (message.role === "tool" && carries(message.tool_call_id)) ||
      (message.role === "assistant" && (message.tool_calls ?? []).some((call) => carries(call.id)))
  )
  if (!carried) return request
  return {
    ...request,
    messages: request.messages.map((message) =>
      message.role === "tool"
        ? { ...message, tool_call_id: baseOf(message.tool_call_id) }
        : message.role === "assistant" && message.tool_calls !== undefined
          ? { ...message, tool_calls: message.tool_calls.map((call) => ({ ...call, id: baseOf(call.id) })) }
          : message
    )
  }
}

/** Which API of the upstream serves `/v1/responses`: its own Responses API, or chat completions (translated). */
export type OpenAiApi = "chat" | "responses"

/**
 * A provider for one OpenAI-compatible deployment, on the injected upstream transport; with `api: "responses"` it
 * also speaks the Responses API natively (`{base}/responses`).
 */
export const make = (target: UpstreamTarget, api: OpenAiApi = "chat"): Effect.Effect<Provider, never, UpstreamTransport> =>
  Effect.map(UpstreamTransport, (transport): Provider => {
    const base = target.baseUrl.replace(/\/+$/, "")
    const url = `${base}/chat/completions`
    const headers: Record<string, string> = {
      ...target.headers,
      accept: "application/json",
      "content-type": "application/json",
      ...(target.apiKey === undefined ? {} : { authorization: `Bearer ${Redacted.value(target.apiKey)}` })
    }
    const json = { provider, url, headers }
    const eventStream = { provider, url, headers: { ...headers, accept: "text/event-stream" } }

    const complete = (request: ChatCompletionRequest, deadline?: Deadline) =>
      postJson(transport, json, JSON.stringify({ ...withPlainToolCallIds(request), stream: false }), deadline).pipe(
        Effect.flatMap((response) => readJson(transport, provider, response, deadline)),
        Effect.flatMap((body) => {
          const completion = completionOf(body)
          return typeof completion === "string" ? Effect.fail(malformed(provider, completion)) : Effect.succeed(completion)
        })
      )

    const open = (request: ChatCompletionRequest, deadline?: Deadline) =>
      Effect.flatMap(postJson(transport, eventStream, JSON.stringify({ ...withPlainToolCallIds(request), stream: true }), deadline), (response) => {
        const media = mediaTypeOf(response)
        // Unlabelled bodies are read as SSE: they claim nothing else.
        if (media === "text/event-stream" || media === "") {
          const { atEnd, decode } = streamDecoder()
          return Effect.succeed(eventSource(transport, provider, response, decode, atEnd))
        }
        if (media === "application/json") return jsonAsStream(transport, response, deadline)
        discard(response.body)
        return Effect.fail(malformed(provider, `a ${media.slice(0, 60) || "unlabelled"} body to a stream request`))
      })

    const embeddings = { provider, url: `${base}/embeddings`, headers }

    // Passed through as the client sent it (its encoding_format included); either encoding is read back.
    const embed = (request: EmbeddingRequest, deadline?: Deadline) =>
      postJson(transport, embeddings, JSON.stringify(request), deadline).pipe(
        Effect.flatMap((response) => readJson(transport, provider, response, deadline)),
        Effect.flatMap((body) => {
          if (hasError(body)) return Effect.fail(inStreamError(body))
          const answer = embeddingsOf(body, inputCount(request.input))
          return typeof answer === "string" ? Effect.fail(malformed(provider, answer)) : Effect.succeed(answer)
        })
      )

    if (api === "chat") return { complete, open, embed }
    return { complete, open, embed, responses: makeResponsesNative(transport, { provider, url: `${base}/responses`, headers }) }
  })

/** One OpenAI-compatible deployment as a `ChatProvider` layer. */
export const layer = (target: UpstreamTarget): Layer.Layer<ChatProvider, never, UpstreamTransport> => Layer.effect(ChatProvider, make(target))
