/**
 * Handlers for the Api groups. Chat answers JSON for `stream: false` and SSE for `stream: true` by returning an
 * `HttpServerResponse` itself, as embeddings do with their JSON; failures are rendered through the error table.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Either, FiberRef, Layer, Stream } from "effect"
import { ProxyConfig } from "../Config.js"
import { ChatCore, ChatFailure } from "../Core/Chat.js"
import { currentRecord } from "../Core/RequestRecord.js"
import type { RequestRecord } from "../Core/RequestRecord.js"
import * as Metrics from "../Metrics.js"
import type { AnswerHeaders, ChatAnswer, MessagesAnswer, ResponsesAnswer } from "../Core/Chat.js"
import type { Served } from "../Router/Router.js"
import { within } from "../Providers/Deadline.js"
import { Forbidden, LimitsUnavailable, ModelNotFound, NotReady } from "../Errors.js"
import { Store } from "../Governance/Store.js"
import type { StoreError } from "../Governance/Store.js"
import { Timer } from "../Timer.js"
import { metricsText } from "../Cluster/Worker.js"
import { ModelRegistry } from "../Router/Registry.js"
import type { RegisteredModel } from "../Router/Registry.js"
import { embeddingResponse } from "../OpenAi/Embeddings.js"
import type { Model } from "../OpenAi/Schemas.js"
import { Api } from "./Api.js"
import { errorResponse } from "./Errors.js"
import { CurrentCaller, mayUse } from "./Auth.js"
import type { Caller } from "./Auth.js"
import { headerOf, routingHeaders } from "./Edge.js"
import { Lifecycle } from "./Lifecycle.js"
import { countHeaders, countTokensCallOf, messagesCallOf, messagesErrorResponse, messagesFraming } from "./Messages.js"
import { RequestId } from "./RequestId.js"
import { responseIdOf, responsesCallOf, responsesFraming } from "./Responses.js"
import { responseNotFound } from "../Core/Responses.js"
import * as Sse from "./Sse.js"

const toModel = (model: RegisteredModel, created: number): Model => ({
  id: model.name,
  object: "model",
  created,
  owned_by: model.ownedBy
})

export const HealthLive = HttpApiBuilder.group(Api, "health", (handlers) =>
  Effect.gen(function* () {
    const lifecycle = yield* Lifecycle
    const store = yield* Store
    return handlers
      .handle("health", () =>
        Effect.sync(() => ({
          status: "ok" as const,
          uptime_seconds: Math.round((Date.now() - lifecycle.startedAt) / 1000)
        }))
      )
      .handle("ready", () =>
        lifecycle.isDraining()
          ? Effect.fail(new NotReady({ reason: "the gateway is draining" }))
          : store.ping.pipe(
              Effect.as({ status: "ready" as const }),
              Effect.catchAll(() => Effect.fail(new NotReady({ reason: `the ${store.kind} governance store does not answer` })))
            )
      )
  })
)

export const ModelsLive = HttpApiBuilder.group(Api, "models", (handlers) =>
  Effect.map(ModelRegistry, (holder) => {
    /** The current registry's models the caller may use. */
    const visible = (caller: Caller) => {
      const registry = holder.current()
      return { registry, models: registry.models.filter((model) => mayUse(caller, model.name)) }
    }
    return handlers
      .handle("list", () =>
        Effect.map(CurrentCaller, (caller) => {
          const { models, registry } = visible(caller)
          return { object: "list" as const, data: models.map((model) => toModel(model, registry.loadedAt)) }
        })
      )
      .handle("llmModels", () =>
        Effect.map(CurrentCaller, (caller) => ({
          models: visible(caller).models.map((model) => ({
            id: model.name,
            provider: String(model.deployments[0]?.providerKind ?? "custom"),
            deployments: model.deployments.length
          }))
        }))
      )
      .handle("retrieve", ({ path }) =>
        Effect.map(CurrentCaller, (caller) => {
          const registry = holder.current()
          const model = mayUse(caller, path.model) ? registry.lookup(path.model) : undefined
          return model === undefined ? errorResponse(new ModelNotFound({ model: path.model })) : toModel(model, registry.loadedAt)
        })
      )
  })
)

