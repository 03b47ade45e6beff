/**
 * `POST /v1/chat/completions` served straight on the Node server, in front of the HttpApi app that answers every
 * other route: the HttpApi frame (routing, middleware, request wrapping, response conversion) cost ~125 µs of
 * every request in the benchmark, more than everything else the gateway does. This transport only decodes and
 * writes: the edge checks it shares with the HttpApi (request id, drain gate, body limit, the Authenticator, the
 * request Schema), then the same chat core as the HttpApi handler, then the same error table and SSE framing.
 *
 * Everything it runs outside Effect (body reading, the fiber's observer, the SSE writer) is inside one boundary
 * per request: whatever throws becomes that request's 500 (or error frame), logged with the request id.
 */
import { Cause, Effect, Exit, FiberRefs, LogLevel, Runtime } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { ProxyConfig } from "../Config.js"
import { ChatCore } from "../Core/Chat.js"
import { currentRecord, newRecord } from "../Core/RequestRecord.js"
import type { RequestRecord } from "../Core/RequestRecord.js"
import * as Metrics from "../Metrics.js"
import type { ChatAnswer, ChatFailure } from "../Core/Chat.js"
import { InternalError, ShuttingDown, Unauthorized } from "../Errors.js"
import { Tracing } from "../Tracing/Tracing.js"
import { Authenticator } from "./Auth.js"
import type { Caller } from "./Auth.js"
import { accessFields, bodyProblem, decodeChatRequest, headerOf, hostProblem, pathOf, requestIdOf, routingHeaders } from "./Edge.js"
import { writeError } from "./Errors.js"
import { Lifecycle } from "./Lifecycle.js"
import { sseHeaders, writeSse } from "./Sse.js"

/** The path this module serves. */
export const chatPath = "/v1/chat/completions"

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
  // A client that breaks off mid-body: the response's close ends the request; nothing to answer.
  request.on("error", () => {})
  request.once("end", () => onBody(pieces.length === 1 ? pieces[0]!.toString("utf8") : Buffer.concat(pieces).toString("utf8")))
}

/**
 * Builds the hot path's request handler. It returns `false` for any request that is not its own, which the caller
 * hands to the HttpApi app; the services it needs are captured once, here.
 */
