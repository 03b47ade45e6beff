/**
 * What the OpenAPI document generated from the HttpApi contract (Api.ts) gets wrong about the wire, and the
 * transform that puts it right (`fixOpenApi`, the Api's `OpenApi.Transform`). Documentation only: nothing here
 * changes what the gateway answers.
 *
 * - The framework declares a 400 "did not match the expected schema" on every route. A route whose input cannot
 *   fail to decode (no body, no query; a path parameter that is any string) never answers it, so it is dropped
 *   there; elsewhere the 400 says what really causes it, in OpenAI's envelope.
 * - Schemas of Effect's own (`HttpApiDecodeError`, `Issue`, `PropertyKey`, `Int`, `Schema.Unknown`'s `$id`
 *   markers, refinement titles such as `between(0, 2)`) are inlined or removed, and no component is left that
 *   nothing refers to.
 * - The response headers are documented: `x-request-id` on every answer; `x-llm-proxy-model`, `-provider` and
 *   `-attempts` on chat and embeddings successes; `x-llm-proxy-cache` and `age` on both, `x-llm-proxy-hedged` on
 *   chat's; OpenAI's `x-ratelimit-*` on their answers to a key with rpm or
 *   tpm limits; `retry-after` where the gateway sends it.
 * - Every route answers 503 `server_shutting_down` while the gateway drains after SIGTERM.
 * - The chat and Messages endpoints also answer `text/event-stream`; the Messages endpoints' failures are
 *   Anthropic's envelope (`MessagesErrorResponse`), not OpenAI's.
 */

type JsonObject = Record<string, unknown>

const asObject = (value: unknown): JsonObject | undefined =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as JsonObject) : undefined

const errorResponseRef = { $ref: "#/components/schemas/ErrorResponse" }

/** OpenAI's error envelope, the body of every non-2xx answer. */
const errorResponseSchema = {
  type: "object",
  description: "OpenAI's error envelope",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["message", "type", "param", "code"],
      properties: {
        message: { type: "string" },
        type: { type: "string", examples: ["invalid_request_error", "rate_limit_error", "upstream_error", "server_error"] },
        param: { type: ["string", "null"] },
        code: { type: ["string", "null"], examples: ["invalid_request", "model_not_found", "rate_limit_exceeded"] }
      }
    }
  }
}

const eventStreamDoc = {
  schema: {
    type: "string",
    description:
      "Server-sent events: `data: <ChatCompletionChunk JSON>` frames, then `data: [DONE]`. A failure after the first frame is one `data: {\"error\":{...}}` frame and no [DONE]."
  }
}

const messagesErrorRef = { $ref: "#/components/schemas/MessagesErrorResponse" }

/** The SSE body of a streamed Responses request. */
const responsesEventStreamDoc = {
  schema: {
    type: "string",
    description:
      "Server-sent events in OpenAI's Responses grammar: `event: <type>` and `data: <event JSON>` per event, each with its `sequence_number` from 0: `response.created`, `response.in_progress`, per output item `response.output_item.added`, its content parts and deltas (`response.content_part.added`, `response.output_text.delta` / `.done`, `response.function_call_arguments.delta` / `.done`, `response.reasoning_text.delta` / `.done`), `response.content_part.done`, `response.output_item.done`; then `response.completed`, `response.incomplete` or `response.failed` with the whole response. A failure after the stream began is one `event: error` (`code`, `message`, `param`, and the envelope's `error` object)."
  }
}

const messagesEventStreamDoc = {
  schema: {
    type: "string",
    description:
      "Server-sent events in Anthropic's grammar: `event: message_start`, then per content block `content_block_start`, `content_block_delta` (`text_delta`, `input_json_delta`, `thinking_delta`, `signature_delta`) and `content_block_stop` (one block at a time, indexes from 0), then `message_delta` (stop reason, usage) and `message_stop`; `event: ping` on silence. A failure after the stream began is one `event: error` with Anthropic's error envelope."
  }
}