/**
 * A committed stream's SSE frames as the response, for either dialect: its place in the active-streams gauge while
 * it is written, and its time to first token at the first frame.
 */
const sseResponse = (body: Stream.Stream<Uint8Array>, routed: Served, headers: AnswerHeaders, record: RequestRecord | undefined) => {
  let first = true
  const timed = body.pipe(
    Stream.tap(() =>
      Effect.sync(() => {
        if (!first) return
        first = false
        const now = performance.now()
        if (record !== undefined) record.firstByteAt = now
        Metrics.timeToFirstToken.update((now - (record?.arrivedAt ?? now)) / 1000, routed.deployment.name, String(routed.deployment.providerKind))
      })
    ),
    (framed) =>
      Stream.acquireRelease(Effect.sync(() => Metrics.streamsActive.add(1)), () => Effect.sync(() => Metrics.streamsActive.add(-1))).pipe(
        Stream.flatMap(() => framed)
      )
  )
  return HttpServerResponse.stream(timed, {
    contentType: "text/event-stream",
    headers: { ...headers, ...Sse.sseHeaders, ...routingHeaders(routed) }
  })
}

export const ChatLive = HttpApiBuilder.group(Api, "chat", (handlers) =>
  Effect.gen(function* () {
    const core = yield* ChatCore
    const config = yield* ProxyConfig

    const respond = (answer: ChatAnswer, includeUsage: boolean, record: RequestRecord | undefined) =>
      Effect.gen(function* () {
        if (answer._tag === "Completion") {
          return HttpServerResponse.text(answer.json ?? JSON.stringify(answer.completion), {
            contentType: "application/json",
            headers: { ...answer.headers, ...routingHeaders(answer.served) }
          })
        }
        const routed = answer.stream
        // Tied to the request's scope: should the response never be written (the client left first), the upstream
        // connection is released all the same.
        yield* Effect.addFinalizer(() => Effect.sync(routed.source.close))
        const deadline = routed.deadline
        const bounded = routed.chunks.pipe(
          Stream.interruptWhen(within(Effect.never, deadline))
        )
        return sseResponse(Sse.encode(bounded, { includeUsage, requestId: yield* RequestId, keepaliveMs: config.sseKeepaliveMs, ...(answer.sink === undefined ? {} : { sink: answer.sink }) }), routed, answer.headers, record)
      })

    return handlers.handle("create", ({ payload }) =>
      Effect.gen(function* () {
        const caller = yield* CurrentCaller
        const record = yield* FiberRef.get(currentRecord)
        const request = yield* HttpServerRequest.HttpServerRequest
        const answer = yield* core.chat(payload, caller, record, { cacheControl: headerOf(request.headers, "cache-control") })
        return yield* respond(answer, payload.stream === true && payload.stream_options?.include_usage === true, record)
      }).pipe(
        Effect.catchAll((failure) => Effect.succeed(errorResponse(failure.error, failure.headers)))
      )
    )
  })
)

export const EmbeddingsLive = HttpApiBuilder.group(Api, "embeddings", (handlers) =>
  Effect.map(ChatCore, (core) =>
    handlers.handle("create", ({ payload }) =>
      Effect.gen(function* () {
        const caller = yield* CurrentCaller
        const record = yield* FiberRef.get(currentRecord)
        const request = yield* HttpServerRequest.HttpServerRequest
        const answer = yield* core.embed(payload, caller, record, headerOf(request.headers, "cache-control"))
        // The vectors are encoded here, at the edge, as the client asked: the core holds them as floats.
        const body = embeddingResponse(answer.vectors, answer.usage, answer.served.deployment.name, payload.encoding_format ?? "float")
        return HttpServerResponse.text(JSON.stringify(body), {
          contentType: "application/json",
          headers: { ...answer.headers, ...routingHeaders(answer.served) }
        })
      }).pipe(Effect.catchAll((failure) => Effect.succeed(errorResponse(failure.error, failure.headers))))
    )
  )
)

