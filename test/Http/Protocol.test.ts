/**
 * What reaches the gateway below HTTP's level: clients that send too little, too slowly or not HTTP at all. Each
 * gets the envelope where a response is still possible, and its socket is closed in bounded time; nobody holds
 * a socket forever. Raw sockets, since fetch cannot misbehave this way.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, LogLevel } from "effect"
import { connect } from "node:net"
import type { Socket } from "node:net"
import { afterEach, vi } from "vitest"
import { captureLogs } from "../support/Logs.js"
import { startGateway, testKey } from "../support/Gateway.js"
import type { RunningGateway } from "../support/Gateway.js"
import { call } from "../support/Http.js"

const receiveTimeouts = { headersTimeoutMs: 400, bodyTimeoutMs: 800 }

interface RawExchange {
  /** Everything the server wrote before it closed the connection. */
  readonly received: string
  /** Milliseconds from the connection to its close. */
  readonly closedAfterMs: number
}

/**
 * Opens a socket, lets `drive` write to it (at once or over time), and reads until the server closes it (bounded:
 * a socket still open after `limitMs` is a failure of the test, not a hang).
 */
const exchange = (gateway: RunningGateway, drive: (socket: Socket) => void, limitMs = 10_000) =>
  Effect.async<RawExchange, Error>((resume) => {
    const started = performance.now()
    const pieces: Array<Buffer> = []
    const socket = connect(Number(new URL(gateway.baseUrl).port), "127.0.0.1", () => drive(socket))
    const limit = setTimeout(() => {
      socket.destroy()
      resume(Effect.fail(new Error(`socket still open after ${limitMs} ms`)))
    }, limitMs)
    socket.on("data", (piece: Buffer) => pieces.push(piece))
    socket.on("error", () => {})
    socket.once("close", () => {
      clearTimeout(limit)
      resume(Effect.succeed({ received: Buffer.concat(pieces).toString("utf8"), closedAfterMs: performance.now() - started }))
    })
    return Effect.sync(() => {
      clearTimeout(limit)
      socket.destroy()
    })
  })

/** The status line's code and the JSON envelope of a raw HTTP answer. */
const parsed = (received: string) => {
  const [head = "", body = ""] = received.split("\r\n\r\n")
  const status = Number(head.split(" ")[1])
  const envelope = JSON.parse(body) as { readonly error: Record<string, unknown> }
  expect(Object.keys(envelope.error).sort()).toEqual(["code", "message", "param", "type"])
  expect(head.toLowerCase()).toContain("content-type: application/json")
  return { status, code: envelope.error["code"] }
}

describe("receive timeouts (finding 4)", () => {
  it.scopedLive("a client that connects and sends nothing is closed after the headers timeout", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ settings: receiveTimeouts })
      const { closedAfterMs } = yield* exchange(gateway, () => {})
      expect(closedAfterMs).toBeGreaterThan(300)
      expect(closedAfterMs).toBeLessThan(3000)
    }))

  it.scopedLive("half a request line, or headers a byte at a time, get a 408 envelope after the headers timeout", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ settings: receiveTimeouts })
      const half = yield* exchange(gateway, (socket) => socket.write("POST /v1/chat/comp"))
      expect(parsed(half.received)).toEqual({ status: 408, code: "request_timeout" })
      expect(half.closedAfterMs).toBeLessThan(3000)
      const trickle = yield* exchange(gateway, (socket) => {
        const headers = `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-padding: ${"p".repeat(200)}\r\n`
        let sent = 0
        const timer = setInterval(() => {
          if (socket.destroyed || sent >= headers.length) return clearInterval(timer)
          socket.write(headers[sent++]!)
        }, 50)
        socket.once("close", () => clearInterval(timer))
      })
      expect(parsed(trickle.received)).toEqual({ status: 408, code: "request_timeout" })
      expect(trickle.closedAfterMs).toBeLessThan(3000)
    }))

  it.scopedLive("a Content-Length larger than the body sent gets a 408 envelope after the body timeout", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ settings: receiveTimeouts })
      const { closedAfterMs, received } = yield* exchange(gateway, (socket) =>
        socket.write(
          `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${testKey}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"model":`
        )
      )
      expect(parsed(received)).toEqual({ status: 408, code: "request_timeout" })
      expect(closedAfterMs).toBeGreaterThan(600)
      expect(closedAfterMs).toBeLessThan(4000)
    }))

  it.scopedLive("a thousand silent sockets are all closed, and the gateway serves meanwhile", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ settings: receiveTimeouts })
      const silent = yield* Effect.forEach(Array.from({ length: 1000 }), () => Effect.either(exchange(gateway, () => {}, 15_000)), {
        concurrency: "unbounded"
      }).pipe(
        Effect.fork
      )
      yield* Effect.sleep("100 millis")
      expect((yield* call(`${gateway.baseUrl}/health`)).status).toBe(200)
      const outcomes = yield* silent.await.pipe(Effect.flatten)
      expect(outcomes.filter((outcome) => outcome._tag === "Left")).toHaveLength(0)
    }))
})

