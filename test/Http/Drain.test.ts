/**
 * The end of the shutdown grace period, in-process: a completion still waiting on its upstream gets OpenAI's 503
 * envelope, written by the lifecycle, rather than a dropped connection.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Scope, Stream } from "effect"
import * as Registry from "../../src/Router/Registry.js"
import type { StreamProvider } from "../../src/Providers/Provider.js"
import { startGateway } from "../support/Gateway.js"

describe("drain at shutdown", () => {
  it.live("answers a completion still pending at the end of the grace period with a 503 envelope", () =>
    Effect.gen(function* () {
      const called = yield* Deferred.make<void>()
      const hanging: StreamProvider = {
        complete: () => Effect.zipRight(Deferred.succeed(called, undefined), Effect.never),
        stream: () => Stream.never
      }
      const scope = yield* Scope.make()
      const gateway = yield* startGateway({
        registry: Registry.layerStatic([{ name: "slow", provider: hanging }]),
        settings: { shutdownGraceMs: 200 }
      }).pipe(Scope.extend(scope))
      const pending = fetch(`${gateway.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { ...gateway.auth, "content-type": "application/json" },
        body: JSON.stringify({ model: "slow", messages: [{ role: "user", content: "hi" }] })
      })
      yield* Deferred.await(called)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      const response = yield* Effect.promise(() => pending)
      expect(response.status).toBe(503)
      const body = (yield* Effect.promise(() => response.json())) as { error: { code: string; type: string } }
      expect(body.error).toMatchObject({ code: "server_shutting_down", type: "server_error" })
      yield* closing.await
      expect(gateway.lifecycle.inFlight()).toBe(0)
    }))
})
