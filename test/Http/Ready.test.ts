/**
 * Readiness apart from liveness: `GET /ready` (public) is 200 when the gateway can serve — its registry loaded and
 * its governance store answering — and a 503 naming the reason otherwise: the store down, or the gateway draining.
 * `/health` stays liveness only.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Scope, Stream } from "effect"
import { connect } from "node:net"
import * as RedisStore from "../../src/Governance/RedisStore.js"
import type { StreamProvider } from "../../src/Providers/Provider.js"
import * as Registry from "../../src/Router/Registry.js"
import { ownRedis, sparePort } from "../Governance/RedisServer.js"
import { startGateway } from "../support/Gateway.js"
import { call, expectEnvelope } from "../support/Http.js"

describe("GET /ready", () => {
  it.scopedLive("is 200 while serving, 503 not_ready while the store does not answer, and 200 again once it does", () =>
    Effect.gen(function* () {
      const port = yield* sparePort
      const redis = yield* ownRedis(port)
      yield* redis.start
      const gateway = yield* startGateway({ store: RedisStore.layer(`redis://127.0.0.1:${port}`, { prefix: "llmp-ready" }) })
      const ready = yield* call(`${gateway.baseUrl}/ready`)
      expect(ready.status).toBe(200)
      expect(JSON.parse(ready.text)).toEqual({ status: "ready" })
      yield* redis.stop
      const down = expectEnvelope(yield* call(`${gateway.baseUrl}/ready`), 503, "not_ready")
      expect(down.message).toContain("redis governance store does not answer")
      // liveness is not readiness
      expect((yield* call(`${gateway.baseUrl}/health`)).status).toBe(200)
      yield* redis.start
      let status = 0
      for (let attempt = 0; attempt < 100 && status !== 200; attempt++) {
        status = (yield* call(`${gateway.baseUrl}/ready`)).status
        if (status !== 200) yield* Effect.sleep("50 millis")
      }
      expect(status).toBe(200)
    }))

  it.live("is 503 while the gateway drains, on a connection still open", () =>
    Effect.gen(function* () {
      const called = yield* Deferred.make<void>()
      const hanging: StreamProvider = { complete: () => Effect.zipRight(Deferred.succeed(called, undefined), Effect.never), stream: () => Stream.never }
      const scope = yield* Scope.make()
      const gateway = yield* startGateway({
        registry: Registry.layerStatic([{ name: "slow", provider: hanging }]),
        settings: { shutdownGraceMs: 300 }
      }).pipe(Scope.extend(scope))
      expect((yield* call(`${gateway.baseUrl}/ready`)).status).toBe(200)
      // a request that holds the drain open
      const pending = fetch(`${gateway.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { ...gateway.auth, "content-type": "application/json" },
        body: JSON.stringify({ model: "slow", messages: [{ role: "user", content: "hi" }] })
      }).then((response) => response.status)
      yield* Deferred.await(called)
      // a load balancer's probe already under way when the drain begins: its connection is not idle, so it is answered
      const socket = connect(Number(new URL(gateway.baseUrl).port), "127.0.0.1")
      socket.on("error", () => {})
      let received = ""
      socket.on("data", (piece: Buffer) => (received += piece.toString("utf8")))
      yield* Effect.async<void>((resume) => void socket.once("connect", () => resume(Effect.void)))
      socket.write("GET /ready HTTP/1.1\r\nhost: x\r\n")
      yield* Effect.sleep("50 millis")
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* Effect.sleep("50 millis")
      socket.write("\r\n")
      for (let attempt = 0; attempt < 50 && !received.includes("\r\n\r\n"); attempt++) yield* Effect.sleep("20 millis")
      expect(received).toMatch(/^HTTP\/1\.1 503 /)
      expect(received).toContain("server_shutting_down")
      expect(yield* Effect.promise(() => pending)).toBe(503)
      yield* closing.await
      socket.destroy()
    }))
})
