/**
 * `POST /v1/chat/completions` (and Anthropic's `POST /v1/messages` and `/v1/messages/count_tokens`) served straight on the Node server, in front of the HttpApi app that answers every
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
import type { AnswerHeaders, ChatAnswer, ChatFailure, MessagesAnswer, ResponsesAnswer } from "../Core/Chat.js"
import type { ChunkSource } from "../Providers/ChunkSource.js"
import type { Deadline } from "../Providers/Deadline.js"
import type { Served } from "../Router/Router.js"
import { InternalError, ShuttingDown, Unauthorized } from "../Errors.js"
import { Tracing } from "../Tracing/Tracing.js"
import { Authenticator } from "./Auth.js"
import type { Caller } from "./Auth.js"
import { accessFields, bodyProblem, decodeChatRequest, headerOf, hostProblem, pathOf, requestIdOf, routingHeaders } from "./Edge.js"
import { writeError } from "./Errors.js"
import type { GatewayError } from "./Errors.js"
import { countHeaders, countTokensPath, decodeCountTokensCall, decodeMessagesCall, messagesFraming, messagesPath, writeMessagesError } from "./Messages.js"
import { Lifecycle } from "./Lifecycle.js"
import { decodeResponsesCall, responsesFraming, responsesPath } from "./Responses.js"
import { chatFraming, sseHeaders, writeFramed } from "./Sse.js"
import type { Framing } from "./Sse.js"

/** The path this module serves. */
export const chatPath = "/v1/chat/completions"

/**
 * The endpoints this module serves: chat completions, OpenAI's Responses (`POST` only: retrieving and deleting are
 * the HttpApi's, on either mount), and Anthropic's Messages (its failures in Anthropic's envelope).
 */
type Route = typeof chatPath | typeof responsesPath | typeof messagesPath | typeof countTokensPath

const isAt = (url: string, path: string): boolean => url === path || (url.startsWith(path) && url.charCodeAt(path.length) === 63 /* ? */)

/** Which of its paths a request is for: the method and the path without its query. */
const routeOf = (request: IncomingMessage): Route | undefined => {
  if (request.method !== "POST") return undefined
  const url = request.url ?? ""
  return isAt(url, chatPath)
    ? chatPath
    : isAt(url, responsesPath)
      ? responsesPath
      : isAt(url, messagesPath)
        ? messagesPath
        : isAt(url, countTokensPath)
          ? countTokensPath
          : undefined
}

/** How a failure is written on one route: OpenAI's envelope, or Anthropic's on the Messages endpoints. */
type ErrorWriter = (response: ServerResponse, error: GatewayError, extraHeaders?: Readonly<Record<string, string>>) => void

/** A 200 with a JSON body (`json`, or `body` serialized), unless the client has gone. */
const writeJson = (response: ServerResponse, body: unknown, headers: Readonly<Record<string, string>>, json: string = JSON.stringify(body)) => {
  if (response.destroyed) return
  response.writeHead(200, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(json) })
  response.end(json)
}