const rateLimitFigure = (kind: "requests" | "tokens", window: string) => ({
  [`x-ratelimit-limit-${kind}`]: {
    description: `The key's ${window} limit. Sent on chat and embeddings answers to a key with that limit.`,
    schema: { type: "integer", minimum: 0 }
  },
  [`x-ratelimit-remaining-${kind}`]: {
    description: `What the key has left of its ${window} limit in the rolling 60 s window. Sent with the limit.`,
    schema: { type: "integer", minimum: 0 }
  },
  [`x-ratelimit-reset-${kind}`]: {
    description: `Time until the window admits one more, written as OpenAI does (\`12ms\`, \`1s\`, \`6m0s\`). Sent with the limit.`,
    schema: { type: "string", examples: ["12ms", "1s", "6m0s"] }
  }
})

/** `components.headers`: every response header the gateway documents. */
const headerComponents: Readonly<Record<string, JsonObject>> = {
  "x-request-id": {
    description: "The request's id: the client's own `x-request-id` when it sent a sane one, else a fresh one. The access log and a 500's message carry it too.",
    required: true,
    schema: { type: "string" }
  },
  "request-id": {
    description: "The request's id again, under the name Anthropic's API gives it (its SDKs surface it): on the Messages endpoints.",
    required: true,
    schema: { type: "string" }
  },
  "x-llm-proxy-model": {
    description: "The public model name that answered (after fallbacks; also the body's `model`).",
    required: true,
    schema: { type: "string" }
  },
  "x-llm-proxy-provider": {
    description: "The provider kind of the deployment that answered: `openai`, `anthropic`, `gemini`, `mock`, or a library user's own.",
    required: true,
    schema: { type: "string", examples: ["openai", "anthropic", "gemini", "mock"] }
  },
  "x-llm-proxy-attempts": {
    description: "Upstream calls made for this request, retries, fallbacks and hedged attempts included; 0 for an answer from the response cache.",
    required: true,
    schema: { type: "integer", minimum: 0 }
  },
  "x-llm-proxy-cache": {
    description:
      "For a model with a response cache (`cache:` in the registry): `hit` (answered from the cache: `x-llm-proxy-provider` is `cache`, no upstream call, no tokens charged, the original usage in the body), `miss` (answered by the upstream, then stored), or `bypass` (the request's `Cache-Control` said `no-cache`: not read, the fresh answer stored; or `no-store`: neither read nor stored). Absent for models without a cache.",
    schema: { type: "string", enum: ["hit", "miss", "bypass"] }
  },
  age: {
    description: "With `x-llm-proxy-cache: hit`: seconds since the cached answer was stored.",
    schema: { type: "integer", minimum: 0 }
  },
  "x-llm-proxy-hedged": {
    description:
      "For a model with hedged requests (`hedge:` in the registry), when a hedge started: `won-by-<n>`, the attempt that answered (1 is the first, 2 the first hedge…).",
    schema: { type: "string", examples: ["won-by-1", "won-by-2"] }
  },
  "x-accel-buffering": {
    description: "`no` on a stream (`text/event-stream`): a reverse proxy such as nginx passes each event on at once.",
    schema: { type: "string", enum: ["no"] }
  },
  "x-llm-proxy-token-count": {
    description:
      "On a count_tokens answer: `upstream` when the count is the Anthropic deployment's own, `estimated` when it is the gateway's tokenizer's (any other deployment).",
    required: true,
    schema: { type: "string", enum: ["upstream", "estimated"] }
  },
  ...rateLimitFigure("requests", "requests-per-minute (rpm)"),
  ...rateLimitFigure("tokens", "tokens-per-minute (tpm)"),
  "retry-after": {
    description: "Seconds to wait before retrying.",
    schema: { type: "integer", minimum: 1 }
  }
}

const headerRef = (name: string) => ({ $ref: `#/components/headers/${name}` })
const rateLimitHeaderNames = Object.keys(headerComponents).filter((name) => name.startsWith("x-ratelimit-"))
const routingHeaderNames = ["x-llm-proxy-model", "x-llm-proxy-provider", "x-llm-proxy-attempts"]
const chatSuccessHeaderNames = [...routingHeaderNames, "x-accel-buffering", "x-llm-proxy-cache", "age", "x-llm-proxy-hedged"]
const embeddingsSuccessHeaderNames = [...routingHeaderNames, "x-llm-proxy-cache", "age"]
/** Messages and Responses: streamed like chat, but neither cached nor hedged. */
const streamingSuccessHeaderNames = [...routingHeaderNames, "x-accel-buffering"]

const draining = "The gateway is draining after SIGTERM (`server_shutting_down`, with `Retry-After: 1`)"