/**
 * The Messages endpoints on the HttpApi mount: the same decoding (src/Http/Messages.ts), the same core and the same
 * framing as the fast path's. The body is checked again from its parsed JSON, as the fast path checks it, and kept
 * as sent for native deployments (the framework's decoded payload is a copy).
 */
export const MessagesLive = HttpApiBuilder.group(Api, "messages", (handlers) =>
  Effect.gen(function* () {
    const core = yield* ChatCore
    const config = yield* ProxyConfig

    /** The request's parsed body (the edge has parsed and bounded it already; the text is cached). */
    const parsedBody = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      Effect.map(Effect.either(request.json), (body) => ({ body: Either.getOrUndefined(body), headers: request.headers }))
    )

    const respond = (answer: MessagesAnswer, record: RequestRecord | undefined) =>
      Effect.gen(function* () {
        if (answer._tag === "Message") {
          return HttpServerResponse.text(JSON.stringify(answer.answer.message), {
            contentType: "application/json",
            headers: { ...answer.headers, ...routingHeaders(answer.served) }
          })
        }
        const routed = answer.stream
        yield* Effect.addFinalizer(() => Effect.sync(routed.source.close))
        const bounded = routed.events.pipe(Stream.interruptWhen(within(Effect.never, routed.deadline)))
        return sseResponse(Sse.encodeFramed(bounded, messagesFraming, { requestId: yield* RequestId, keepaliveMs: config.sseKeepaliveMs }), routed, answer.headers, record)
      })

    return handlers
      .handle("create", () =>
        Effect.gen(function* () {
          const { body, headers } = yield* parsedBody
          const call = messagesCallOf(body, headers)
          if (Either.isLeft(call)) return messagesErrorResponse(call.left)
          const caller = yield* CurrentCaller
          const record = yield* FiberRef.get(currentRecord)
          return yield* respond(yield* core.messages(call.right, caller, record), record)
        }).pipe(Effect.catchAll((failure) => Effect.succeed(messagesErrorResponse(failure.error, failure.headers))))
      )
      .handle("countTokens", () =>
        Effect.gen(function* () {
          const { body, headers } = yield* parsedBody
          const call = countTokensCallOf(body, headers)
          if (Either.isLeft(call)) return messagesErrorResponse(call.left)
          const caller = yield* CurrentCaller
          const record = yield* FiberRef.get(currentRecord)
          const answer = yield* core.countTokens(call.right, caller, record)
          return HttpServerResponse.text(JSON.stringify({ input_tokens: answer.inputTokens }), {
            contentType: "application/json",
            headers: countHeaders(answer)
          })
        }).pipe(Effect.catchAll((failure) => Effect.succeed(messagesErrorResponse(failure.error, failure.headers))))
      )
  })
)

/**
 * The Responses endpoints on the HttpApi mount: the same decoding (src/Http/Responses.ts), core and framing as the
 * fast path's `POST`; retrieving and deleting are served here on both mounts. The body is checked again from its
 * parsed JSON and kept as sent for native deployments (the framework's decoded payload is a copy).
 */
