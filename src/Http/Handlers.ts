/**
 * Handlers for the Api groups. Chat answers JSON for `stream: false` and SSE for `stream: true` by returning an
 * `HttpServerResponse` itself; failures are rendered through the error table.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Layer, Metric, Stream } from "effect"
import { ChatCore } from "../Core/Chat.js"
import type { ChatAnswer } from "../Core/Chat.js"
import { within } from "../Providers/Deadline.js"
import { ModelNotFound } from "../Errors.js"
import { renderPrometheus } from "../Metrics.js"
import { ModelRegistry } from "../Router/Registry.js"
import type { RegisteredModel } from "../Router/Registry.js"
import type { Model } from "../OpenAi/Schemas.js"
import { Api } from "./Api.js"
import { errorResponse } from "./Errors.js"
import { CurrentCaller } from "./Auth.js"
import { routingHeaders } from "./Edge.js"
import { Lifecycle } from "./Lifecycle.js"
import { RequestId } from "./RequestId.js"
import * as Sse from "./Sse.js"

const toModel = (model: RegisteredModel, created: number): Model => ({
  id: model.name,
  object: "model",
  created,
  owned_by: model.ownedBy
})

export const HealthLive = HttpApiBuilder.group(Api, "health", (handlers) =>
  Effect.map(Lifecycle, (lifecycle) =>
    handlers.handle("health", () =>
      Effect.sync(() => ({
        status: "ok" as const,
        uptime_seconds: Math.round((Date.now() - lifecycle.startedAt) / 1000)
      }))
    )
  )
)

export const ModelsLive = HttpApiBuilder.group(Api, "models", (handlers) =>
  Effect.map(ModelRegistry, (registry) => {
    const list = { object: "list" as const, data: registry.models.map((model) => toModel(model, registry.loadedAt)) }
    const llmModels = {
      models: registry.models.map((model) => ({
        id: model.name,
        provider: String(model.deployments[0]?.providerKind ?? "custom"),
        deployments: model.deployments.length
      }))
    }
    return handlers
      .handle("list", () => Effect.succeed(list))
      .handle("llmModels", () => Effect.succeed(llmModels))
      .handle("retrieve", ({ path }) => {
        const model = registry.lookup(path.model)
        return model === undefined
          ? Effect.succeed(errorResponse(new ModelNotFound({ model: path.model })))
          : Effect.succeed(toModel(model, registry.loadedAt))
      })
  })
)

export const ChatLive = HttpApiBuilder.group(Api, "chat", (handlers) =>
  Effect.gen(function* () {
    const core = yield* ChatCore

    const respond = (answer: ChatAnswer, includeUsage: boolean) =>
      Effect.gen(function* () {
        if (answer._tag === "Completion") {
          return HttpServerResponse.text(JSON.stringify(answer.completion), {
            contentType: "application/json",
            headers: routingHeaders(answer.served)
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
        return HttpServerResponse.stream(Sse.encode(bounded, { includeUsage, requestId: yield* RequestId }), {
          contentType: "text/event-stream",
          headers: { ...Sse.sseHeaders, ...routingHeaders(routed) }
        })
      })

    return handlers.handle("create", ({ payload }) =>
      Effect.flatMap(CurrentCaller, (caller) => core.chat(payload, caller)).pipe(
        Effect.flatMap((answer) => respond(answer, payload.stream === true && payload.stream_options?.include_usage === true)),
        Effect.catchAll((error) => Effect.succeed(errorResponse(error)))
      )
    )
  })
)

export const MetricsLive = HttpApiBuilder.group(Api, "metrics", (handlers) =>
  handlers.handle("metrics", () => Effect.map(Metric.snapshot, renderPrometheus))
)

/** Every group's handlers. */
export const layer = Layer.mergeAll(HealthLive, ModelsLive, ChatLive, MetricsLive)
