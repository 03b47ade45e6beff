/**
 * The HTTP contract: endpoints with their Schema types, grouped as health, models, chat, embeddings, messages
 * (Anthropic's dialect), metrics and admin. Handlers live in Handlers.ts; this file is what the OpenAPI document is generated from.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import type { HttpMethod } from "@effect/platform/HttpMethod"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import {
  Forbidden,
  InternalError,
  InvalidRequest,
  LengthRequired,
  LimitExceeded,
  LimitsUnavailable,
  ModelNotFound,
  NotReady,
  PayloadTooLarge,
  ShuttingDown
} from "../Errors.js"
import { CreateEmbeddingResponse, EmbeddingRequest } from "../OpenAi/Embeddings.js"
import { ChatCompletion, ChatCompletionRequest, Model, ModelList } from "../OpenAi/Schemas.js"
import { CountTokensRequest, CountTokensResponse, MessagesErrorBody, MessagesRequest, MessagesResponse } from "../Anthropic/Wire.js"
import { DeletedResponse, ResponseObject, ResponsesRequest } from "../Responses/Wire.js"
import { Authentication, MessagesAuthentication } from "./Auth.js"
import { declaredEnvelope, upstreamEnvelope } from "./Errors.js"
import { fixOpenApi } from "./OpenApiDoc.js"

/** `GET /health`. */
export const HealthStatus = Schema.Struct({
  status: Schema.Literal("ok"),
  uptime_seconds: Schema.Number
}).annotations({ identifier: "HealthStatus" })

/** The original service's `GET /v1/llm/models` shape. */
export const LlmModelList = Schema.Struct({
  models: Schema.Array(Schema.Struct({ id: Schema.String, provider: Schema.String, deployments: Schema.Int }))
}).annotations({ identifier: "LlmModelList" })

const ForbiddenError = declaredEnvelope(Forbidden, (body) => new Forbidden({ message: body.error.message }), "A valid key that may not use this route")
const RateLimitedByKey = declaredEnvelope(
  LimitExceeded,
  (body) => new LimitExceeded({ keyId: "", limit: body.error.code === "insufficient_quota" ? "budget" : "rpm", value: 0, retryAfterMs: 1000 }),
  "A limit of the caller's key (rpm, tpm, max_parallel, budget), or the upstream's rate limit or quota after retries; Retry-After set"
)
const InvalidRequestError = declaredEnvelope(
  InvalidRequest,
  (body) => new InvalidRequest({ message: body.error.message, param: body.error.param }),
  "Invalid request: schema violation or malformed JSON (param names the field)"
)
const ModelNotFoundError = declaredEnvelope(
  ModelNotFound,
  (body) => new ModelNotFound({ model: body.error.message }),
  "Unknown model, or one the key may not use"
)
const LengthRequiredError = declaredEnvelope(LengthRequired, () => new LengthRequired(), "A body without Content-Length")
const TooLargeError = declaredEnvelope(PayloadTooLarge, () => new PayloadTooLarge({ limit: 0 }), "Request body over MAX_BODY_BYTES")
const InternalErrorResponse = declaredEnvelope(InternalError, () => new InternalError({ requestId: "unknown" }), "A bug; the request id is in the message and the log")
const ShuttingDownError = declaredEnvelope(ShuttingDown, () => new ShuttingDown(), "The gateway is draining after SIGTERM")
const UpstreamRejected = upstreamEnvelope(400, "The upstream refused the request (invalid for it, or its content policy)")
const UpstreamNotFound = upstreamEnvelope(404, "The upstream does not know the model")

const BadGatewayError = upstreamEnvelope(502, "Upstream failed, refused the gateway's credentials or answered malformed data")
const UnavailableError = upstreamEnvelope(503, "Upstream unavailable")
const TimeoutError = upstreamEnvelope(504, "Upstream did not answer within the deadline")

/** `GET /ready`. */
export const ReadyStatus = Schema.Struct({ status: Schema.Literal("ready") }).annotations({ identifier: "ReadyStatus" })

const NotReadyError = declaredEnvelope(NotReady, (body) => new NotReady({ reason: body.error.message }), "Not ready: the reason names what is missing")

/** Liveness (`/health`: the process answers) and readiness (`/ready`: it can serve: registry loaded, store answering, not draining). */
export class HealthGroup extends HttpApiGroup.make("health")
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(HealthStatus).annotate(OpenApi.Summary, "Liveness"))
  .add(HttpApiEndpoint.get("ready", "/ready").addSuccess(ReadyStatus).addError(NotReadyError).annotate(OpenApi.Summary, "Readiness")) {}