/** The answers of the Messages endpoints whose generated description names only one of their causes. */
const messagesResponses: Readonly<Record<string, string>> = {
  "400":
    "`invalid_request_error`: malformed JSON, a schema violation (the message names the field), a block the deployment's dialect cannot carry, or the upstream refused the request (its message)",
  "404": "`not_found_error`: unknown model, one the key may not use, or one the upstream does not know",
  "429":
    "`rate_limit_error`: a limit of the caller's key (rpm, tpm, max_parallel, budget), or the upstream's rate limit after retries; `Retry-After` is set",
  "503": "`overloaded_error`: the gateway draining after SIGTERM (`Retry-After: 1`), the governance store unreachable with `on_store_failure: closed`, or the upstream answered 503 after retries"
}

/** The answers the core gives the same way on every route through it (chat, embeddings). */
const coreResponses: Readonly<Record<string, string>> = {
  "404": "Unknown model, one the key may not use (`model_not_found`), or one the upstream does not know",
  "429":
    "A limit of the caller's key (rpm, tpm, max_parallel: `rate_limit_exceeded`; budget: `insufficient_quota`), or the upstream's rate limit or quota after retries. `Retry-After` is set, except for an exhausted upstream quota",
  "503": `${draining}; the governance store unreachable with \`on_store_failure: closed\` (\`limits_unavailable\`, \`Retry-After: 1\`); or the upstream answered 503 after retries (\`upstream_unavailable\`)`
}

/** The answers of the chat endpoint whose generated description names only one of their causes. */
/** The answers of the Responses endpoint whose generated description names only one of their causes. */
const responsesResponses: Readonly<Record<string, string>> = {
  ...coreResponses,
  "200": "A response object (JSON), or with `stream: true` its events as server-sent events",
  "400":
    "Malformed JSON (`invalid_json`), a schema violation (`invalid_request`, `param` names the field), a tool that is not a function tool (`param`: `tools[i].type`), a `previous_response_id` the key has no stored response for (`previous_response_not_found`, as OpenAI answers), an item the deployment's dialect cannot carry, or the upstream refused the request"
}

const chatResponses: Readonly<Record<string, string>> = {
  ...coreResponses,
  "200": "A chat completion (JSON), or with `stream: true` its chunks as server-sent events",
  "400":
    "Malformed JSON (`invalid_json`), a schema violation (`invalid_request`, `param` names the field), or the upstream refused the request (its message and code; `content_policy_violation` for its content policy)"
}

/** The answers of the embeddings endpoint whose generated description names only one of their causes. */
const embeddingsResponses: Readonly<Record<string, string>> = {
  ...coreResponses,
  "200": "One embedding per input, in input order: arrays of numbers, or with `encoding_format: base64` base64 strings of little-endian float32 bytes",
  "400":
    "Malformed JSON (`invalid_json`); a schema violation (`invalid_request`, `param` names the field: an empty input, more than 2048 inputs, a token id that is not an integer from 0 to 2^31-1, `dimensions` outside 1..65536, an `encoding_format` other than `float` or `base64`); a deployment that cannot embed (Anthropic: `model_cannot_embed`) or token ids sent to Gemini; or the upstream refused the request (its message and code)",
}

/** The 200 of each route: the generated text is the schema's name (or Effect's "a string"). */
const successes: Readonly<Record<string, string>> = {
  "get /health": "The process is alive (liveness); `uptime_seconds` since it started",
  "get /ready": "The gateway can serve: its registry is loaded and its governance store answers",
  "get /v1/models": "The public model names the key may use, in OpenAI's list shape",
  "get /v1/models/{model}": "The model, in OpenAI's shape",
  "get /v1/llm/models": "The original service's listing: each model with its provider and number of deployments",
  "get /v1/responses/{id}": "The stored response",
  "delete /v1/responses/{id}": "The stored response is deleted",
  "get /metrics": "Prometheus text exposition format 0.0.4",
  "get /admin/keys": "Every virtual key with its models, limits and current figures (never a secret or a hash)",
  "get /admin/usage": "Usage rows of the day"
}

/** `retry-after` on the chat and embeddings endpoints, where not every cause of a status sends it. */
const chatRetryAfter: Readonly<Record<string, string>> = {
  "429":
    "Seconds until the key's limit admits the request again (rpm/tpm: the window; max_parallel: 1; budget: the period's end), or the upstream's own delay. Absent when an upstream's quota is exhausted.",
  "503": "1 while draining or while the governance store is unreachable; absent when the upstream answered 503."
}

