/**
 * The current request's id: the client's sane `x-request-id`, or a fresh one. Echoed in the response, in log
 * annotations and in the message of a 500.
 */
import { Context } from "effect"

export class RequestId extends Context.Reference<RequestId>()("llm-proxy/RequestId", {
  defaultValue: () => "unknown"
}) {}
