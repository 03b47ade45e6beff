/**
 * The HTTP contract: endpoints with their Schema types, grouped as health, models and chat. Handlers live in
 * Handlers.ts; this file is what the OpenAPI document is generated from.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { InternalError, InvalidRequest, LengthRequired, ModelNotFound, PayloadTooLarge, ShuttingDown } from "../Errors.js"
import { ChatCompletion, ChatCompletionRequest, Model, ModelList } from "../OpenAi/Schemas.js"
import { Authentication } from "./Auth.js"
import { declaredEnvelope, upstreamEnvelope } from "./Errors.js"

/** `GET /health`. */
export const HealthStatus = Schema.Struct({
  status: Schema.Literal("ok"),
  uptime_seconds: Schema.Number
}).annotations({ identifier: "HealthStatus" })

/** The original service's `GET /v1/llm/models` shape. */
export const LlmModelList = Schema.Struct({
  models: Schema.Array(Schema.Struct({ id: Schema.String, provider: Schema.String, deployments: Schema.Int }))
}).annotations({ identifier: "LlmModelList" })

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
const RateLimitError = upstreamEnvelope(429, "Upstream rate limit or quota, after retries (Retry-After set)")
const BadGatewayError = upstreamEnvelope(502, "Upstream failed, refused the gateway's credentials or answered malformed data")
const UnavailableError = upstreamEnvelope(503, "Upstream unavailable")
const TimeoutError = upstreamEnvelope(504, "Upstream did not answer within the deadline")

export class HealthGroup extends HttpApiGroup.make("health").add(
  HttpApiEndpoint.get("health", "/health").addSuccess(HealthStatus)
) {}

export class ModelsGroup extends HttpApiGroup.make("models")
  .add(HttpApiEndpoint.get("list", "/v1/models").addSuccess(ModelList))
  .add(
    HttpApiEndpoint.get("retrieve", "/v1/models/:model")
      .setPath(Schema.Struct({ model: Schema.String }))
      .addSuccess(Model)
      .addError(ModelNotFoundError)
  )
  .add(HttpApiEndpoint.get("llmModels", "/v1/llm/models").addSuccess(LlmModelList))
  .middleware(Authentication) {}

/** `GET /metrics`: Prometheus text exposition, behind the same key (Prometheus sends it as a bearer token). */
export class MetricsGroup extends HttpApiGroup.make("metrics")
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/plain; version=0.0.4" })))
      .annotate(OpenApi.Description, "Prometheus metrics: HTTP requests, durations, upstream attempts by outcome, tokens.")
  )
  .middleware(Authentication) {}

export class ChatGroup extends HttpApiGroup.make("chat")
  .add(
    HttpApiEndpoint.post("create", "/v1/chat/completions")
      .setPayload(ChatCompletionRequest)
      .addSuccess(ChatCompletion)
      .addError(InvalidRequestError)
      .addError(UpstreamRejected)
      .addError(ModelNotFoundError)
      .addError(UpstreamNotFound)
      .addError(LengthRequiredError)
      .addError(TooLargeError)
      .addError(RateLimitError)
      .addError(InternalErrorResponse)
      .addError(BadGatewayError)
      .addError(ShuttingDownError)
      .addError(UnavailableError)
      .addError(TimeoutError)
      .annotate(
        OpenApi.Description,
        "Creates a chat completion. With `stream: true` the answer is `text/event-stream`: `data: <chat.completion.chunk>` frames ending with `data: [DONE]`."
      )
  )
  .middleware(Authentication) {}

const eventStreamDoc = {
  schema: {
    type: "string",
    description:
      "Server-sent events: `data: <ChatCompletionChunk JSON>` frames, then `data: [DONE]`. A failure after the first frame is one `data: {\"error\":{...}}` frame and no [DONE]."
  }
}

type JsonObject = Record<string, unknown>
const asObject = (value: unknown): JsonObject | undefined =>
  typeof value === "object" && value !== null ? (value as JsonObject) : undefined

/**
 * Makes the generated document true to the wire: the chat endpoint also answers `text/event-stream`, and a 400
 * is always OpenAI's envelope (the framework's own decode-error schema is never sent).
 */
export const fixOpenApi = (spec: JsonObject): JsonObject => {
  const paths = asObject(spec["paths"]) ?? {}
  for (const path of Object.values(paths)) {
    for (const operation of Object.values(asObject(path) ?? {})) {
      const responses = asObject(asObject(operation)?.["responses"]) ?? {}
      const badRequest = asObject(responses["400"])
      const content = asObject(badRequest?.["content"])
      if (content !== undefined) content["application/json"] = { schema: { $ref: "#/components/schemas/ErrorResponse" } }
    }
  }
  const chat = asObject(asObject(asObject(paths["/v1/chat/completions"])?.["post"])?.["responses"])
  const ok = asObject(asObject(chat?.["200"])?.["content"])
  if (ok !== undefined) ok["text/event-stream"] = eventStreamDoc
  const schemas = asObject(asObject(spec["components"])?.["schemas"])
  if (schemas !== undefined) {
    schemas["ErrorResponse"] = JSONSchemaOfErrorBody
    delete schemas["HttpApiDecodeError"]
    delete schemas["Issue"]
  }
  return spec
}

const JSONSchemaOfErrorBody = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["message", "type", "param", "code"],
      properties: {
        message: { type: "string" },
        type: { type: "string" },
        param: { type: ["string", "null"] },
        code: { type: ["string", "null"] }
      }
    }
  }
}

/** The whole API. */
export class Api extends HttpApi.make("llm-proxy")
  .add(HealthGroup)
  .add(ModelsGroup)
  .add(ChatGroup)
  .add(MetricsGroup)
  .annotate(OpenApi.Title, "llm-proxy")
  .annotate(OpenApi.Description, "OpenAI-compatible LLM gateway")
  .annotate(OpenApi.Transform, fixOpenApi) {}
