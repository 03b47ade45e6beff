/**
 * Lifecycle: the Node HTTP server, the count of requests in flight, and graceful shutdown. On SIGTERM the
 * server stops accepting, in-flight requests get `SHUTDOWN_GRACE_MS` to finish, and whatever remains is then
 * ended with a terminal error (an SSE error frame, or a 503).
 */
import { Context, Effect, Layer } from "effect"
import { createServer } from "node:http"
import type { Server, ServerResponse } from "node:http"
import { ProxyConfig } from "../Config.js"
import * as Metrics from "../Metrics.js"
import { ShuttingDown } from "../Errors.js"
import { writeError } from "./Errors.js"

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

/** Creates the (not yet listening) Node server and starts counting its requests (in flight and in the metrics). */
export const layer: Layer.Layer<Lifecycle> = Layer.effect(
  Lifecycle,
  Effect.gen(function* () {
    const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 })
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