/** The 400 of a route that takes input, by `method path` (the chat endpoint's is in `chatResponses`). */
const badRequests: Readonly<Record<string, string>> = {
  "get /admin/usage": "Invalid query: `day` is not YYYY-MM-DD, or a parameter was given more than once (`invalid_request`, `param` names it)"
}

/** Whether a parameter can fail to decode: a path segment matched as any string cannot. */
const canFail = (parameter: JsonObject): boolean => {
  if (parameter["in"] !== "path") return true
  const schema = asObject(parameter["schema"]) ?? {}
  return !(schema["type"] === "string" && Object.keys(schema).every((key) => key === "type" || key === "description"))
}

const takesInput = (operation: JsonObject): boolean =>
  operation["requestBody"] !== undefined ||
  (Array.isArray(operation["parameters"]) && operation["parameters"].some((parameter) => canFail(asObject(parameter) ?? {})))

const setHeader = (response: JsonObject, name: string, header: JsonObject = headerRef(name)) => {
  const headers = asObject(response["headers"]) ?? {}
  headers[name] = header
  response["headers"] = headers
}

const fixOperation = (key: string, operation: JsonObject) => {
  const responses = asObject(operation["responses"]) ?? {}
  operation["responses"] = responses
  const isChat = key === "post /v1/chat/completions"
  const isEmbeddings = key === "post /v1/embeddings"
  const isMessages = key === "post /v1/messages" || key === "post /v1/messages/count_tokens"
  const isResponses = key === "post /v1/responses"
  // The routes through the core: routing headers on success, the key's rate-limit headers on their answers.
  const throughCore = isChat || isEmbeddings || isMessages || isResponses
  // The Messages endpoints answer their failures in Anthropic's envelope.
  const errorRef = isMessages ? messagesErrorRef : errorResponseRef

  const ok = asObject(responses["200"])
  if (ok !== undefined && successes[key] !== undefined) ok["description"] = successes[key]
  const badRequest = asObject(responses["400"])
  if (badRequest !== undefined && !takesInput(operation)) delete responses["400"]
  else if (badRequest !== undefined) {
    badRequest["content"] = { "application/json": { schema: errorRef } }
    badRequest["description"] = badRequests[key] ?? "The request did not decode (`invalid_request`, `param` names the field)"
  }
  const unavailable = asObject(responses["503"])
  if (unavailable === undefined) responses["503"] = { description: draining, content: { "application/json": { schema: errorRef } } }
  else if (!String(unavailable["description"]).includes("draining")) unavailable["description"] = `${String(unavailable["description"])}; or: ${draining}`
  if (throughCore) {
    for (const [status, description] of Object.entries(isChat ? chatResponses : isMessages ? messagesResponses : isResponses ? responsesResponses : embeddingsResponses)) {
      const response = asObject(responses[status])
      if (response !== undefined) response["description"] = description
    }
  }
  if (isMessages) {
    // Each declared status carries its own copy of the envelope (its description differs): one component instead.
    for (const [status, value] of Object.entries(responses)) {
      const response = asObject(value)
      if (response !== undefined && status !== "200") response["content"] = { "application/json": { schema: messagesErrorRef } }
    }
  }
  if (isChat || isResponses || key === "post /v1/messages") {
    const content = asObject(ok?.["content"])
    if (content !== undefined) content["text/event-stream"] = isChat ? eventStreamDoc : isResponses ? responsesEventStreamDoc : messagesEventStreamDoc
  }

  for (const [status, value] of Object.entries(responses)) {
    const response = asObject(value)
    if (response === undefined) continue
    setHeader(response, "x-request-id")
    if (isMessages) setHeader(response, "request-id")
    if (!throughCore) {
      if (status === "503") setHeader(response, "retry-after", { ...headerComponents["retry-after"], description: "1: retry shortly.", required: true })
      continue
    }
    const successHeaderNames = isChat
      ? chatSuccessHeaderNames
      : isResponses || key === "post /v1/messages"
        ? streamingSuccessHeaderNames
        : isEmbeddings
          ? embeddingsSuccessHeaderNames
          : routingHeaderNames
    if (status === "200") for (const name of successHeaderNames) setHeader(response, name)
    if (status === "200" && key === "post /v1/messages/count_tokens") setHeader(response, "x-llm-proxy-token-count")
    // Sent with the answers the core gives a key with rpm or tpm limits (an upstream's 400 too), not with the
    // edge's refusals before it.
    // count_tokens is no request of the key's limits: it never carries them.
    if (!["401", "411", "413"].includes(status) && key !== "post /v1/messages/count_tokens") for (const name of rateLimitHeaderNames) setHeader(response, name)
    const retryAfter = chatRetryAfter[status]
    if (retryAfter !== undefined) setHeader(response, "retry-after", { ...headerComponents["retry-after"], description: retryAfter })
  }
}