export class ModelsGroup extends HttpApiGroup.make("models")
  .add(HttpApiEndpoint.get("list", "/v1/models").addSuccess(ModelList).annotate(OpenApi.Summary, "List models"))
  .add(
    HttpApiEndpoint.get("retrieve", "/v1/models/:model")
      .setPath(Schema.Struct({ model: Schema.String }))
      .addSuccess(Model)
      .addError(ModelNotFoundError)
      .annotate(OpenApi.Summary, "Retrieve a model")
  )
  .add(HttpApiEndpoint.get("llmModels", "/v1/llm/models").addSuccess(LlmModelList).annotate(OpenApi.Summary, "List models with their providers"))
  .middleware(Authentication) {}

/** `GET /metrics`: Prometheus text exposition, behind the same key (Prometheus sends it as a bearer token). */
export class MetricsGroup extends HttpApiGroup.make("metrics")
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/plain; version=0.0.4" })))
      .addError(ForbiddenError)
      .annotate(OpenApi.Summary, "Prometheus metrics")
      .annotate(OpenApi.Description, "Prometheus metrics: HTTP requests, durations, upstream attempts by outcome, tokens. Operator key only.")
  )
  .middleware(Authentication) {}

/** A key's limits as `GET /admin/keys` shows them (as the registry file writes them). */
export const AdminKeyLimits = Schema.Struct({
  rpm: Schema.optional(Schema.Int),
  tpm: Schema.optional(Schema.Int),
  max_parallel: Schema.optional(Schema.Int),
  budget: Schema.optional(Schema.Struct({ usd: Schema.Number, period: Schema.Literal("daily", "monthly") }))
}).annotations({ identifier: "AdminKeyLimits" })

/** `GET /admin/keys`: every key with its limits and current figures; never a secret or a hash. */
export const AdminKeyList = Schema.Struct({
  keys: Schema.Array(
    Schema.Struct({
      id: Schema.String,
      models: Schema.NullOr(Schema.Array(Schema.String)),
      limits: AdminKeyLimits,
      current: Schema.Struct({
        requests_last_minute: Schema.Int,
        tokens_last_minute: Schema.Int,
        in_flight: Schema.Int,
        spend_this_period_usd: Schema.Number
      })
    })
  )
}).annotations({ identifier: "AdminKeyList" })

/** One usage row: a key's use of one public model on one UTC day. */
export const UsageRowSchema = Schema.Struct({
  key: Schema.String,
  model: Schema.String,
  requests: Schema.Int,
  prompt_tokens: Schema.Int,
  completion_tokens: Schema.Int,
  spend_usd: Schema.Number
}).annotations({ identifier: "UsageRow" })

/** `GET /admin/usage`. */
export const UsageReport = Schema.Struct({ day: Schema.String, rows: Schema.Array(UsageRowSchema) }).annotations({ identifier: "UsageReport" })

const StoreUnavailableError = declaredEnvelope(LimitsUnavailable, () => new LimitsUnavailable(), "The governance store cannot be reached")

/** The operator's routes: keys and usage. A virtual key gets 403. */
export class AdminGroup extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.get("keys", "/admin/keys")
      .addSuccess(AdminKeyList)
      .addError(ForbiddenError)
      .addError(StoreUnavailableError)
      .annotate(OpenApi.Summary, "List keys")
      .annotate(OpenApi.Description, "Every virtual key: id, models, limits, and its figures now (requests and tokens in the last 60 s, in flight, spend this period).")
  )
  .add(
    HttpApiEndpoint.get("usage", "/admin/usage")
      .setUrlParams(
        Schema.Struct({
          day: Schema.optional(Schema.String.pipe(Schema.pattern(/^\d{4}-\d{2}-\d{2}$/, { message: () => "must be YYYY-MM-DD" }))),
          key: Schema.optional(Schema.String)
        })
      )
      .addSuccess(UsageReport)
      .addError(InvalidRequestError)
      .addError(ForbiddenError)
      .addError(StoreUnavailableError)
      .annotate(OpenApi.Summary, "Usage of one day")
      .annotate(OpenApi.Description, "Usage rows per key and public model for one UTC day (default today), all keys or one (`key`); the operator key's as `operator`.")
  )
  .middleware(Authentication) {}

