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
import { Cause, Effect, Layer, LogLevel } from "effect"
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
import { RequestId } from "./RequestId.js"

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
      const requestId = yield* RequestId
      const error = classify(cause, request, requestId)
      if (error._tag === "InternalError") yield* Effect.logError("unhandled failure", cause)
      return errorResponse(error)
    })
  )

const methodsWithBody = new Set(["POST", "PUT", "PATCH"])

/** What is wrong with a body, judged from the headers alone, before a byte of it is read. */
const bodyProblem = (request: HttpServerRequest.HttpServerRequest, maxBodyBytes: number) => {
  if (!methodsWithBody.has(request.method)) return undefined
  const declared = request.headers["content-length"]
  if (declared === undefined) return request.headers["transfer-encoding"] === undefined ? undefined : new LengthRequired()
  const length = Number(declared)
  if (!Number.isSafeInteger(length) || length < 0) return new LengthRequired()
  if (length === 0) return new InvalidRequest({ message: "The request body is empty; send a JSON object.", param: null })
  return length > maxBodyBytes ? new PayloadTooLarge({ limit: maxBodyBytes }) : undefined
}

/** Bodies are JSON whatever the client labelled them: curl's default form type would otherwise be parsed as a form. */
const labelledAsJson = (request: HttpServerRequest.HttpServerRequest): HttpServerRequest.HttpServerRequest =>
  methodsWithBody.has(request.method) && !(request.headers["content-type"] ?? "").includes("json")
    ? request.modify({ headers: { ...request.headers, "content-type": "application/json" } })
    : request

/**
 * The edge around every request: request id, drain gate, body limit, and the access log when `Info` is on.
 * Runs per request, so it allocates as little as it can.
 */
const edge =
  (maxBodyBytes: number, lifecycle: Lifecycle["Type"], accessLog: boolean) =>
  (app: HttpApp.Default): HttpApp.Default =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const requestId = requestIdOf(request)
      const rejection = lifecycle.isDraining() ? new ShuttingDown() : bodyProblem(request, maxBodyBytes)
      const answered =
        rejection !== undefined
          ? Effect.succeed(HttpServerResponse.setHeader(errorResponse(rejection), "x-request-id", requestId))
          : app.pipe(
              // The app writes its own response: a pre-response handler is how a header reaches it.
              HttpApp.withPreResponseHandler((_request, response) =>
                Effect.succeed(HttpServerResponse.setHeader(response, "x-request-id", requestId))
              ),
              Effect.provideService(HttpServerRequest.HttpServerRequest, labelledAsJson(request)),
              Effect.provideService(RequestId, requestId)
            )
      // Inside the annotation, so the access log line carries the request id too.
      return (accessLog ? HttpMiddleware.logger(answered) : answered).pipe(Effect.annotateLogs("requestId", requestId))
    })

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
    const accessLog = LogLevel.lessThanEqual(config.logLevel, LogLevel.Info)
    const serving = HttpApiBuilder.serve(edge(config.maxBodyBytes, lifecycle, accessLog)).pipe(
      Layer.provide(DocsLive),
      Layer.provide(ApiLive),
      HttpServer.withLogAddress,
      Layer.provide(NodeHttpServer.layer(() => lifecycle.server, { port: config.port, host: config.host }))
    )
    // No trace exporter is configured, so the per-request server span (URL parse, header redaction, attributes)
    // would be built only to be dropped.
    return drainOnShutdown.pipe(Layer.provide(HttpMiddleware.withTracerDisabledWhen(serving, () => true)))
  })
)