export const make = Effect.gen(function* () {
  const core = yield* ChatCore
  const authenticator = yield* Authenticator
  const lifecycle = yield* Lifecycle
  const config = yield* ProxyConfig
  const tracing = yield* Tracing
  const runtime = yield* Effect.runtime<never>()
  const runFork = Runtime.runFork(runtime)
  /**
   * Runs a request's chat with its record in its fiber (the upstream transport reads the request's id there), set as
   * the fiber is made: no Effect step for it.
   */
  const runChat = <A, E>(effect: Effect.Effect<A, E>, record: RequestRecord) =>
    runFork(effect, { updateRefs: (refs, fiberId) => FiberRefs.updateAs(refs, { fiberId, fiberRef: currentRecord, value: record }) })
  const { maxBodyBytes } = config

  const accessLog = LogLevel.lessThanEqual(config.logLevel, LogLevel.Info)
  // The Router logs only at Debug: below that, the request id annotation would cost every request for nothing.
  const annotated = LogLevel.lessThanEqual(config.logLevel, LogLevel.Debug)
  const withRequestId = <A, E>(effect: Effect.Effect<A, E>, requestId: string) =>
    annotated ? Effect.annotateLogs(effect, "requestId", requestId) : effect

  const logDefect = (cause: Cause.Cause<unknown>, requestId: string) =>
    runFork(Effect.logError("unhandled failure", cause).pipe(Effect.annotateLogs("requestId", requestId)))

  /**
   * At the end of a request: the gateway's own time (its duration, or for a stream its time to first byte, minus the
   * time spent waiting on upstreams), its server span's end, and its access-log line (the path, never the query;
   * 499 for a client that left) with what the request did.
   */
  const onEnd = (request: IncomingMessage, response: ServerResponse, requestId: string, record: RequestRecord) =>
    response.once("close", () => {
      const endedAt = performance.now()
      if (tracing !== undefined && record.span !== undefined) {
        tracing.endServer(record.span, record, response.headersSent ? response.statusCode : undefined, !response.writableFinished)
      }
      const untilMs = (record.firstByteAt ?? endedAt) - record.arrivedAt
      Metrics.overhead.update(Math.max(0, untilMs - record.upstreamMs) / 1000, chatPath)
      if (!accessLog) return
      runFork(
        Effect.logInfo("Sent HTTP response").pipe(
          Effect.annotateLogs(accessFields(record, {
            "http.method": "POST",
            "http.path": pathOf(request.url ?? chatPath),
            "http.status": response.writableFinished ? response.statusCode : 499,
            durationMs: Math.round(endedAt - record.arrivedAt),
            requestId
          }))
        )
      )
    })

  /** A failure or defect of the chat core, as OpenAI's envelope; a defect is logged and answered as a 500. */
  const failed = (cause: Cause.Cause<ChatFailure>, response: ServerResponse, requestId: string) => {
    const failure = Cause.failureOption(cause)
    if (failure._tag === "Some") return writeError(response, failure.value.error, failure.value.headers)
    if (Cause.isInterruptedOnly(cause)) return
    logDefect(cause, requestId)
    writeError(response, new InternalError({ requestId }))
  }

  const answered = (answer: ChatAnswer, includeUsage: boolean, response: ServerResponse, requestId: string, record: RequestRecord) => {
    if (answer._tag === "Completion") {
      if (response.destroyed) return
      const json = JSON.stringify(answer.completion)
      response.writeHead(200, {
        ...answer.headers,
        ...routingHeaders(answer.served),
        "content-type": "application/json",
        "content-length": Buffer.byteLength(json)
      })
      response.end(json)
      return
    }
    const routed = answer.stream
    if (response.destroyed) return routed.source.close()
    response.writeHead(200, { ...answer.headers, ...sseHeaders, ...routingHeaders(routed), "content-type": "text/event-stream" })
    Metrics.streamsActive.add(1)
    response.once("close", () => Metrics.streamsActive.add(-1))
    writeSse(
      routed.source,
      {
        includeUsage,
        requestId,
        logDefect: (cause) => logDefect(cause, requestId),
        onTerminate: lifecycle.onTerminate,
        deadline: routed.deadline,
        keepalive: { everyMs: config.sseKeepaliveMs, timer: routed.deadline.timer },
        onFirstWrite: () => {
          record.firstByteAt = performance.now()
          Metrics.timeToFirstToken.update((record.firstByteAt - record.arrivedAt) / 1000, routed.deployment.name, String(routed.deployment.providerKind))
        }
      },
      response
    )
  }

  const answer = (text: string, request: IncomingMessage, response: ServerResponse, requestId: string, caller: Caller, record: RequestRecord) => {
    const decoded = decodeChatRequest(text)
    if (decoded._tag === "Left") return writeError(response, decoded.left)
    const chat = decoded.right
    const includeUsage = chat.stream === true && chat.stream_options?.include_usage === true
    const cacheControl = headerOf(request.headers, "cache-control")
    const fiber = runChat(withRequestId(core.chat(chat, caller, record, cacheControl === undefined ? undefined : { cacheControl }), requestId), record)
    const onClose = () => {
      if (!response.writableEnded) fiber.unsafeInterruptAsFork(fiber.id())
    }
    response.once("close", onClose)
    fiber.addObserver((exit) => {
      response.off("close", onClose)
      try {
        if (Exit.isSuccess(exit)) answered(exit.value, includeUsage, response, requestId, record)
        else failed(exit.cause, response, requestId)
      } catch (thrown) {
        if (Exit.isSuccess(exit) && exit.value._tag === "Stream") exit.value.stream.source.close()
        logDefect(Cause.die(thrown), requestId)
        writeError(response, new InternalError({ requestId }))
      }
    })
  }

  return (request: IncomingMessage, response: ServerResponse): boolean => {
    if (!isChatRequest(request)) return false
    const requestId = requestIdOf(request.headers)
    const record = newRecord(requestId)
    try {
      if (tracing !== undefined) {
        record.span = tracing.startServer({
          method: "POST",
          path: chatPath,
          headers: request.headers,
          httpVersion: request.httpVersion,
          clientAddress: request.socket.remoteAddress,
          localPort: request.socket.localPort,
          requestId
        })
      }
      response.setHeader("x-request-id", requestId)
      onEnd(request, response, requestId, record)
      const rejection = lifecycle.isDraining()
        ? new ShuttingDown()
        : (hostProblem(request.httpVersion, request.headers) ?? bodyProblem("POST", request.headers, maxBodyBytes))
      if (rejection !== undefined) {
        writeError(response, rejection)
        return true
      }
      const caller = authenticator.authenticate(request.headers)
      if (caller instanceof Unauthorized) {
        writeError(response, caller)
        return true
      }
      readBody(request, (text) => {
        try {
          answer(text, request, response, requestId, caller, record)
        } catch (thrown) {
          logDefect(Cause.die(thrown), requestId)
          writeError(response, new InternalError({ requestId }))
        }
      })
    } catch (thrown) {
      logDefect(Cause.die(thrown), requestId)
      writeError(response, new InternalError({ requestId }))
    }
    return true
  }
})