/** The failures of a request through the core (chat, embeddings), in OpenAI's envelope at their statuses. */
const withCoreErrors = <Name extends string, Method extends HttpMethod, Path, UrlParams, Payload, Headers, Success, Error, R, RE>(
  endpoint: HttpApiEndpoint.HttpApiEndpoint<Name, Method, Path, UrlParams, Payload, Headers, Success, Error, R, RE>
) =>
  endpoint
    .addError(InvalidRequestError)
    .addError(UpstreamRejected)
    .addError(ModelNotFoundError)
    .addError(UpstreamNotFound)
    .addError(LengthRequiredError)
    .addError(TooLargeError)
    .addError(RateLimitedByKey)
    .addError(InternalErrorResponse)
    .addError(BadGatewayError)
    .addError(ShuttingDownError)
    .addError(StoreUnavailableError)
    .addError(UnavailableError)
    .addError(TimeoutError)

export class ChatGroup extends HttpApiGroup.make("chat")
  .add(
    withCoreErrors(HttpApiEndpoint.post("create", "/v1/chat/completions").setPayload(ChatCompletionRequest).addSuccess(ChatCompletion))
      .annotate(OpenApi.Summary, "Create a chat completion")
      .annotate(
        OpenApi.Description,
        "Creates a chat completion. With `stream: true` the answer is `text/event-stream`: `data: <chat.completion.chunk>` frames ending with `data: [DONE]`."
      )
  )
  .middleware(Authentication) {}

/** `POST /v1/embeddings`: OpenAI's embeddings, through the same core and Router as chat. */
export class EmbeddingsGroup extends HttpApiGroup.make("embeddings")
  .add(
    withCoreErrors(HttpApiEndpoint.post("create", "/v1/embeddings").setPayload(EmbeddingRequest).addSuccess(CreateEmbeddingResponse))
      .annotate(OpenApi.Summary, "Create embeddings")
      .annotate(
        OpenApi.Description,
        "Embeds a string, strings, token ids or arrays of token ids (at most 2048 inputs): one vector per input, in input order. `encoding_format: base64` writes each vector as base64 of its little-endian float32 bytes (what the openai SDKs ask for and decode)."
      )
  )
  .middleware(Authentication) {}

const ResponseNotFoundError = upstreamEnvelope(404, "No stored response with this id for the caller's key (unknown, expired, deleted, stored by another key, or `store: false`)")

/**
 * OpenAI's Responses API (`/v1/responses`) in front of every deployment: natively to `api: responses` deployments,
 * translated through chat completions to the others; stored responses retrieved and deleted by their id.
 */
export class ResponsesGroup extends HttpApiGroup.make("responses")
  .add(
    withCoreErrors(HttpApiEndpoint.post("create", "/v1/responses").setPayload(ResponsesRequest).addSuccess(ResponseObject))
      .annotate(OpenApi.Summary, "Create a model response (OpenAI's Responses API)")
      .annotate(
        OpenApi.Description,
        "OpenAI's Responses API, in front of every deployment: to a deployment marked `api: responses` the body goes as sent (only `model` replaced; the history of `previous_response_id` resolved by the gateway) and the answer comes back as the upstream sent it; to any other deployment it is translated through chat completions (messages, images, files, function tools, `text.format`, `reasoning.effort`, `max_output_tokens`). Only `function` tools are served; another tool type is a 400 naming it. With `stream: true` the answer is `text/event-stream`: `response.created`, `response.in_progress`, `response.output_item.added` / `.done`, `response.content_part.added` / `.done`, `response.output_text.delta` / `.done`, `response.function_call_arguments.delta` / `.done`, `response.reasoning_text.delta` / `.done`, then `response.completed` (or `response.incomplete`, `response.failed`), each with its `sequence_number`; a failure after the stream began is an `error` event. `store` (default true) keeps the response and its input for `settings.responses.ttl_s`, visible to the caller's key only; an unknown `previous_response_id` is a 400 `previous_response_not_found`, as OpenAI answers."
      )
  )
  .add(
    HttpApiEndpoint.get("retrieve", "/v1/responses/:id")
      .setPath(Schema.Struct({ id: Schema.String }))
      .addSuccess(ResponseObject)
      .addError(ResponseNotFoundError)
      .addError(StoreUnavailableError)
      .annotate(OpenApi.Summary, "Retrieve a stored response")
      .annotate(OpenApi.Description, "The response stored under `id` (`store: true`), when the caller's key made it; 404 otherwise.")
  )
  .add(
    HttpApiEndpoint.del("delete", "/v1/responses/:id")
      .setPath(Schema.Struct({ id: Schema.String }))
      .addSuccess(DeletedResponse)
      .addError(ResponseNotFoundError)
      .addError(StoreUnavailableError)
      .annotate(OpenApi.Summary, "Delete a stored response")
      .annotate(OpenApi.Description, "Deletes the response stored under `id`, when the caller's key made it: `{\"id\",\"object\":\"response\",\"deleted\":true}`; 404 otherwise.")
  )
  .middleware(Authentication) {}

