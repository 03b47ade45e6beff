/**
 * Lifecycle: the Node HTTP server, the count of requests in flight, and graceful shutdown. On SIGTERM the
 * server stops accepting, in-flight requests get `SHUTDOWN_GRACE_MS` to finish, and whatever remains is then
 * ended with a terminal error (an SSE error frame, or a 503).
 */
import { Context, Effect, Layer } from "effect"
import { createServer, STATUS_CODES } from "node:http"
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import type { Duplex } from "node:stream"
import { ProxyConfig } from "../Config.js"
import type { ProxySettings } from "../Config.js"
import * as Metrics from "../Metrics.js"
import { ProtocolError, ShuttingDown } from "../Errors.js"
import { describeError, writeError } from "./Errors.js"

/** The server's lifecycle state, shared by the edge middleware, the chat handler and the drain finalizer. */
export interface LifecycleState {
  readonly server: Server
  readonly isDraining: () => boolean
  readonly inFlight: () => number
  /** Registers a callback run when the grace period is over (for streams); returns its unregistration. */
  readonly onTerminate: (terminate: () => void) => () => void
  readonly startedAt: number
}

/** The running server's lifecycle. */
export class Lifecycle extends Context.Tag("llm-proxy/Lifecycle")<
  Lifecycle,
  LifecycleState & { readonly startDraining: () => void; readonly terminateAll: () => void }
>() {}

/** What Node's parser refused, as the envelope's status, code and message. */
export const protocolErrorOf = (error: Error & { readonly code?: unknown }): ProtocolError => {
  switch (error.code) {
    case "HPE_HEADER_OVERFLOW":
      return new ProtocolError({ status: 431, code: "request_header_fields_too_large", message: "The request's headers (or URL) are too large" })
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return new ProtocolError({ status: 408, code: "request_timeout", message: "The request was not received in time" })
    default:
      return new ProtocolError({ status: 400, code: "invalid_http_request", message: "The request is not valid HTTP/1.1" })
  }
}

