import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { Unauthorized } from "../../src/Errors.js"
import { keysMatch, makeOperatorOnly, makeWithKeys, operator } from "../../src/Http/Auth.js"
import { startGateway, testKey } from "../support/Gateway.js"

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

const call = (url: string, init: RequestInit = {}) =>
  Effect.promise(async (): Promise<Answer> => {
    const response = await fetch(url, init)
    return { status: response.status, headers: response.headers, text: await response.text() }
  })

interface Envelope {
  readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: string | null }
}

const envelopeOf = (answer: Answer): Envelope => JSON.parse(answer.text) as Envelope

const chatBody = JSON.stringify({ model: "mock", messages: [{ role: "user", content: "hello there" }] })

const expectInvalidApiKey = (answer: Answer) => {
  expect(answer.status).toBe(401)
  expect(answer.headers.get("content-type")).toContain("application/json")
  const body = envelopeOf(answer)
  expect(body.error.type).toBe("invalid_request_error")
  expect(body.error.code).toBe("invalid_api_key")
  expect(body.error.param).toBeNull()
  expect(typeof body.error.message).toBe("string")
  expect(Object.keys(body)).toEqual(["error"])
}

describe("keysMatch", () => {
  const expected = Redacted.make("s3cret-key")

  it("accepts the exact key", () => {
    expect(keysMatch("s3cret-key", expected)).toBe(true)
  })

  it("refuses a different key of the same length", () => {
    expect(keysMatch("s3cret-kez", expected)).toBe(false)
    expect(keysMatch("S3CRET-KEY", expected)).toBe(false)
  })

  it("refuses keys of other lengths without throwing (timingSafeEqual would on raw buffers)", () => {
    expect(() => keysMatch("s3cret", expected)).not.toThrow()
    expect(keysMatch("s3cret", expected)).toBe(false)
    expect(keysMatch("s3cret-key-and-more", expected)).toBe(false)
    expect(keysMatch("s3cret-key ", expected)).toBe(false)
  })

  it("refuses the empty key, even against an empty expected key", () => {
    expect(keysMatch("", expected)).toBe(false)
    expect(keysMatch("", Redacted.make(""))).toBe(false)
  })

  it("compares unicode keys by content", () => {
    const unicode = Redacted.make("clé-ü-🔑")
    expect(keysMatch("clé-ü-🔑", unicode)).toBe(true)
    expect(keysMatch("cle-u-🔑", unicode)).toBe(false)
  })
})

