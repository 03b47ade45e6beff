import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { HttpServerResponse } from "@effect/platform"
import {
  InternalError,
  InvalidRequest,
  LengthRequired,
  ModelNotFound,
  PayloadTooLarge,
  RouteNotFound,
  ShuttingDown,
  Unauthorized
} from "../../src/Errors.js"
import * as HttpApi from "@effect/platform/HttpApi"
import { Api } from "../../src/Http/Api.js"
import { describeError, errorResponse, servedEndpoints } from "../../src/Http/Errors.js"
import type { ErrorDescription, GatewayError } from "../../src/Http/Errors.js"
import { ProviderError } from "../../src/Providers/Provider.js"
import type { ProviderErrorReason } from "../../src/Providers/Provider.js"

const providerError = (reason: ProviderErrorReason, extra: Partial<ConstructorParameters<typeof ProviderError>[0]> = {}) =>
  new ProviderError({ reason, message: `upstream said: ${reason}`, provider: "openai", ...extra })

const expectEnvelope = (description: ErrorDescription, status: number, type: string, code: string | null) => {
  expect(description.status).toBe(status)
  expect(description.body.error.type).toBe(type)
  expect(description.body.error.code).toBe(code)
  expect(typeof description.body.error.message).toBe("string")
  expect(description.body.error.message.length).toBeGreaterThan(0)
  expect(Object.keys(description.body.error).sort()).toEqual(["code", "message", "param", "type"])
}

describe("describeError: the gateway's own failures", () => {
  it("InvalidRequest with a param is 400 invalid_request, the param kept", () => {
    const description = describeError(new InvalidRequest({ message: "Invalid value for 'temperature'", param: "temperature" }))
    expectEnvelope(description, 400, "invalid_request_error", "invalid_request")
    expect(description.body.error.param).toBe("temperature")
    expect(description.body.error.message).toBe("Invalid value for 'temperature'")
    expect(description.headers).toEqual({})
  })

  it("InvalidRequest without a param (malformed JSON) is 400 invalid_json, param null", () => {
    const description = describeError(new InvalidRequest({ message: "We could not parse the JSON body", param: null }))
    expectEnvelope(description, 400, "invalid_request_error", "invalid_json")
    expect(description.body.error.param).toBeNull()
  })

  it("Unauthorized is 401 invalid_api_key", () => {
    const description = describeError(new Unauthorized({ message: "Incorrect API key provided" }))
    expectEnvelope(description, 401, "invalid_request_error", "invalid_api_key")
    expect(description.body.error.param).toBeNull()
    expect(description.body.error.message).toBe("Incorrect API key provided")
  })

  it("ModelNotFound is 404 model_not_found with param model and the name in the message", () => {
    const description = describeError(new ModelNotFound({ model: "gpt-17" }))
    expectEnvelope(description, 404, "invalid_request_error", "model_not_found")
    expect(description.body.error.param).toBe("model")
    expect(description.body.error.message).toContain("'gpt-17'")
  })

  it("RouteNotFound is 404 unknown_url naming the method and path", () => {
    const description = describeError(new RouteNotFound({ method: "DELETE", path: "/v1/nothing" }))
    expectEnvelope(description, 404, "invalid_request_error", "unknown_url")
    expect(description.body.error.message).toMatch(/^Invalid URL \(DELETE \/v1\/nothing\)\. This gateway serves /)
  })

  it("RouteNotFound's message names every endpoint of the Api, and the document and docs routes", () => {
    const endpoints: Array<string> = ["GET /openapi.json", "GET /docs"]
    HttpApi.reflect(Api, {
      onGroup: () => {},
      onEndpoint: ({ endpoint }) => endpoints.push(`${endpoint.method} ${endpoint.path.replace(/:(\w+)/g, "{$1}")}`)
    })
    expect(endpoints).toContain("POST /v1/embeddings")
    const message = describeError(new RouteNotFound({ method: "GET", path: "/v1/nothing" })).body.error.message
    for (const endpoint of endpoints) expect({ endpoint, named: message.includes(endpoint) }).toEqual({ endpoint, named: true })
    expect(servedEndpoints.split(/, | and /)).toHaveLength(endpoints.length)
  })

  it("LengthRequired is 411", () => {
    expectEnvelope(describeError(new LengthRequired()), 411, "invalid_request_error", "length_required")
  })

  it("PayloadTooLarge is 413 with the limit in the message and the connection closed", () => {
    const description = describeError(new PayloadTooLarge({ limit: 4096 }))
    expectEnvelope(description, 413, "invalid_request_error", "request_too_large")
    expect(description.body.error.message).toContain("4096")
    expect(description.headers["connection"]).toBe("close")
  })

  it("ShuttingDown is 503 server_shutting_down with Retry-After and the connection closed", () => {
    const description = describeError(new ShuttingDown())
    expectEnvelope(description, 503, "server_error", "server_shutting_down")
    expect(description.headers["retry-after"]).toBe("1")
    expect(description.headers["connection"]).toBe("close")
  })

  it("InternalError is 500 with the request id and nothing else", () => {
    const description = describeError(new InternalError({ requestId: "req-42" }))
    expectEnvelope(description, 500, "server_error", "internal_error")
    expect(description.body.error.message).toContain("req-42")
    expect(description.body.error.param).toBeNull()
  })
})

