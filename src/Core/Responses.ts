/**
 * OpenAI's Responses API through the core: admitted by the same gate as chat (allow-list, limits, lease), routed by
 * the same Router (names, balancing, retries, fallbacks, stream commit, deadlines; each attempt native to an
 * `api: responses` deployment, translated through chat completions to any other), accounted the same way: the
 * response's usage, else the gateway's count of the texts. Its state — `store`, `previous_response_id`, retrieve
 * and delete — is the ResponsesStore's, each response visible to the key that made it only.
 */
import { Effect, Runtime, Stream } from "effect"
import type { Context } from "effect"
import { promptTexts } from "../Governance/Tokenizer.js"
import type { StoreError } from "../Governance/Store.js"
import type { Caller } from "../Http/Auth.js"
import type { ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { observed, pullOf, releaseOf } from "../Providers/ChunkSource.js"
import type { ChunkSource } from "../Providers/ChunkSource.js"
import { responseCountsOf } from "../Providers/OpenAiCompatible/Responses.js"
import { ProviderError } from "../Providers/ProviderError.js"
import type { ModelRegistry } from "../Router/Registry.js"
import type { RoutedResponseStream, Router, Served } from "../Router/Router.js"
import type { ResponsesStoreBounds, ResponsesStoreService } from "../Responses/Store.js"
import { translationProvider } from "../Responses/Translate.js"
import type { ResponsesCall, ResponsesEvent } from "../Responses/Wire.js"
import { DeliveredText } from "./Delivered.js"
import { ChatFailure, noteServed } from "./Gate.js"
import type { AnswerHeaders, Gate, Pass, PromptTexts } from "./Gate.js"
import type { RequestRecord } from "./RequestRecord.js"

/** What a Responses request became: a response object, or a committed event stream (its first events in hand). */
export type ResponsesAnswer =
  | { readonly _tag: "Response"; readonly response: Readonly<Record<string, unknown>>; readonly served: Served; readonly headers: AnswerHeaders }
  | { readonly _tag: "Stream"; readonly stream: RoutedResponseStream; readonly headers: AnswerHeaders }

/**
 * A stored response the caller may not see, or that is not (or no longer) stored, in OpenAI's envelope: 404 on
 * `GET` and `DELETE /v1/responses/{id}`; as a `previous_response_id`, the 400 OpenAI itself answers
 * (`previous_response_not_found`, which clients such as Codex read to send the whole conversation again).
 */
export const responseNotFound = (id: string, asPrevious = false): ProviderError =>
  new ProviderError({
    reason: "InvalidRequest",
    status: asPrevious ? 400 : 404,
    message: asPrevious ? `Previous response with id '${id.slice(0, 256)}' not found.` : `Response with id '${id.slice(0, 256)}' not found.`,
    provider: translationProvider,
    param: asPrevious ? "previous_response_id" : null,
    code: asPrevious ? "previous_response_not_found" : "response_not_found"
  })

/** The responses store unreachable: 503, the request not served (its history cannot be known). */
const storeUnavailable = (error: StoreError): ProviderError =>
  new ProviderError({ reason: "Unavailable", status: 503, message: `The responses store cannot be reached (${error.message.slice(0, 200)})`, provider: translationProvider })

const isObject = (value: unknown): value is Readonly<Record<string, unknown>> => typeof value === "object" && value !== null && !Array.isArray(value)

/** The body's input as items, as the client sent it: a string is one user message. */
const bodyInputItems = (body: Readonly<Record<string, unknown>>): ReadonlyArray<unknown> => {
  const input = body["input"]
  return typeof input === "string" ? [{ type: "message", role: "user", content: input }] : Array.isArray(input) ? input : []
}

/** The texts of items (input or output), for counting their tokens: message text, call names and arguments, reasoning. */
export const itemTexts = (items: ReadonlyArray<unknown>): Array<string> => {
  const texts: Array<string> = []
  const fromParts = (parts: unknown) => {
    if (typeof parts === "string") return void texts.push(parts)
    if (!Array.isArray(parts)) return
    for (const part of parts) {
      if (!isObject(part)) continue
      for (const field of ["text", "refusal"]) if (typeof part[field] === "string") texts.push(part[field])
    }
  }
  for (const item of items) {
    if (!isObject(item)) continue
    fromParts(item["content"])
    if (item["type"] === "function_call_output") fromParts(item["output"])
    for (const field of ["name", "arguments"]) if (typeof item[field] === "string") texts.push(item[field])
  }
  return texts
}

/** The prompt's texts: of the chat request a translated attempt sent, else of the Responses input and instructions. */
const promptOf = (call: ResponsesCall, translated: ChatCompletionRequest | undefined): PromptTexts => {
  if (translated !== undefined) return promptTexts(translated)
  const input = bodyInputItems(call.body)
  const instructions = call.request.instructions
  const texts = itemTexts(input)
  if (typeof instructions === "string") texts.push(instructions)
  return { texts, overhead: 3 * input.length + 3 }
}

const outputOf = (response: Readonly<Record<string, unknown>>): ReadonlyArray<unknown> => (Array.isArray(response["output"]) ? response["output"] : [])

/**
 * A committed event stream's source that keeps the final response (its terminal event's, given to `onFinal` as soon
 * as it is read, before it is written) and the text it delivered, and reports them once, when the stream ends
 * however it ends.
 */
const accountedEvents = (
  source: ChunkSource<ResponsesEvent>,
  onFinal: (final: Readonly<Record<string, unknown>>) => void,
  onEnd: (final: Readonly<Record<string, unknown>> | undefined, delivered: DeliveredText) => void
): ChunkSource<ResponsesEvent> => {
  let final: Readonly<Record<string, unknown>> | undefined
  const delivered = new DeliveredText()
  return observed(
    source,
    (event) => {
      if (event.response !== undefined && final === undefined) {
        final = event.response
        onFinal(final)
      }
      if (event.text !== undefined) delivered.add(event.text)
    },
    () => onEnd(final, delivered)
  )
}

/** The statuses of a response that is kept when `store` is on: an answer, whole or cut short. */
const storedStatuses: ReadonlySet<unknown> = new Set(["completed", "incomplete"])

/** The core's Responses operations over the gate, the Router and the responses store. */
export const makeResponses = (
  gate: Gate,
  router: Context.Tag.Service<typeof Router>,
  store: ResponsesStoreService,
  registry: Context.Tag.Service<typeof ModelRegistry>
) => {
  const boundsNow = (): ResponsesStoreBounds => {
    const settings = registry.current().settings.responses
    return { ttlMs: settings.ttl_s * 1000, maxEntries: settings.max_entries, maxBytes: settings.max_bytes, maxEntryBytes: settings.max_entry_bytes }
  }

  /** Whether an answer is kept: the request asked for it (the default) and it is an answer, whole or cut short. */
  const isKept = (call: ResponsesCall, response: Readonly<Record<string, unknown>>): boolean =>
    call.request.store !== false && storedStatuses.has(response["status"])

  /** Stores an answer when it `isKept`; a store failure is logged, not the client's. */
  const keep = (call: ResponsesCall, caller: Caller, response: Readonly<Record<string, unknown>>): Effect.Effect<void> => {
    if (!isKept(call, response)) return Effect.void
    // The body's input holds the history already (`withHistory`): what a continuation replays.
    return store.put({ owner: caller.id, response, input: bodyInputItems(call.body) }, boundsNow()).pipe(
      Effect.catchAll((error) => Effect.logWarning("a response could not be stored").pipe(Effect.annotateLogs("error", error.message))),
      Effect.asVoid
    )
  }

  /** The request's accounting from its response: the usage it reports, else the gateway's count of its texts. */
  const finishResponse = (pass: Pass, call: ResponsesCall, served: Served, response: Readonly<Record<string, unknown>>, translated: ChatCompletionRequest | undefined, endedAt?: number) => {
    const counts = responseCountsOf(response)
    if (counts !== undefined) pass.finish(served.deployment, counts, endedAt)
    else pass.finishCounted(served.deployment, promptOf(call, translated), itemTexts(outputOf(response)), endedAt)
  }

  const serve = (call: ResponsesCall, caller: Caller, pass: Pass): Effect.Effect<ResponsesAnswer, ChatFailure["error"]> => {
    const { headers, record } = pass
    if (call.request.stream === true) {
      return Effect.flatMap(Effect.runtime<never>(), (runtime) =>
        Effect.map(router.responseStream(call, record), (routed): ResponsesAnswer => {
          noteServed(record, routed)
          const source = accountedEvents(
            routed.source,
            // Stored once whole, before its last event is written: a client that retrieves it at once finds it (the
            // Redis store's commands run in order on its one connection). A stream cut off is not stored.
            (final) => {
              if (isKept(call, final)) Runtime.runFork(runtime)(keep(call, caller, final))
            },
            (final, delivered) => {
              const endedAt = performance.now()
              if (final !== undefined) finishResponse(pass, call, routed, final, routed.translated, endedAt)
              else pass.finishCounted(routed.deployment, promptOf(call, routed.translated), delivered.texts, endedAt, delivered.estimatedTokens)
            }
          )
          const events = Stream.repeatEffectChunkOption(pullOf(source)).pipe(Stream.ensuring(releaseOf(source)))
          return { _tag: "Stream", stream: { ...routed, source, events }, headers }
        })
      )
    }
    return Effect.flatMap(router.response(call, record), (routed) => {
      noteServed(record, routed)
      finishResponse(pass, call, routed, routed.response, routed.translated)
      return Effect.as(keep(call, caller, routed.response), { _tag: "Response", response: routed.response, served: routed, headers } satisfies ResponsesAnswer)
    })
  }

  /** The call with the history `previous_response_id` stands for: the stored input and output, the caller's own only. */
  const withHistory = (call: ResponsesCall, caller: Caller): Effect.Effect<ResponsesCall, ProviderError> => {
    const previous = call.request.previous_response_id
    if (previous === undefined || previous === null) return Effect.succeed(call)
    return store.get(previous, boundsNow()).pipe(
      Effect.mapError(storeUnavailable),
      Effect.flatMap((stored) => {
        if (stored === undefined || stored.owner !== caller.id) return Effect.fail(responseNotFound(previous, true))
        const history = [...stored.input, ...outputOf(stored.response)]
        const { previous_response_id: _resolved, ...rest } = call.body
        // A native deployment gets the whole conversation as input: the gateway, not the upstream, holds the state.
        return Effect.succeed({ request: call.request, history, body: { ...rest, input: [...history, ...bodyInputItems(call.body)] } })
      })
    )
  }

  const responses = (call: ResponsesCall, caller: Caller, record?: RequestRecord): Effect.Effect<ResponsesAnswer, ChatFailure> =>
    gate.admit(call.request.model, caller, record, (pass) => Effect.flatMap(withHistory(call, caller), (resolved) => serve(resolved, caller, pass)))

  const failure = (error: ProviderError) => new ChatFailure({ error, headers: {} })

  /** The stored response `id`, when the caller made it. */
  const retrieveResponse = (id: string, caller: Caller): Effect.Effect<Readonly<Record<string, unknown>>, ChatFailure> =>
    store.get(id, boundsNow()).pipe(
      Effect.mapError((error) => failure(storeUnavailable(error))),
      Effect.flatMap((stored) => (stored === undefined || stored.owner !== caller.id ? Effect.fail(failure(responseNotFound(id))) : Effect.succeed(stored.response)))
    )

  /** Deletes the stored response `id`, when the caller made it. */
  const deleteResponse = (id: string, caller: Caller): Effect.Effect<{ readonly id: string; readonly object: "response"; readonly deleted: true }, ChatFailure> =>
    Effect.flatMap(retrieveResponse(id, caller), () =>
      store.delete(id).pipe(
        Effect.mapError((error) => failure(storeUnavailable(error))),
        Effect.flatMap((deleted) => (deleted ? Effect.succeed({ id, object: "response" as const, deleted: true as const }) : Effect.fail(failure(responseNotFound(id)))))
      )
    )

  return { responses, retrieveResponse, deleteResponse }
}