/** Releases the upstream of a streamed answer that could not be written. */
const closeStream = (value: ChatAnswer | MessagesAnswer | ResponsesAnswer): void => {
  if (value._tag === "Stream") value.stream.source.close()
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
  const onEnd = (request: IncomingMessage, response: ServerResponse, requestId: string, record: RequestRecord, route: Route) =>
    response.once("close", () => {
      const endedAt = performance.now()
      if (tracing !== undefined && record.span !== undefined) {
        tracing.endServer(record.span, record, response.headersSent ? response.statusCode : undefined, !response.writableFinished)
      }
      const untilMs = (record.firstByteAt ?? endedAt) - record.arrivedAt
      Metrics.overhead.update(Math.max(0, untilMs - record.upstreamMs) / 1000, route)
      if (!accessLog) return
      runFork(
        Effect.logInfo("Sent HTTP response").pipe(
          Effect.annotateLogs(accessFields(record, {
            "http.method": "POST",
            "http.path": pathOf(request.url ?? route),
            "http.status": response.writableFinished ? response.statusCode : 499,
            durationMs: Math.round(endedAt - record.arrivedAt),
            requestId
          }))
        )
      )
    })

  /** A failure or defect of the core, in the route's envelope; a defect is logged and answered as a 500. */
  const failed = (cause: Cause.Cause<ChatFailure>, response: ServerResponse, requestId: string, write: ErrorWriter = writeError) => {
    const failure = Cause.failureOption(cause)
    if (failure._tag === "Some") return write(response, failure.value.error, failure.value.headers)
    if (Cause.isInterruptedOnly(cause)) return
    logDefect(cause, requestId)
    write(response, new InternalError({ requestId }))
  }

  /**
   * Writes a committed stream of either dialect: its head, its place in the active-streams gauge, its frames by
   * `framing` (keepalives on silence, the deadline, the drain's end), and its time to first token.
   */
  const writeStream = <A>(
    routed: { readonly source: ChunkSource<A>; readonly deadline: Deadline } & Served,
    framing: Framing<A>,
    headers: AnswerHeaders,
    response: ServerResponse,
    requestId: string,
    record: RequestRecord
  ) => {
    if (response.destroyed) return routed.source.close()
    response.writeHead(200, { ...headers, ...sseHeaders, ...routingHeaders(routed), "content-type": "text/event-stream" })
    Metrics.streamsActive.add(1)
    response.once("close", () => Metrics.streamsActive.add(-1))
    writeFramed(
      routed.source,
      framing,
      {
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

  const answered = (answer: ChatAnswer, includeUsage: boolean, response: ServerResponse, requestId: string, record: RequestRecord) => {
    if (answer._tag === "Completion") {
      // `json` when the answer has it: a cache hit's completion is then never decoded.
      const headers = { ...answer.headers, ...routingHeaders(answer.served) }
      return answer.json === undefined ? writeJson(response, answer.completion, headers) : writeJson(response, undefined, headers, answer.json)
    }
    writeStream(answer.stream, chatFraming(includeUsage, answer.sink), answer.headers, response, requestId, record)
  }

  /**
   * Runs one request of the core in its own fiber, interrupted when the client leaves first, and hands its outcome
   * to `onAnswer` (or its failure, in the route's envelope, to the response). Whatever `onAnswer` throws is a 500,
   * after `onThrown` has released what the answer holds.
   */
  const runCore = <A>(
    effect: Effect.Effect<A, ChatFailure>,
    response: ServerResponse,
    requestId: string,
    record: RequestRecord,
    write: ErrorWriter,
    onAnswer: (value: A) => void,
    onThrown: (value: A) => void
  ) => {
    const fiber = runChat(withRequestId(effect, requestId), record)
    const onClose = () => {
      if (!response.writableEnded) fiber.unsafeInterruptAsFork(fiber.id())
    }
    response.once("close", onClose)
    fiber.addObserver((exit) => {
      response.off("close", onClose)
      try {
        if (Exit.isSuccess(exit)) onAnswer(exit.value)
        else failed(exit.cause, response, requestId, write)
      } catch (thrown) {
        if (Exit.isSuccess(exit)) onThrown(exit.value)
        logDefect(Cause.die(thrown), requestId)
        write(response, new InternalError({ requestId }))
      }
    })
  }

  const answer = (text: string, request: IncomingMessage, response: ServerResponse, requestId: string, caller: Caller, record: RequestRecord) => {
    const decoded = decodeChatRequest(text)
    if (decoded._tag === "Left") return writeError(response, decoded.left)
    const chat = decoded.right
    const includeUsage = chat.stream === true && chat.stream_options?.include_usage === true
    const cacheControl = headerOf(request.headers, "cache-control")
    runCore(
      core.chat(chat, caller, record, cacheControl === undefined ? undefined : { cacheControl }),
      response,
      requestId,
      record,
      writeError,
      (value) => answered(value, includeUsage, response, requestId, record),
      closeStream
    )
  }

  /** A Messages answer: the message as JSON, or its events as SSE (`ping` on silence, an `error` event on failure). */
  const messagesAnswered = (value: MessagesAnswer, response: ServerResponse, requestId: string, record: RequestRecord) => {
    if (value._tag === "Message") return writeJson(response, value.answer.message, { ...value.headers, ...routingHeaders(value.served) })
    writeStream(value.stream, messagesFraming, value.headers, response, requestId, record)
  }

  const answerMessages = (route: Route, text: string, request: IncomingMessage, response: ServerResponse, requestId: string, caller: Caller, record: RequestRecord) => {
    if (route === countTokensPath) {
      const decoded = decodeCountTokensCall(text, request.headers)
      if (decoded._tag === "Left") return writeMessagesError(response, decoded.left)
      return runCore(
        core.countTokens(decoded.right, caller, record),
        response,
        requestId,
        record,
        writeMessagesError,
        (value) => writeJson(response, { input_tokens: value.inputTokens }, countHeaders(value)),
        () => {}
      )
    }
    const decoded = decodeMessagesCall(text, request.headers)
    if (decoded._tag === "Left") return writeMessagesError(response, decoded.left)
    runCore(
      core.messages(decoded.right, caller, record),
      response,
      requestId,
      record,
      writeMessagesError,
      (value) => messagesAnswered(value, response, requestId, record),
      closeStream
    )
  }

  /** A Responses answer: the response object as JSON, or its events as SSE (an `error` event on failure). */
  const responsesAnswered = (value: ResponsesAnswer, response: ServerResponse, requestId: string, record: RequestRecord) => {
    if (value._tag === "Response") return writeJson(response, value.response, { ...value.headers, ...routingHeaders(value.served) })
    writeStream(value.stream, responsesFraming(), value.headers, response, requestId, record)
  }

  const answerResponses = (text: string, response: ServerResponse, requestId: string, caller: Caller, record: RequestRecord) => {
    const decoded = decodeResponsesCall(text)
    if (decoded._tag === "Left") return writeError(response, decoded.left)
    runCore(
      core.responses(decoded.right, caller, record),
      response,
      requestId,
      record,
      writeError,
      (value) => responsesAnswered(value, response, requestId, record),
      closeStream
    )
  }

  return (request: IncomingMessage, response: ServerResponse): boolean => {
    const route = routeOf(request)
    if (route === undefined) return false
    const requestId = requestIdOf(request.headers)
    const record = newRecord(requestId)
    const openAiRoute = route === chatPath || route === responsesPath
    const writeFailure: ErrorWriter = openAiRoute ? writeError : writeMessagesError
    try {
      if (tracing !== undefined) {
        record.span = tracing.startServer({
          method: "POST",
          path: route,
          headers: request.headers,
          httpVersion: request.httpVersion,
          clientAddress: request.socket.remoteAddress,
          localPort: request.socket.localPort,
          requestId
        })
      }
      response.setHeader("x-request-id", requestId)
      if (!openAiRoute) response.setHeader("request-id", requestId)
      onEnd(request, response, requestId, record, route)
      const rejection = lifecycle.isDraining()
        ? new ShuttingDown()
        : (hostProblem(request.httpVersion, request.headers) ?? bodyProblem("POST", request.headers, maxBodyBytes))
      if (rejection !== undefined) {
        writeFailure(response, rejection)
        return true
      }
      const caller = authenticator.authenticate(request.headers)
      if (caller instanceof Unauthorized) {
        writeFailure(response, caller)
        return true
      }
      readBody(request, (text) => {
        try {
          if (route === chatPath) answer(text, request, response, requestId, caller, record)
          else if (route === responsesPath) answerResponses(text, response, requestId, caller, record)
          else answerMessages(route, text, request, response, requestId, caller, record)
        } catch (thrown) {
          logDefect(Cause.die(thrown), requestId)
          writeFailure(response, new InternalError({ requestId }))
        }
      })
    } catch (thrown) {
      logDefect(Cause.die(thrown), requestId)
      writeFailure(response, new InternalError({ requestId }))
    }
    return true
  }
})
