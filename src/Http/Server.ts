/**
 * Serving: the Api with its handlers behind the edge (request id, drain gate, body limit, OpenAI-shaped errors,
 * access log), the OpenAPI document and docs page, on a Node HTTP server — with the chat fast path in front of it
 * (`layer`, what `npm start` runs) or without (`layerApiOnly`, the HttpApi handler alone). Both mounts answer the
 * same contract through the same chat core.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Cause, Effect, Either, Exit, Layer, LogLevel, Option } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { ProxyConfig } from "../Config.js"
import { Forbidden, InternalError, LimitsUnavailable, MethodNotAllowed, NotReady, RouteNotFound, ShuttingDown, Unauthorized } from "../Errors.js"
import { Api } from "./Api.js"
import * as Auth from "./Auth.js"
import * as Docs from "./Docs.js"
import { currentRecord, newRecord } from "../Core/RequestRecord.js"
import type { RequestRecord } from "../Core/RequestRecord.js"
import { accessFields, bodyProblem, hasBody, hostProblem, invalidRequestOf, parseJsonBody, pathOf, requestIdOf, unparsableBody } from "./Edge.js"
import type { DecodeIssue } from "./Edge.js"
import { countTokensPath, errorResponseAt, messagesPath, requestIdHeaders } from "./Messages.js"
import { responsesPath } from "./Responses.js"
import type { GatewayError } from "./Errors.js"
import * as Handlers from "./Handlers.js"
import * as HotPath from "./HotPath.js"
import { drainOnShutdown, Lifecycle } from "./Lifecycle.js"
import { RequestId } from "./RequestId.js"
import { Tracing } from "../Tracing/Tracing.js"
import type { TracingService } from "../Tracing/Tracing.js"

const isDecodeError = (error: unknown): error is { readonly _tag: "HttpApiDecodeError"; readonly issues: ReadonlyArray<DecodeIssue>; readonly message: string } =>
  typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "HttpApiDecodeError"

/** Every route the gateway serves: its path as a pattern, and the methods it takes. */
const servedRoutes: ReadonlyArray<{ readonly pattern: RegExp; readonly methods: ReadonlyArray<string> }> = (() => {
  const byPath = new Map<string, Set<string>>([
    ["/openapi.json", new Set(["GET"])],
    ...Docs.paths.map((path) => [path, new Set(["GET"])] as const)
  ])
  HttpApi.reflect(Api, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => {
      const methods = byPath.get(endpoint.path) ?? new Set<string>()
      methods.add(endpoint.method)
      byPath.set(endpoint.path, methods)
    }
  })
  return [...byPath].map(([path, methods]) => ({
    pattern: new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/:\w+/g, "[^/]+")}$`),
    methods: [...methods].sort()
  }))
})()

/** The methods a path takes, when the gateway serves it at all. */
const allowedMethods = (path: string): ReadonlyArray<string> => servedRoutes.find((route) => route.pattern.test(path))?.methods ?? []

/** The HTTP version of a request served by the platform's Node server. */
const httpVersionOf = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  const source: unknown = request.source
  return typeof source === "object" && source !== null && "httpVersion" in source && typeof source.httpVersion === "string"
    ? source.httpVersion
    : undefined
}

/** The port a request served by the platform's Node server arrived on. */
const localPortOf = (request: HttpServerRequest.HttpServerRequest): number | undefined => {
  const source: unknown = request.source
  if (typeof source !== "object" || source === null || !("socket" in source)) return undefined
  const socket: unknown = source.socket
  return typeof socket === "object" && socket !== null && "localPort" in socket && typeof socket.localPort === "number" ? socket.localPort : undefined
}

/**
 * A chat or Messages request's server span, from its arrival until its response is written (a stream's last byte included: the
 * edge wraps the platform's writing of the response).
 */
const traced = (
  app: HttpApp.Default,
  tracing: TracingService,
  request: HttpServerRequest.HttpServerRequest,
  path: string,
  requestId: string,
  record: RequestRecord
): HttpApp.Default => {
  const span = tracing.startServer({
    method: request.method,
    path,
    headers: request.headers,
    httpVersion: httpVersionOf(request),
    clientAddress: Option.getOrUndefined(request.remoteAddress),
    localPort: localPortOf(request),
    requestId
  })
  record.span = span
  return Effect.onExit(app, (exit) =>
    Effect.sync(() =>
      Exit.isSuccess(exit)
        ? tracing.endServer(span, record, exit.value.status, false)
        : Exit.isInterrupted(exit)
          ? tracing.endServer(span, record, undefined, true)
          : tracing.endServer(span, record, 500, false)
    )
  )
}

/** The routes whose requests are traced: those through the core's chat and Messages operations. */
const tracedPaths: ReadonlySet<string> = new Set([HotPath.chatPath, responsesPath, messagesPath, countTokensPath])

/** A known path asked with a method it does not take: 405, before anything is said about the body. */
const methodProblem = (request: HttpServerRequest.HttpServerRequest): MethodNotAllowed | undefined => {
  if (request.method === "HEAD") return undefined
  const path = pathOf(request.url)
  const allowed = allowedMethods(path)
  return allowed.length > 0 && !allowed.includes(request.method) ? new MethodNotAllowed({ method: request.method, path, allowed }) : undefined
}

/** Turns what the framework raises (decode errors, unknown routes, bad JSON) into the gateway's errors. */
const classify = (cause: Cause.Cause<unknown>, request: HttpServerRequest.HttpServerRequest, requestId: string) => {
  const failure = Cause.squash(cause)
  if (failure instanceof Unauthorized || failure instanceof Forbidden || failure instanceof LimitsUnavailable || failure instanceof NotReady) return failure
  if (isDecodeError(failure)) return invalidRequestOf(failure.issues, failure.message)
  const tag = typeof failure === "object" && failure !== null ? (failure as { _tag?: unknown })._tag : undefined
  if (tag === "RouteNotFound") return methodProblem(request) ?? new RouteNotFound({ method: request.method, path: pathOf(request.url) })
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
      return errorResponseAt(pathOf(request.url), error)
    })
  )

/** Bodies are JSON whatever the client labelled them: curl's default form type would otherwise be parsed as a form. */
const labelledAsJson = (request: HttpServerRequest.HttpServerRequest): HttpServerRequest.HttpServerRequest =>
  hasBody(request.method) && !(request.headers["content-type"] ?? "").includes("json")
    ? request.modify({ headers: { ...request.headers, "content-type": "application/json" } })
    : request

/**
 * One access-log line per request: method, path (never the query: it may carry a key), status, duration, id, and
 * what a chat request did (its record), as far as it is known when the response is handed over.
 */
const accessLogged = (app: HttpApp.Default, request: HttpServerRequest.HttpServerRequest, requestId: string, record: RequestRecord): HttpApp.Default =>
  Effect.onExit(app, (exit) =>
    Effect.logInfo("Sent HTTP response").pipe(
      Effect.annotateLogs(
        accessFields(record, {
          "http.method": request.method,
          "http.path": pathOf(request.url),
          "http.status": Exit.isSuccess(exit) ? exit.value.status : Exit.isInterrupted(exit) ? 499 : 500,
          durationMs: Math.round(performance.now() - record.arrivedAt),
          requestId
        })
      )
    )
  )

/**
 * The edge around every request of the Api: request id, drain gate, body limit, the access log when `Info` is on,
 * and a chat request's server span when tracing is on. Serve the Api with it (`HttpApiBuilder.serve(edge)`) wherever
 * you mount `ApiLive`. Runs per request, so it allocates as little as it can.
 */
export const makeEdge: Effect.Effect<(app: HttpApp.Default) => HttpApp.Default, never, ProxyConfig | Lifecycle> = Effect.gen(
  function* () {
    const config = yield* ProxyConfig
    const lifecycle = yield* Lifecycle
    const tracing = yield* Tracing
    const accessLog = LogLevel.lessThanEqual(config.logLevel, LogLevel.Info)
    return (app) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const requestId = requestIdOf(request.headers)
        const rejection = lifecycle.isDraining()
          ? new ShuttingDown()
          : (hostProblem(httpVersionOf(request), request.headers) ??
            methodProblem(request) ??
            bodyProblem(request.method, request.headers, config.maxBodyBytes))
        // One request object for the edge and the app: its body text is read once and cached on it.
        const labelled = labelledAsJson(request)
        const record = newRecord(requestId)
        const idHeaders = requestIdHeaders(pathOf(request.url), requestId)
        const served = app.pipe(
          // The app writes its own response: a pre-response handler is how a header reaches it.
          HttpApp.withPreResponseHandler((_request, response) => Effect.succeed(HttpServerResponse.setHeaders(response, idHeaders))),
          Effect.provideService(HttpServerRequest.HttpServerRequest, labelled),
          Effect.provideService(RequestId, requestId),
          Effect.locally(currentRecord, record)
        )
        const refused = (error: GatewayError) =>
          Effect.succeed(HttpServerResponse.setHeaders(errorResponseAt(pathOf(request.url), error), idHeaders))
        const answered =
          rejection !== undefined
            ? refused(rejection)
            : hasBody(request.method)
              ? // The platform parses the body again (from its cached text); this parse only bounds its nesting, which
                // the platform's decoder and error formatter would otherwise recurse through.
                Effect.flatMap(Effect.either(labelled.text), (text) => {
                  const problem = Either.isRight(text) ? Either.getLeft(parseJsonBody(text.right)) : Option.none()
                  return Option.isSome(problem) ? refused(problem.value) : served
                })
              : served
        const path = pathOf(request.url)
        const spanned =
          tracing !== undefined && request.method === "POST" && tracedPaths.has(path) ? traced(answered, tracing, request, path, requestId, record) : answered
        return (accessLog ? accessLogged(spanned, request, requestId, record) : spanned).pipe(Effect.annotateLogs("requestId", requestId))
      })
  }
)

/** The Api implemented: handlers, auth (from the Authenticator), OpenAI-shaped errors. */
export const ApiLive = HttpApiBuilder.api(Api).pipe(
  Layer.provide(Handlers.layer),
  Layer.provide(Auth.middlewareLayer),
  Layer.provide(Auth.messagesMiddlewareLayer),
  Layer.provide(HttpApiBuilder.middleware(withOpenAiErrors))
)

/** `/openapi.json` and a docs page at `/docs`, both public. */
const DocsLive = Layer.mergeAll(
  // "allow": the wire schemas keep and forward unknown fields, so the document must not forbid them.
  HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json", additionalPropertiesStrategy: "allow" }),
  Docs.layer
)

/** The Api behind its edge, with its docs, served on whatever HttpServer is provided. */
export const serveApi = Layer.unwrapEffect(
  Effect.map(makeEdge, (edge) =>
    // No trace exporter is configured, so the per-request server span (URL parse, header redaction, attributes)
    // would be built only to be dropped.
    HttpMiddleware.withTracerDisabledWhen(
      HttpApiBuilder.serve(edge).pipe(Layer.provide(DocsLive), Layer.provide(ApiLive), HttpServer.withLogAddress),
      () => true
    )
  )
)

/**
 * The platform's Node server on the Lifecycle's `node:http` server, at `HOST`:`PORT`; with `hotPath`, the chat fast
 * path takes its requests first and hands every other one to the served app.
 */
const nodeServer = (hotPath: boolean) =>
  Layer.scoped(
    HttpServer.HttpServer,
    Effect.gen(function* () {
      const { host, port } = yield* ProxyConfig
      const { server } = yield* Lifecycle
      const listening = yield* NodeHttpServer.make(() => server, { port, host })
      if (!hotPath) return listening
      const fastPath = yield* HotPath.make
      return HttpServer.make({
        address: listening.address,
        serve: (app, middleware) =>
          Effect.gen(function* () {
            const handler = yield* (middleware === undefined
              ? NodeHttpServer.makeHandler(app)
              : NodeHttpServer.makeHandler(app, middleware))
            const listener = (request: IncomingMessage, response: ServerResponse) => {
              if (!fastPath(request, response)) handler(request, response)
            }
            yield* Effect.acquireRelease(
              Effect.sync(() => server.on("request", listener)),
              () => Effect.sync(() => server.off("request", listener))
            )
          })
      })
    })
  ).pipe(Layer.merge(NodeHttpServer.layerContext))

/** The gateway's server: the chat fast path in front of the Api, at `HOST`:`PORT`, draining on shutdown. */
export const layer = drainOnShutdown.pipe(Layer.provide(serveApi), Layer.provide(nodeServer(true)))

/** The Api alone (its own chat handler, no fast path), at `HOST`:`PORT`, draining on shutdown. */
export const layerApiOnly = drainOnShutdown.pipe(Layer.provide(serveApi), Layer.provide(nodeServer(false)))
