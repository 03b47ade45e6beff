/**
 * The gateway's own failures, apart from upstream ones (`ProviderError`), each declared once with its HTTP status
 * annotation: the error table (src/Http/Errors.ts) reads the status from here, and the OpenAPI document from the
 * same classes through their wire schemas.
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Schema } from "effect"

const status = (code: number) => ({ [HttpApiSchema.AnnotationStatus]: code })

/** The request broke the schema or was not JSON. `param` names the failing field when there is one. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()(
  "InvalidRequest",
  { message: Schema.String, param: Schema.NullOr(Schema.String) },
  status(400)
) {}

/** No key, or a key that does not match. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", { message: Schema.String }, status(401)) {}

/** The requested model is not in the registry (or not for this caller). */
export class ModelNotFound extends Schema.TaggedError<ModelNotFound>()("ModelNotFound", { model: Schema.String }, status(404)) {}

/** No route matches the path. */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()(
  "RouteNotFound",
  { method: Schema.String, path: Schema.String },
  status(404)
) {}

/** The path exists, but not for this method; `allowed` are the methods it takes. */
export class MethodNotAllowed extends Schema.TaggedError<MethodNotAllowed>()(
  "MethodNotAllowed",
  { method: Schema.String, path: Schema.String, allowed: Schema.Array(Schema.String) },
  status(405)
) {}

/** A body was sent without `Content-Length`, so its size cannot be checked before reading it. */
export class LengthRequired extends Schema.TaggedError<LengthRequired>()("LengthRequired", {}, status(411)) {}

/** The body is larger than `MAX_BODY_BYTES`. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", { limit: Schema.Number }, status(413)) {}

/**
 * A request Node's HTTP parser refused before any route saw it (bad framing, headers too large, an unmet
 * `Expect`, or a client too slow to send its request): answered on the raw socket.
 */
export class ProtocolError extends Schema.TaggedError<ProtocolError>()(
  "ProtocolError",
  { status: Schema.Literal(400, 408, 417, 431), message: Schema.String, code: Schema.String },
  status(400)
) {}

/** A key's limit refused the request: rpm, tpm or max_parallel (rate limited), or its budget (quota). */
export class LimitExceeded extends Schema.TaggedError<LimitExceeded>()(
  "LimitExceeded",
  {
    keyId: Schema.String,
    limit: Schema.Literal("rpm", "tpm", "max_parallel", "budget"),
    /** The limit's value, as the key declares it (USD for a budget). */
    value: Schema.Number,
    retryAfterMs: Schema.Number
  },
  status(429)
) {}

/** The governance store cannot be reached and `on_store_failure` is `closed`. */
export class LimitsUnavailable extends Schema.TaggedError<LimitsUnavailable>()("LimitsUnavailable", {}, status(503)) {}

/** The key is valid but may not use this route (the admin routes and /metrics are the operator's). */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", { message: Schema.String }, status(403)) {}

/** `GET /ready` when the gateway cannot serve yet (or any more): the reason says what is missing. */
export class NotReady extends Schema.TaggedError<NotReady>()("NotReady", { reason: Schema.String }, status(503)) {}

/** The server is draining after SIGTERM. */
export class ShuttingDown extends Schema.TaggedError<ShuttingDown>()("ShuttingDown", {}, status(503)) {}

/** A bug: the details are logged with the request id, never sent. */
export class InternalError extends Schema.TaggedError<InternalError>()("InternalError", { requestId: Schema.String }, status(500)) {}