describe("describeError: every ProviderError reason", () => {
  it("InvalidRequest keeps the upstream 4xx status, param and code", () => {
    for (const status of [400, 413, 422]) {
      const description = describeError(
        providerError("InvalidRequest", { status, param: "messages", code: "context_length_exceeded" })
      )
      expectEnvelope(description, status, "invalid_request_error", "context_length_exceeded")
      expect(description.body.error.param).toBe("messages")
      expect(description.body.error.message).toBe("upstream said: InvalidRequest")
    }
  })

  it("InvalidRequest without a 4xx upstream status is 400, param and code null", () => {
    for (const status of [undefined, 200, 500]) {
      const description = describeError(providerError("InvalidRequest", { status }))
      expectEnvelope(description, 400, "invalid_request_error", null)
      expect(description.body.error.param).toBeNull()
    }
  })

  it("NotFound is 404 model_not_found unless the upstream gave a code", () => {
    expectEnvelope(describeError(providerError("NotFound", { status: 404 })), 404, "invalid_request_error", "model_not_found")
    expectEnvelope(
      describeError(providerError("NotFound", { status: 404, code: "deployment_not_found" })),
      404,
      "invalid_request_error",
      "deployment_not_found"
    )
  })

  it("ContentPolicy is 400 content_policy_violation", () => {
    expectEnvelope(describeError(providerError("ContentPolicy")), 400, "invalid_request_error", "content_policy_violation")
  })

  it("RateLimited is 429 with Retry-After in whole seconds, at least 1", () => {
    const cases: ReadonlyArray<readonly [number | undefined, string]> = [
      [7000, "7"],
      [1500, "2"],
      [200, "1"],
      [0, "1"],
      [undefined, "1"]
    ]
    for (const [retryAfterMs, header] of cases) {
      const description = describeError(providerError("RateLimited", { status: 429, retryAfterMs }))
      expectEnvelope(description, 429, "rate_limit_error", "rate_limit_exceeded")
      expect(description.headers["retry-after"]).toBe(header)
    }
  })

  it("QuotaExhausted is 429 insufficient_quota without Retry-After (retrying will not help)", () => {
    const description = describeError(providerError("QuotaExhausted", { status: 429 }))
    expectEnvelope(description, 429, "insufficient_quota", "insufficient_quota")
    expect(description.headers["retry-after"]).toBeUndefined()
  })

  it("Authentication is 502: the gateway's upstream credential failed, not the client's", () => {
    const leaky = providerError("Authentication", {
      status: 401,
      message: "Incorrect API key provided: sk-proj-abcd****wxyz. You can find your API key at https://platform.openai.com"
    })
    const description = describeError(leaky)
    expectEnvelope(description, 502, "upstream_error", "upstream_authentication_failed")
    expect(description.body.error.message).not.toContain("sk-proj")
    expect(description.body.error.message).not.toContain("Incorrect API key")
    expect(description.body.error.message).toContain("openai")
  })

  it("Unavailable is 503 when the upstream said 503, else 502", () => {
    expectEnvelope(describeError(providerError("Unavailable", { status: 503 })), 503, "upstream_error", "upstream_unavailable")
    for (const status of [500, 502, 504, 529, undefined]) {
      expectEnvelope(describeError(providerError("Unavailable", { status })), 502, "upstream_error", "upstream_unavailable")
    }
  })

  it("MalformedResponse is 502", () => {
    expectEnvelope(describeError(providerError("MalformedResponse")), 502, "upstream_error", "upstream_malformed_response")
  })

  it("Timeout is 504 timeout_error", () => {
    const description = describeError(providerError("Timeout"))
    expectEnvelope(description, 504, "timeout_error", "upstream_timeout")
    expect(description.headers).toEqual({})
  })

  it("covers every reason with a 4xx or 5xx status", () => {
    const reasons: ReadonlyArray<ProviderErrorReason> = [
      "RateLimited",
      "QuotaExhausted",
      "Authentication",
      "InvalidRequest",
      "NotFound",
      "ContentPolicy",
      "Unavailable",
      "Timeout",
      "MalformedResponse"
    ]
    const statuses = reasons.map((reason) => describeError(providerError(reason)).status)
    for (const status of statuses) expect(status >= 400 && status < 600).toBe(true)
    // the caller's mistakes are 4xx, upstream trouble is 5xx (429s aside)
    expect(statuses).toEqual([429, 429, 502, 400, 404, 400, 502, 504, 502])
  })
})

describe("errorResponse", () => {
  const render = (error: GatewayError) =>
    Effect.gen(function* () {
      const response = errorResponse(error)
      const web = HttpServerResponse.toWeb(response)
      return { status: web.status, headers: web.headers, body: (yield* Effect.promise(() => web.json())) as unknown }
    })

  it.effect("renders the status, headers and the envelope as JSON", () =>
    Effect.gen(function* () {
      const error = providerError("RateLimited", { status: 429, retryAfterMs: 3000 })
      const rendered = yield* render(error)
      expect(rendered.status).toBe(429)
      expect(rendered.headers.get("retry-after")).toBe("3")
      expect(rendered.headers.get("content-type")).toContain("application/json")
      expect(rendered.body).toEqual(describeError(error).body)
    }))

  it.effect("renders a 413 that closes the connection", () =>
    Effect.gen(function* () {
      const rendered = yield* render(new PayloadTooLarge({ limit: 1024 }))
      expect(rendered.status).toBe(413)
      expect(rendered.headers.get("connection")).toBe("close")
      expect(rendered.body).toEqual({
        error: {
          message: "Request body exceeds the limit of 1024 bytes",
          type: "invalid_request_error",
          param: null,
          code: "request_too_large"
        }
      })
    }))
})