/** Effect's own names for refinements (`between(0, 2)`, `minLength(1)`, `int`, `unknown`): not for readers. */
const isEffectTitle = (title: unknown): boolean => typeof title === "string" && /^(?:[a-zA-Z]+\(.*\)|int|unknown)$/.test(title)

/** Inlines `$ref`s to the schemas in `inline`, and drops Effect's titles and `Schema.Unknown`'s `$id` markers. */
const tidySchema = (node: unknown, inline: Readonly<Record<string, JsonObject>>): unknown => {
  if (Array.isArray(node)) return node.map((item) => tidySchema(item, inline))
  const object = asObject(node)
  if (object === undefined) return node
  const result: JsonObject = {}
  const ref = object["$ref"]
  const target = typeof ref === "string" ? inline[ref] : undefined
  if (target !== undefined) {
    for (const [key, value] of Object.entries(target)) if (key !== "title" && key !== "description") result[key] = tidySchema(value, inline)
  }
  for (const [key, value] of Object.entries(object)) {
    if (target !== undefined && key === "$ref") continue
    if (key === "$id" && value === "/schemas/unknown") continue
    if (key === "title" && isEffectTitle(value)) continue
    result[key] = tidySchema(value, inline)
  }
  return result
}

/** Every `#/components/schemas/…` name that `node` refers to. */
const schemaRefs = (node: unknown, into: Set<string>): Set<string> => {
  if (Array.isArray(node)) for (const item of node) schemaRefs(item, into)
  const object = asObject(node)
  if (object !== undefined) {
    for (const [key, value] of Object.entries(object)) {
      if (key === "$ref" && typeof value === "string" && value.startsWith("#/components/schemas/")) into.add(value.slice("#/components/schemas/".length))
      else schemaRefs(value, into)
    }
  }
  return into
}

/** Keeps only the component schemas the paths reach, directly or through other components. */
const pruneSchemas = (spec: JsonObject, schemas: JsonObject) => {
  const reached = schemaRefs(spec["paths"], new Set())
  const pending = [...reached]
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    for (const next of schemaRefs(schemas[name], new Set())) {
      if (!reached.has(next)) {
        reached.add(next)
        pending.push(next)
      }
    }
  }
  for (const name of Object.keys(schemas)) if (!reached.has(name)) delete schemas[name]
}

/** Effect's schemas that are inlined where they are used (their component goes with the pruning). */
const inlinedSchemas = ["Int"]

/** Makes the generated document true to the wire (see the module's comment). Mutates and returns `spec`. */
export const fixOpenApi = (spec: JsonObject): JsonObject => {
  const paths = asObject(spec["paths"]) ?? {}
  for (const [path, item] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(asObject(item) ?? {})) {
      const object = asObject(operation)
      if (object !== undefined) fixOperation(`${method} ${path}`, object)
    }
  }
  const components = asObject(spec["components"]) ?? {}
  spec["components"] = components
  const schemas = asObject(components["schemas"]) ?? {}
  components["schemas"] = schemas
  schemas["ErrorResponse"] = errorResponseSchema
  delete schemas["HttpApiDecodeError"]
  delete schemas["Issue"]
  delete schemas["PropertyKey"]
  const inline: Record<string, JsonObject> = {}
  for (const name of inlinedSchemas) {
    const schema = asObject(schemas[name])
    if (schema !== undefined) inline[`#/components/schemas/${name}`] = schema
  }
  spec["paths"] = tidySchema(paths, inline)
  for (const [name, schema] of Object.entries(schemas)) schemas[name] = tidySchema(schema, inline)
  pruneSchemas(spec, schemas)
  components["headers"] = { ...headerComponents }
  return spec
}