describe("authentication over a real socket", () => {
  it.scoped("accepts the key in x-internal-auth", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const answer = yield* call(`${gateway.baseUrl}/v1/models`, { headers: { "x-internal-auth": testKey } })
      expect(answer.status).toBe(200)
      expect((JSON.parse(answer.text) as { object: string }).object).toBe("list")
    }))

  it.scoped("accepts the key as Authorization: Bearer (what the OpenAI SDKs send)", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const answer = yield* call(`${gateway.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${testKey}`, "content-type": "application/json" },
        body: chatBody
      })
      expect(answer.status).toBe(200)
      expect((JSON.parse(answer.text) as { object: string }).object).toBe("chat.completion")
    }))

  it.scoped("accepts a request when either header carries the right key", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const answer = yield* call(`${gateway.baseUrl}/v1/models`, {
        headers: { "x-internal-auth": "wrong", authorization: `Bearer ${testKey}` }
      })
      expect(answer.status).toBe(200)
    }))

  it.scoped("refuses a wrong key with 401 and OpenAI's invalid_api_key envelope", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const viaHeader = yield* call(`${gateway.baseUrl}/v1/models`, { headers: { "x-internal-auth": "not-the-key" } })
      expectInvalidApiKey(viaHeader)
      expect(envelopeOf(viaHeader).error.message).toBe("Incorrect API key provided")
      const viaBearer = yield* call(`${gateway.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: "Bearer not-the-key", "content-type": "application/json" },
        body: chatBody
      })
      expectInvalidApiKey(viaBearer)
      expect(envelopeOf(viaBearer).error.message).toBe("Incorrect API key provided")
      // a prefix of the real key is still wrong
      expectInvalidApiKey(yield* call(`${gateway.baseUrl}/v1/models`, { headers: { "x-internal-auth": testKey.slice(0, -1) } }))
    }))

  it.scoped("refuses a missing key with 401, on every protected route", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      for (const path of ["/v1/models", "/v1/models/mock", "/v1/llm/models"]) {
        const answer = yield* call(`${gateway.baseUrl}${path}`)
        expectInvalidApiKey(answer)
        expect(envelopeOf(answer).error.message).toContain("Missing API key")
      }
      expectInvalidApiKey(
        yield* call(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: chatBody
        })
      )
      // another scheme than Bearer does not count as a key
      expectInvalidApiKey(yield* call(`${gateway.baseUrl}/v1/models`, { headers: { authorization: `Basic ${testKey}` } }))
      expectInvalidApiKey(yield* call(`${gateway.baseUrl}/v1/models`, { headers: { "x-internal-auth": "" } }))
    }))

  it.scoped("serves /health, /openapi.json and /docs without a key", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const health = yield* call(`${gateway.baseUrl}/health`)
      expect(health.status).toBe(200)
      expect((JSON.parse(health.text) as { status: string }).status).toBe("ok")
      const openapi = yield* call(`${gateway.baseUrl}/openapi.json`)
      expect(openapi.status).toBe(200)
      expect((JSON.parse(openapi.text) as { openapi: string }).openapi).toMatch(/^3\./)
      const docs = yield* call(`${gateway.baseUrl}/docs`)
      expect(docs.status).toBe(200)
      expect(docs.headers.get("content-type")).toContain("text/html")
    }))

  it.scoped("answers an unauthenticated garbage body with 401, not 400", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      for (const headers of [{}, { "x-internal-auth": "wrong" }]) {
        const answer = yield* call(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { ...headers, "content-type": "application/json" },
          body: "{this is not json"
        })
        expectInvalidApiKey(answer)
      }
      const schemaViolation = yield* call(`${gateway.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: 1, messages: "nope" })
      })
      expectInvalidApiKey(schemaViolation)
    }))

  it.scoped("never echoes the key in a response body or header", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const withKey = { "x-internal-auth": testKey, "content-type": "application/json" }
      const answers = [
        yield* call(`${gateway.baseUrl}/v1/models`, { headers: withKey }),
        yield* call(`${gateway.baseUrl}/v1/llm/models`, { headers: withKey }),
        yield* call(`${gateway.baseUrl}/v1/models/mock`, { headers: withKey }),
        yield* call(`${gateway.baseUrl}/v1/models/unknown`, { headers: withKey }),
        yield* call(`${gateway.baseUrl}/v1/chat/completions`, { method: "POST", headers: withKey, body: chatBody }),
        yield* call(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: withKey,
          body: JSON.stringify({ model: "mock", messages: [{ role: "user", content: "hi" }], stream: true })
        }),
        yield* call(`${gateway.baseUrl}/v1/chat/completions`, { method: "POST", headers: withKey, body: "{bad" }),
        yield* call(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: withKey,
          body: JSON.stringify({ model: "mock", messages: [{ role: "nobody", content: "x" }] })
        }),
        yield* call(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${testKey}x` },
          body: chatBody
        }),
        yield* call(`${gateway.baseUrl}/v1/models`, { headers: { "x-internal-auth": `${testKey}-wrong` } }),
        yield* call(`${gateway.baseUrl}/no/such/route`, { headers: withKey }),
        yield* call(`${gateway.baseUrl}/health`, { headers: withKey }),
        yield* call(`${gateway.baseUrl}/openapi.json`, { headers: withKey }),
        yield* call(`${gateway.baseUrl}/docs`, { headers: withKey })
      ]
      expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 404, 200, 200, 400, 400, 401, 401, 404, 200, 200, 200])
      for (const answer of answers) {
        expect(answer.text).not.toContain(testKey)
        for (const [name, value] of answer.headers) {
          expect(`${name}: ${value}`).not.toContain(testKey)
        }
      }
    }))
})

describe("x-api-key (what the Anthropic SDKs send)", () => {
  const operatorOnly = makeOperatorOnly(Redacted.make(testKey))
  const withKeys = makeWithKeys(Redacted.make(testKey), () => new Map())

  it("is a third header for the same keys, on both authenticators", () => {
    for (const authenticator of [operatorOnly, withKeys]) {
      expect(authenticator.authenticate({ "x-api-key": testKey })).toEqual(operator)
      expect(authenticator.authenticate({ "x-api-key": "wrong" })).toBeInstanceOf(Unauthorized)
      // a wrong x-api-key beside a right bearer token: the right key wins, as with x-internal-auth
      expect(authenticator.authenticate({ "x-api-key": "wrong", authorization: `Bearer ${testKey}` })).toEqual(operator)
      // a repeated header counts as absent
      expect(authenticator.authenticate({ "x-api-key": [testKey, testKey] })).toBeInstanceOf(Unauthorized)
    }
  })

  it.scopedLive("opens the OpenAI routes too, whose 401 stays OpenAI's envelope", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const ok = yield* call(`${gateway.baseUrl}/v1/chat/completions`, { method: "POST", headers: { "x-api-key": testKey, "content-type": "application/json" }, body: chatBody })
      expect(ok.status).toBe(200)
      expectInvalidApiKey(yield* call(`${gateway.baseUrl}/v1/models`, { headers: { "x-api-key": "wrong" } }))
    }))
})
