/**
 * The serving layer: the Api with its handlers, the edge middleware (request id, body limit, drain gate,
 * OpenAI-shaped errors, access log), the OpenAPI document and docs page, on the Node HTTP server.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Cause, Effect, Layer, LogLevel } from "effect"
import { ProxyConfig } from "../Config.js"
import { InternalError, RouteNotFound, ShuttingDown, Unauthorized } from "../Errors.js"
import { Api } from "./Api.js"
import * as Auth from "./Auth.js"
import { bodyProblem, hasBody, invalidRequestOf, requestIdOf, unparsableBody } from "./Edge.js"
import type { DecodeIssue } from "./Edge.js"
import { errorResponse } from "./Errors.js"
import * as Handlers from "./Handlers.js"
import { drainOnShutdown, Lifecycle } from "./Lifecycle.js"
import * as Docs from "./Docs.js"
import * as HotPath from "./HotPath.js"
import { RequestId } from "./RequestId.js"
import type { IncomingMessage, ServerResponse } from "node:http"

const isDecodeError = (error: unknown): error is { readonly _tag: "HttpApiDecodeError"; readonly issues: ReadonlyArray<DecodeIssue>; readonly message: string } =>
  typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "HttpApiDecodeError"

/** Turns what the framework raises (decode errors, unknown routes, bad JSON) into the gateway's errors. */
const classify = (cause: Cause.Cause<unknown>, request: HttpServerRequest.HttpServerRequest, requestId: string) => {
  const failure = Cause.squash(cause)
  if (failure instanceof Unauthorized) return failure
  if (isDecodeError(failure)) return invalidRequestOf(failure.issues, failure.message)
  const tag = typeof failure === "object" && failure !== null ? (failure as { _tag?: unknown })._tag : undefined
  if (tag === "RouteNotFound") return new RouteNotFound({ method: request.method, path: request.url.split("?")[0] ?? "/" })
  if (tag === "RequestError" || failure instanceof SyntaxError) return unparsableBody
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

/** Bodies are JSON whatever the client labelled them: curl's default form type would otherwise be parsed as a form. */
const labelledAsJson = (request: HttpServerRequest.HttpServerRequest): HttpServerRequest.HttpServerRequest =>
  hasBody(request.method) && !(request.headers["content-type"] ?? "").includes("json")
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
      const requestId = requestIdOf(request.headers)
      const rejection = lifecycle.isDraining() ? new ShuttingDown() : bodyProblem(request.method, request.headers, maxBodyBytes)
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
  Docs.layer
)

/**
 * The platform's Node server, listening on `HOST`:`PORT`, with the chat hot path in front: a request the hot path
 * does not take goes to whatever app is served (the Api).
 */
const serverWithHotPath = (port: number, host: string) =>
  Layer.scoped(
    HttpServer.HttpServer,
    Effect.gen(function* () {
      const { server } = yield* Lifecycle
      const listening = yield* NodeHttpServer.make(() => server, { port, host })
      const hotPath = yield* HotPath.make
      return HttpServer.make({
        address: listening.address,
        serve: (app, middleware) =>
          Effect.gen(function* () {
            const handler = yield* (middleware === undefined
              ? NodeHttpServer.makeHandler(app)
              : NodeHttpServer.makeHandler(app, middleware))
            const listener = (request: IncomingMessage, response: ServerResponse) => {
              if (!hotPath(request, response)) handler(request, response)
            }
            yield* Effect.acquireRelease(
              Effect.sync(() => server.on("request", listener)),
              () => Effect.sync(() => server.off("request", listener))
            )
          })
      })
    })
  ).pipe(Layer.merge(NodeHttpServer.layerContext))

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
      Layer.provide(serverWithHotPath(config.port, config.host))
    )
    // No trace exporter is configured, so the per-request server span (URL parse, header redaction, attributes)
    // would be built only to be dropped.
    return drainOnShutdown.pipe(Layer.provide(HttpMiddleware.withTracerDisabledWhen(serving, () => true)))
  })
)