export const ResponsesLive = HttpApiBuilder.group(Api, "responses", (handlers) =>
  Effect.gen(function* () {
    const core = yield* ChatCore
    const config = yield* ProxyConfig

    const respond = (answer: ResponsesAnswer, record: RequestRecord | undefined) =>
      Effect.gen(function* () {
        if (answer._tag === "Response") {
          return HttpServerResponse.text(JSON.stringify(answer.response), {
            contentType: "application/json",
            headers: { ...answer.headers, ...routingHeaders(answer.served) }
          })
        }
        const routed = answer.stream
        yield* Effect.addFinalizer(() => Effect.sync(routed.source.close))
        const bounded = routed.events.pipe(Stream.interruptWhen(within(Effect.never, routed.deadline)))
        return sseResponse(Sse.encodeFramed(bounded, responsesFraming(), { requestId: yield* RequestId, keepaliveMs: config.sseKeepaliveMs }), routed, answer.headers, record)
      })

    /** The stored response named by the path, or the 404 for an id no response can have. */
    const withId = <A>(segment: string, use: (id: string) => Effect.Effect<A, ChatFailure>) => {
      const id = responseIdOf(segment)
      return id === undefined ? Effect.fail(new ChatFailure({ error: responseNotFound(segment), headers: {} })) : use(id)
    }

    const asResponse = (value: unknown) => HttpServerResponse.text(JSON.stringify(value), { contentType: "application/json" })

    return handlers
      .handle("create", () =>
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const body = Either.getOrUndefined(yield* Effect.either(request.json))
          const call = responsesCallOf(body)
          if (Either.isLeft(call)) return errorResponse(call.left)
          const caller = yield* CurrentCaller
          const record = yield* FiberRef.get(currentRecord)
          return yield* respond(yield* core.responses(call.right, caller, record), record)
        }).pipe(Effect.catchAll((failure) => Effect.succeed(errorResponse(failure.error, failure.headers))))
      )
      .handle("retrieve", ({ path }) =>
        Effect.flatMap(CurrentCaller, (caller) => withId(path.id, (id) => Effect.map(core.retrieveResponse(id, caller), asResponse))).pipe(
          Effect.catchAll((failure) => Effect.succeed(errorResponse(failure.error, failure.headers)))
        )
      )
      .handle("delete", ({ path }) =>
        Effect.flatMap(CurrentCaller, (caller) => withId(path.id, (id) => Effect.map(core.deleteResponse(id, caller), asResponse))).pipe(
          Effect.catchAll((failure) => Effect.succeed(errorResponse(failure.error, failure.headers)))
        )
      )
  })
)

const operatorOnly = Effect.flatMap(CurrentCaller, (caller) =>
  caller.operator ? Effect.void : Effect.fail(new Forbidden({ message: "This route takes the operator key (INTERNAL_API_KEY) only" }))
)

export const MetricsLive = HttpApiBuilder.group(Api, "metrics", (handlers) =>
  handlers.handle("metrics", () => Effect.zipRight(operatorOnly, metricsText))
)

const unavailable = (error: StoreError) =>
  Effect.zipRight(Effect.logError("governance store unavailable").pipe(Effect.annotateLogs("error", error.message)), Effect.fail(new LimitsUnavailable()))

/** Today's UTC day, `YYYY-MM-DD`. */
const today = (now: number): string => new Date(now).toISOString().slice(0, 10)

export const AdminLive = HttpApiBuilder.group(Api, "admin", (handlers) =>
  Effect.gen(function* () {
    const holder = yield* ModelRegistry
    const store = yield* Store
    const timer = yield* Timer
    return handlers
      .handle("keys", () =>
        Effect.zipRight(
          operatorOnly,
          Effect.forEach(holder.current().keys.list, (key) =>
            Effect.map(store.figures(key.id, key.limits), (figures) => ({
              id: key.id,
              models: key.models ?? null,
              limits: {
                ...(key.limits.rpm === undefined ? {} : { rpm: key.limits.rpm }),
                ...(key.limits.tpm === undefined ? {} : { tpm: key.limits.tpm }),
                ...(key.limits.maxParallel === undefined ? {} : { max_parallel: key.limits.maxParallel }),
                ...(key.limits.budget === undefined ? {} : { budget: key.limits.budget })
              },
              current: {
                requests_last_minute: figures.requestsLastMinute,
                tokens_last_minute: figures.tokensLastMinute,
                in_flight: figures.inFlight,
                spend_this_period_usd: figures.spendThisPeriodUsd
              }
            }))
          ).pipe(
            Effect.map((keys) => ({ keys })),
            Effect.catchTag("StoreError", unavailable)
          )
        )
      )
      .handle("usage", ({ urlParams }) =>
        Effect.zipRight(
          operatorOnly,
          Effect.suspend(() => {
            const day = urlParams.day ?? today(timer.now())
            return store.usage(day, urlParams.key).pipe(
              Effect.map((rows) => ({ day, rows })),
              Effect.catchTag("StoreError", unavailable)
            )
          })
        )
      )
  })
)

/** Every group's handlers. */
export const layer = Layer.mergeAll(HealthLive, ModelsLive, ChatLive, EmbeddingsLive, ResponsesLive, MessagesLive, MetricsLive, AdminLive)
