/**
 * The serving layer: the Api with its handlers, the edge middleware (request id, body limit, drain gate,
 * OpenAI-shaped errors, access log), the OpenAPI document and docs page, on the Node HTTP server.
 */
import {
  HttpApiBuilder,
  HttpApiScalar,
  HttpApp,
  HttpMiddleware,
  HttpServer,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Effect, Layer } from "effect"
import { ProxyConfig } from "../Config.js"
import {
  InternalError,
  InvalidRequest,
  LengthRequired,
  PayloadTooLarge,
  RouteNotFound,
  ShuttingDown,
  Unauthorized
} from "../Errors.js"
import { Api } from "./Api.js"
import * as Auth from "./Auth.js"
import { errorResponse } from "./Errors.js"
import * as Handlers from "./Handlers.js"
import { drainOnShutdown, Lifecycle } from "./Lifecycle.js"

const requestIdPattern = /^[\w.:-]{1,128}$/

/** The client's `x-request-id` when it is sane, else a fresh one. */
const requestIdOf = (request: HttpServerRequest.HttpServerRequest): string => {
  const given = request.headers["x-request-id"]
  return given !== undefined && requestIdPattern.test(given) ? given : crypto.randomUUID()
}

/** `messages.[0].content`, as OpenAI names a failing field. */
const paramOf = (path: ReadonlyArray<PropertyKey>): string | null =>
  path.length === 0
    ? null
    : path.map((key, index) => (typeof key === "number" ? `[${key}]` : index === 0 ? String(key) : String(key))).join(".")

interface DecodeIssue {
  readonly path: ReadonlyArray<PropertyKey>
  readonly message: string
}

const isDecodeError = (error: unknown): error is { readonly _tag: "HttpApiDecodeError"; readonly issues: ReadonlyArray<DecodeIssue>; readonly message: string } =>
  typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "HttpApiDecodeError"

/** Turns what the framework raises (decode errors, unknown routes, bad JSON) into the gateway's errors. */
const classify = (cause: Cause.Cause<unknown>, request: HttpServerRequest.HttpServerRequest, requestId: string) => {
  const failure = Cause.squash(cause)
  if (failure instanceof Unauthorized) return failure
  if (isDecodeError(failure)) {
    const issue = failure.issues[0]
    const param = issue === undefined ? null : paramOf(issue.path)
    const message = issue === undefined ? failure.message : `Invalid value for '${param ?? "body"}': ${issue.message}`
    return new InvalidRequest({ message, param: param ?? "body" })
  }
  const tag = typeof failure === "object" && failure !== null ? (failure as { _tag?: unknown })._tag : undefined
  if (tag === "RouteNotFound") return new RouteNotFound({ method: request.method, path: request.url.split("?")[0] ?? "/" })
  if (tag === "RequestError" || failure instanceof SyntaxError) {
    return new InvalidRequest({ message: "We could not parse the JSON body of your request.", param: null })
  }
  return new InternalError({ requestId })
}

/** Converts every failure and defect into OpenAI's envelope; logs the real bugs with the request id. */
const withOpenAiErrors = (app: HttpApp.Default): HttpApp.Default =>
  Effect.catchAllCause(app, (cause) =>
    Effect.gen(function* () {
      if (Cause.isInterruptedOnly(cause)) return yield* Effect.failCause(cause)
      const request = yield* HttpServerRequest.HttpServerRequest
      const requestId = request.headers["x-request-id"] ?? "unknown"
      const error = classify(cause, request, requestId)
      if (error._tag === "InternalError") yield* Effect.logError("unhandled failure", cause)
      return errorResponse(error)
    })
  )

const methodsWithBody = new Set(["POST", "PUT", "PATCH"])

/** Refuses oversized or unsized bodies from the headers alone, before a byte of the body is read. */
const bodyLimit = (maxBodyBytes: number) => (app: HttpApp.Default): HttpApp.Default =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    if (!methodsWithBody.has(request.method)) return app
    const declared = request.headers["content-length"]
    if (declared === undefined) {
      return request.headers["transfer-encoding"] === undefined ? app : Effect.succeed(errorResponse(new LengthRequired()))
    }
    const length = Number(declared)
    if (!Number.isSafeInteger(length) || length < 0) return Effect.succeed(errorResponse(new LengthRequired()))
    if (length === 0) return Effect.succeed(errorResponse(new InvalidRequest({ message: "The request body is empty; send a JSON object.", param: null })))
    return length > maxBodyBytes ? Effect.succeed(errorResponse(new PayloadTooLarge({ limit: maxBodyBytes }))) : app
  })

/** Bodies are JSON whatever the client labelled them: curl's default form type would otherwise be parsed as a form. */
const asJson = (request: HttpServerRequest.HttpServerRequest) =>
  methodsWithBody.has(request.method) && !(request.headers["content-type"] ?? "").includes("json")
    ? { "content-type": "application/json" }
    : {}

/** The edge around every request: request id and access log, drain gate, body limit. */
const edge = (maxBodyBytes: number, lifecycle: Lifecycle["Type"]) => (app: HttpApp.Default): HttpApp.Default => {
  const limited = bodyLimit(maxBodyBytes)(app)
  const gated = Effect.suspend(() => (lifecycle.isDraining() ? Effect.succeed(errorResponse(new ShuttingDown())) : limited))
  const logged = HttpMiddleware.logger(gated)
  return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const requestId = requestIdOf(request)
    const headers = { ...request.headers, ...asJson(request), "x-request-id": requestId }
    return logged.pipe(
      // The app writes its response before this middleware's `map` below runs: a pre-response handler is the
      // only way to add the header to it; the `map` covers responses the edge answers itself (413, 411, 503).
      HttpApp.withPreResponseHandler((_request, response) =>
        Effect.succeed(HttpServerResponse.setHeader(response, "x-request-id", requestId))
      ),
      Effect.provideService(HttpServerRequest.HttpServerRequest, request.modify({ headers })),
      Effect.map(HttpServerResponse.setHeader("x-request-id", requestId)),
      Effect.annotateLogs("requestId", requestId)
    )
  })
}

/** The Api implemented: handlers, auth, OpenAI-shaped errors. */
export const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide(Handlers.layer),
  Layer.provide(Auth.layer),
  Layer.provide(HttpApiBuilder.middleware(withOpenAiErrors))
)

/** `/openapi.json` and a docs page at `/docs`, both public. */
const DocsLive = Layer.mergeAll(
  // "allow": the wire schemas keep and forward unknown fields, so the document must not forbid them.
  HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json", additionalPropertiesStrategy: "allow" }),
  HttpApiScalar.layer({ path: "/docs" })
)

/** Serves the Api on the Lifecycle's Node server, at `HOST`:`PORT`, draining on shutdown. */
export const layer = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* ProxyConfig
    const lifecycle = yield* Lifecycle
    const serving = HttpApiBuilder.serve(edge(config.maxBodyBytes, lifecycle)).pipe(
      Layer.provide(DocsLive),
      Layer.provide(ApiLive),
      HttpServer.withLogAddress,
      Layer.provide(NodeHttpServer.layer(() => lifecycle.server, { port: config.port, host: config.host }))
    )
    return drainOnShutdown.pipe(Layer.provide(serving))
  })
)