describe("what Node's parser refuses is answered with the envelope (finding 17)", () => {
  const refused = (request: string) =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const { received } = yield* exchange(gateway, (socket) => socket.write(request))
      const answer = parsed(received)
      expect((yield* call(`${gateway.baseUrl}/health`)).status).toBe(200)
      return answer
    })

  it.scopedLive("headers larger than Node's limit: 431", () =>
    Effect.gen(function* () {
      const answer = yield* refused(`GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${"b".repeat(20_000)}\r\n\r\n`)
      expect(answer).toEqual({ status: 431, code: "request_header_fields_too_large" })
    }))

  it.scopedLive("a URL larger than Node's limit: 431", () =>
    Effect.gen(function* () {
      const answer = yield* refused(`GET /v1/models?${"q".repeat(20_000)} HTTP/1.1\r\nhost: x\r\n\r\n`)
      expect(answer).toEqual({ status: 431, code: "request_header_fields_too_large" })
    }))

  it.scopedLive("Transfer-Encoding together with Content-Length, and bare LF line ends: 400", () =>
    Effect.gen(function* () {
      const both = yield* refused(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n"
      )
      expect(both).toEqual({ status: 400, code: "invalid_http_request" })
      const bareLf = yield* refused("GET /health HTTP/1.1\nhost: x\n\n")
      expect(bareLf).toEqual({ status: 400, code: "invalid_http_request" })
    }))

  it.scopedLive("an Expect other than 100-continue: 417", () =>
    Effect.gen(function* () {
      const answer = yield* refused("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nexpect: 200-ok\r\ncontent-length: 2\r\n\r\n{}")
      expect(answer).toEqual({ status: 417, code: "expectation_failed" })
    }))

  it.scopedLive("bytes that are not HTTP at all: 400", () =>
    Effect.gen(function* () {
      const answer = yield* refused("\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u01fc\u0003\u0003 hello\r\n\r\n")
      expect(answer).toEqual({ status: 400, code: "invalid_http_request" })
    }))
})

describe("the access log never writes a query (finding 19)", () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it.scopedLive("a key sent as ?api_key=… is refused and its value is logged nowhere", () =>
    Effect.gen(function* () {
      const lines = captureLogs().raw
      const gateway = yield* startGateway({ settings: { logLevel: LogLevel.Debug, logFormat: "json" } })
      const secret = "sk-query-secret-123456789"
      for (const path of [`/v1/models?api_key=${secret}`, `/v1/chat/completions?api_key=${secret}`, `/nowhere?key=${secret}`]) {
        const answer = yield* call(`${gateway.baseUrl}${path}`, {
          method: path.includes("chat") ? "POST" : "GET",
          headers: { "content-type": "application/json" },
          ...(path.includes("chat") ? { body: "{}" } : {})
        })
        expect([401, 404]).toContain(answer.status)
        expect(answer.text).not.toContain(secret)
      }
      yield* Effect.sleep("50 millis")
      const access = lines.filter((line) => line.includes("Sent HTTP response"))
      expect(access.length).toBeGreaterThanOrEqual(3)
      expect(lines.join("\n")).not.toContain(secret)
      expect(access.some((line) => line.includes('"http.path":"/v1/models"'))).toBe(true)
    }))
})