/** An Anthropic error envelope at `status` (documentation: the handlers answer their failures themselves). */
const messagesError = (status: number, description: string) => MessagesErrorBody.annotations(HttpApiSchema.annotations({ status, description }))

const messagesErrors = [
  messagesError(400, "invalid_request_error: schema violation or malformed JSON (the message names the field), or refused by the upstream"),
  messagesError(404, "not_found_error: unknown model, or one the key may not use"),
  messagesError(411, "invalid_request_error: a body without Content-Length"),
  messagesError(413, "request_too_large: request body over MAX_BODY_BYTES"),
  messagesError(429, "rate_limit_error: a limit of the caller's key, or the upstream's after retries; Retry-After set"),
  messagesError(500, "api_error: a bug; the request id is in the message and the log"),
  messagesError(502, "api_error: upstream failed, refused the gateway's credentials or answered malformed data"),
  messagesError(503, "overloaded_error: upstream unavailable, the gateway draining, or the governance store unreachable"),
  messagesError(504, "timeout_error: upstream did not answer within the deadline"),
  messagesError(529, "overloaded_error: an Anthropic upstream is overloaded")
] as const

const withMessagesErrors = <E extends HttpApiEndpoint.HttpApiEndpoint.Any>(endpoint: E): E =>
  messagesErrors.reduce((acc, schema) => (acc as unknown as HttpApiEndpoint.HttpApiEndpoint.AnyWithProps).addError(schema) as unknown as E, endpoint)

/**
 * Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) in front of every deployment: natively to
 * Anthropic deployments, translated through chat completions to the others. Failures in Anthropic's envelope.
 */
export class MessagesGroup extends HttpApiGroup.make("messages")
  .add(
    withMessagesErrors(
      HttpApiEndpoint.post("create", "/v1/messages")
        .setPayload(MessagesRequest)
        .addSuccess(MessagesResponse)
        .annotate(OpenApi.Summary, "Create a message (Anthropic's Messages API)")
        .annotate(
          OpenApi.Description,
          "Anthropic's Messages API, in front of every deployment: to an Anthropic deployment the body goes as sent (only `model` replaced) with the client's `anthropic-version` and `anthropic-beta`, and the answer comes back as Anthropic sent it; to any other deployment it is translated through chat completions (tool use, images, thinking, stop reasons, usage). With `stream: true` the answer is `text/event-stream`: `message_start`, `content_block_start` / `_delta` / `_stop`, `message_delta`, `message_stop`, `ping` on silence, an `error` event on a failure after the stream began. Failures are Anthropic's envelope `{\"type\":\"error\",\"error\":{\"type\",\"message\"}}`. Keys as `x-api-key`, `Authorization: Bearer` or `x-internal-auth`."
        )
    )
  )
  .add(
    withMessagesErrors(
      HttpApiEndpoint.post("countTokens", "/v1/messages/count_tokens")
        .setPayload(CountTokensRequest)
        .addSuccess(CountTokensResponse)
        .annotate(OpenApi.Summary, "Count a message's input tokens")
        .annotate(
          OpenApi.Description,
          "`{\"input_tokens\": n}`: Anthropic's own count for an Anthropic deployment (its `/v1/messages/count_tokens`); for any other deployment an ESTIMATE with the gateway's tokenizer (o200k_base, 1600 tokens per image or document), said by `x-llm-proxy-token-count: estimated`. Checked against the key's models, but not counted against its limits."
        )
    )
  )
  .middleware(MessagesAuthentication) {}

/** The whole API. */
export class Api extends HttpApi.make("llm-proxy")
  .add(HealthGroup)
  .add(ModelsGroup)
  .add(ChatGroup)
  .add(EmbeddingsGroup)
  .add(ResponsesGroup)
  .add(MessagesGroup)
  .add(MetricsGroup)
  .add(AdminGroup)
  .annotate(OpenApi.Title, "llm-proxy")
  .annotate(OpenApi.Description, "OpenAI-compatible LLM gateway")
  .annotate(OpenApi.Transform, fixOpenApi) {}
