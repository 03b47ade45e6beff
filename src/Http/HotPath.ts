/**
 * `POST /v1/chat/completions` served straight on the Node server, in front of the HttpApi app that answers
 * every other route. The gateway's first duty after correctness is to cost almost nothing: the HttpApi frame
 * (routing, middleware, request wrapping, response conversion) cost ~125 µs of every request in the benchmark,
 * more than everything else the gateway does. This path does what the edge and the chat handler do, in the same
 * order and with the same shared pieces (request id, drain gate, body limit, auth, the request Schema, the Router,
 * the error table, SSE framing); the HttpApi still declares the endpoint, so the OpenAPI document and typed
 * clients are unchanged, and its handler serves apps that mount the Api without this path.
 */
import { Cause, Effect, Exit, LogLevel, ParseResult, Runtime, Schema } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { ProxyConfig } from "../Config.js"
import { InternalError, ShuttingDown } from "../Errors.js"
import { ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { Router } from "../Router/Router.js"
import type { Served } from "../Router/Router.js"
import { makeCheck } from "./Auth.js"
import { bodyProblem, invalidRequestOf, requestIdOf, unparsableBody } from "./Edge.js"
import { writeError } from "./Errors.js"
import type { GatewayError } from "./Errors.js"
import { Lifecycle } from "./Lifecycle.js"
import { sseHeaders, writeSse } from "./Sse.js"

/** The path this module serves. */
export const chatPath = "/v1/chat/completions"

/** Response headers that say which deployment served and after how many upstream calls. */
export const routingHeaders = (served: Served): Record<string, string> => ({
  "x-llm-proxy-model": served.deployment.name,
  "x-llm-proxy-provider": String(served.deployment.providerKind),
  "x-llm-proxy-attempts": String(served.attempts)
})

const decodeRequest = Schema.decodeUnknownEither(ChatCompletionRequest)

/** Whether a request is for this path: the method and the path without its query. */
const isChatRequest = (request: IncomingMessage): boolean => {
  if (request.method !== "POST") return false
  const url = request.url ?? ""
  return url === chatPath || (url.startsWith(chatPath) && url.charCodeAt(chatPath.length) === 63 /* ? */)
}

/** Reads the whole body (its length already checked against the limit) as text. */
const readBody = (request: IncomingMessage, onBody: (text: string) => void): void => {
  const pieces: Array<Buffer> = []
  request.on("data", (piece: Buffer) => pieces.push(piece))
  request.once("end", () => onBody(pieces.length === 1 ? pieces[0]!.toString("utf8") : Buffer.concat(pieces).toString("utf8")))
}

/**
 * Builds the hot path's request handler. It returns `false` for any request that is not its own, which the caller
 * hands to the HttpApi app; the services it needs are captured once, here.
 */
export const make = Effect.gen(function* () {
  const router = yield* Router
  const lifecycle = yield* Lifecycle
  const config = yield* ProxyConfig
  const runtime = yield* Effect.runtime<never>()
  const runFork = Runtime.runFork(runtime)
  const authenticate = makeCheck(config.internalApiKey)
  const { maxBodyBytes } = config

  const accessLog = LogLevel.lessThanEqual(config.logLevel, LogLevel.Info)
  // The Router logs only at Debug: below that, the request id annotation would cost every request for nothing.
  const annotated = LogLevel.lessThanEqual(config.logLevel, LogLevel.Debug)
  const withRequestId = <A, E>(effect: Effect.Effect<A, E>, requestId: string) =>
    annotated ? Effect.annotateLogs(effect, "requestId", requestId) : effect

  const logDefect = (cause: Cause.Cause<unknown>, requestId: string, what: string) =>
    runFork(Effect.logError(what, cause).pipe(Effect.annotateLogs("requestId", requestId)))

  /** The access log line the HttpApi app writes for its routes, with 499 for a client that left first. */
  const logAccess = (request: IncomingMessage, response: ServerResponse, requestId: string, started: number) =>
    response.once("close", () => {
      runFork(
        Effect.logInfo("Sent HTTP response").pipe(
          Effect.annotateLogs({
            "http.method": "POST",
            "http.url": request.url ?? chatPath,
            "http.status": response.writableFinished ? response.statusCode : 499,
            durationMs: Math.round(performance.now() - started),
            requestId
          })
        )
      )
    })

  /** A routed request that failed: its error as OpenAI's envelope; a defect is logged and answered as a 500. */
  const failed = (cause: Cause.Cause<GatewayError>, response: ServerResponse, requestId: string) => {
    const failure = Cause.failureOption(cause)
    if (failure._tag === "Some") return writeError(response, failure.value)
    if (Cause.isInterruptedOnly(cause)) return
    logDefect(cause, requestId, "unhandled failure")
    writeError(response, new InternalError({ requestId }))
  }

  const completed = (chat: ChatCompletionRequest, response: ServerResponse, requestId: string) => {
    const fiber = runFork(withRequestId(router.complete(chat), requestId))
    response.once("close", () => {
      if (!response.writableEnded) fiber.unsafeInterruptAsFork(fiber.id())
    })
    fiber.addObserver((exit) => {
      if (Exit.isSuccess(exit)) {
        if (response.destroyed) return
        const json = JSON.stringify(exit.value.completion)
        response.writeHead(200, {
          ...routingHeaders(exit.value),
          "content-type": "application/json",
          "content-length": Buffer.byteLength(json)
        })
        response.end(json)
        return
      }
      failed(exit.cause, response, requestId)
    })
  }

  const streamed = (chat: ChatCompletionRequest, response: ServerResponse, requestId: string) => {
    const fiber = runFork(withRequestId(router.stream(chat), requestId))
    const onClose = () => {
      if (!response.writableEnded) fiber.unsafeInterruptAsFork(fiber.id())
    }
    response.once("close", onClose)
    fiber.addObserver((exit) => {
      response.off("close", onClose)
      if (Exit.isSuccess(exit)) {
        const routed = exit.value
        if (response.destroyed) return routed.source.close()
        response.writeHead(200, { ...sseHeaders, ...routingHeaders(routed), "content-type": "text/event-stream" })
        writeSse(
          routed.source,
          { includeUsage: chat.stream_options?.include_usage === true, requestId, runtime, onTerminate: lifecycle.onTerminate },
          response
        )
        return
      }
      failed(exit.cause, response, requestId)
    })
  }

  const answer = (text: string, response: ServerResponse, requestId: string) => {
    let payload: unknown
    try {
      payload = JSON.parse(text)
    } catch {
      return writeError(response, unparsableBody)
    }
    const decoded = decodeRequest(payload)
    if (decoded._tag === "Left") {
      const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
      return writeError(response, invalidRequestOf(issues, ParseResult.TreeFormatter.formatErrorSync(decoded.left)))
    }
    const chat = decoded.right
    if (chat.stream === true) streamed(chat, response, requestId)
    else completed(chat, response, requestId)
  }

  return (request: IncomingMessage, response: ServerResponse): boolean => {
    if (!isChatRequest(request)) return false
    const requestId = requestIdOf(request.headers)
    response.setHeader("x-request-id", requestId)
    if (accessLog) logAccess(request, response, requestId, performance.now())
    const rejection = lifecycle.isDraining()
      ? new ShuttingDown()
      : (bodyProblem("POST", request.headers, maxBodyBytes) ?? authenticate(request.headers))
    if (rejection !== undefined) {
      writeError(response, rejection)
      return true
    }
    readBody(request, (text) => {
      try {
        answer(text, response, requestId)
      } catch (defect) {
        logDefect(Cause.die(defect), requestId, "unhandled failure")
        writeError(response, new InternalError({ requestId }))
      }
    })
    return true
  }
})
