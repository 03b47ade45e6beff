/**
 * The gateway's own failures, apart from upstream ones (`ProviderError`). Each is mapped to a status and
 * OpenAI's error envelope in one table: src/Http/Errors.ts.
 */
import { Data } from "effect"

/** The request broke the schema or was not JSON. `param` names the failing field when there is one. */
export class InvalidRequest extends Data.TaggedError("InvalidRequest")<{
  readonly message: string
  readonly param: string | null
}> {}

/** No key, or a key that does not match `INTERNAL_API_KEY`. */
export class Unauthorized extends Data.TaggedError("Unauthorized")<{ readonly message: string }> {}

/** The requested model is not in the registry. */
export class ModelNotFound extends Data.TaggedError("ModelNotFound")<{ readonly model: string }> {}

/** No route matches the method and path. */
export class RouteNotFound extends Data.TaggedError("RouteNotFound")<{
  readonly method: string
  readonly path: string
}> {}

/** The body is larger than `MAX_BODY_BYTES`. */
export class PayloadTooLarge extends Data.TaggedError("PayloadTooLarge")<{ readonly limit: number }> {}

/** A body was sent without `Content-Length`, so its size cannot be checked before reading it. */
export class LengthRequired extends Data.TaggedError("LengthRequired")<{}> {}

/** The server is draining after SIGTERM. */
export class ShuttingDown extends Data.TaggedError("ShuttingDown")<{}> {}

/** A bug: the details are logged with the request id, never sent. */
export class InternalError extends Data.TaggedError("InternalError")<{ readonly requestId: string }> {}