/** A whole HTTP/1.1 response with the envelope, for a socket no ServerResponse owns. */
export const rawErrorResponse = (error: ProtocolError): string => {
  const { body, headers, status } = describeError(error)
  const json = JSON.stringify(body)
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}`, "content-type: application/json", `content-length: ${Buffer.byteLength(json)}`]
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  return `${lines.join("\r\n")}\r\n\r\n${json}`
}

/**
 * The head of a request without its Upgrade: the request line and its headers but `upgrade`, and `connection` without
 * its `upgrade` token (a `close` stays).
 */
const plainHeadOf = (request: IncomingMessage): string => {
  const lines = [`${request.method ?? "GET"} ${request.url ?? "/"} HTTP/${request.httpVersion === "1.0" ? "1.0" : "1.1"}`]
  const raw = request.rawHeaders
  for (let index = 0; index + 1 < raw.length; index += 2) {
    const name = raw[index]!.toLowerCase()
    const value = raw[index + 1]!
    if (name === "upgrade") continue
    if (name === "connection") {
      const kept = value.split(",").map((token) => token.trim()).filter((token) => token !== "" && token.toLowerCase() !== "upgrade")
      if (kept.length > 0) lines.push(`${raw[index]}: ${kept.join(", ")}`)
      continue
    }
    lines.push(`${raw[index]}: ${value}`)
  }
  return `${lines.join("\r\n")}\r\n\r\n`
}

/**
 * Node answers what its parser refuses (bad framing, huge headers, a request not received in time) with bare
 * defaults; these answer with the envelope where the socket still allows a response, and close it otherwise.
 */
const answerClientErrors = (server: Server) => {
  server.on("clientError", (error: Error & { readonly code?: unknown }, socket: Duplex) => {
    const owner = (socket as Duplex & { readonly _httpMessage?: ServerResponse | null })._httpMessage
    if (error.code === "ECONNRESET" || !socket.writable || (owner != null && owner.headersSent)) return socket.destroy()
    socket.end(rawErrorResponse(protocolErrorOf(error)))
  })
  // A proxy's CONNECT goes to a 'connect' listener, without one Node drops the socket unanswered.
  server.on("connect", (_request: IncomingMessage, socket: Duplex) => {
    socket.on("error", () => {})
    socket.end(rawErrorResponse(new ProtocolError({ status: 400, code: "invalid_http_request", message: "CONNECT is not supported: this is not a forward proxy" })))
  })
  // An Upgrade (WebSocket, h2c) the gateway does not speak is ignored, as HTTP allows: the request is read again as
  // a plain one. Without a listener Node serves it but, its parser left in upgrade mode, drops a body cut short
  // unanswered.
  server.on("upgrade", (request: IncomingMessage, socket: Duplex, bodyHead: Buffer) => {
    socket.on("error", () => {})
    socket.unshift(Buffer.concat([Buffer.from(plainHeadOf(request), "latin1"), bodyHead]))
    server.emit("connection", socket)
  })
  server.on("checkExpectation", (_request: IncomingMessage, response: ServerResponse) =>
    writeError(response, new ProtocolError({ status: 417, code: "expectation_failed", message: "Only 'Expect: 100-continue' is supported" }))
  )
}

/** How often Node checks for requests past their timeouts: often enough that short timeouts fire on time. */
const checkingIntervalMs = (settings: ProxySettings): number =>
  Math.max(50, Math.min(1000, Math.floor(Math.min(settings.headersTimeoutMs, settings.bodyTimeoutMs) / 4)))

/**
 * Creates the (not yet listening) Node server, with the receive timeouts of ProxyConfig, and starts counting its
 * requests (in flight and in the metrics).
 */
export const layer: Layer.Layer<Lifecycle, never, ProxyConfig> = Layer.effect(
  Lifecycle,
  Effect.gen(function* () {
    const settings = yield* ProxyConfig
    const server = createServer({
      keepAliveTimeout: 65_000,
      headersTimeout: settings.headersTimeoutMs,
      requestTimeout: settings.bodyTimeoutMs,
      connectionsCheckingInterval: checkingIntervalMs(settings),
      // Node's own check would answer a request without Host with a bare 400; the routes answer it instead.
      requireHostHeader: false
    })
    answerClientErrors(server)
    let draining = false
    const inFlight = new Set<ServerResponse>()
    const terminators = new Set<() => void>()
    server.on("request", (request, response) => {
      const started = performance.now()
      inFlight.add(response)
      Metrics.httpInFlight.update(inFlight.size)
      response.once("close", () => {
        inFlight.delete(response)
        Metrics.httpInFlight.update(inFlight.size)
        const route = Metrics.routeOf(request.url ?? "/")
        Metrics.httpRequests.update(1, route, response.writableFinished ? String(response.statusCode) : "499")
        Metrics.httpDuration.update((performance.now() - started) / 1000, route)
      })
    })
    return {
      server,
      isDraining: () => draining,
      inFlight: () => inFlight.size,
      onTerminate: (terminate) => {
        terminators.add(terminate)
        return () => terminators.delete(terminate)
      },
      terminateAll: () => {
        // Streams end with their error frame; a request not yet answered gets the 503 here, written directly,
        // so no request pays for racing a shutdown signal (the platform skips a response already ended).
        for (const terminate of [...terminators]) terminate()
        const shuttingDown = new ShuttingDown()
        for (const response of inFlight) writeError(response, shuttingDown)
      },
      startedAt: Date.now(),
      startDraining: () => {
        draining = true
      }
    }
  })
)

const waitUntilIdle = (lifecycle: LifecycleState, deadline: number) =>
  Effect.gen(function* () {
    while (lifecycle.inFlight() > 0 && Date.now() < deadline) yield* Effect.sleep(20)
  })

/** Time the ended requests get to flush their terminal frame or 503 before sockets are destroyed. */
const flushMs = 500

/**
 * Drains on scope close: stop accepting, wait up to the grace period, end the rest, close every socket.
 * Build it on top of the serving layer so that it runs before the server's own finalizers.
 */
export const drainOnShutdown: Layer.Layer<never, never, Lifecycle | ProxyConfig> = Layer.scopedDiscard(
  Effect.gen(function* () {
    const lifecycle = yield* Lifecycle
    const { shutdownGraceMs } = yield* ProxyConfig
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        lifecycle.startDraining()
        lifecycle.server.close()
        yield* Effect.logInfo("draining").pipe(Effect.annotateLogs({ inFlight: lifecycle.inFlight(), graceMs: shutdownGraceMs }))
        yield* waitUntilIdle(lifecycle, Date.now() + shutdownGraceMs)
        if (lifecycle.inFlight() > 0) {
          yield* Effect.logWarning("grace period over, ending remaining requests").pipe(
            Effect.annotateLogs({ inFlight: lifecycle.inFlight() })
          )
          lifecycle.terminateAll()
          yield* waitUntilIdle(lifecycle, Date.now() + flushMs)
        }
        lifecycle.server.closeAllConnections()
      })
    )
  })
)
