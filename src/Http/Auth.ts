/**
 * Authentication: `x-internal-auth: <key>` or `Authorization: Bearer <key>` (what the OpenAI SDKs send),
 * compared in constant time with `INTERNAL_API_KEY`.
 */
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Effect, Layer, Redacted, Schema } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { ProxyConfig } from "../Config.js"
import { Unauthorized } from "../Errors.js"
import { ErrorBody } from "../OpenAi/Schemas.js"
import { headerOf } from "./Edge.js"
import type { RequestHeaders } from "./Edge.js"

/** Unauthorized on the wire: OpenAI's envelope with status 401. */
export const UnauthorizedResponse = Schema.transform(
  ErrorBody,
  Schema.declare((value: unknown): value is Unauthorized => value instanceof Unauthorized),
  {
    strict: true,
    decode: (body) => new Unauthorized({ message: body.error.message }),
    encode: (error) => ({
      error: { message: error.message, type: "invalid_request_error", param: null, code: "invalid_api_key" }
    })
  }
).annotations(HttpApiSchema.annotations({ status: 401, description: "Missing or invalid API key" }))

const digest = (value: string): Buffer => createHash("sha256").update(value).digest()

/** A constant-time matcher for one expected key, its digest computed once (digests have equal lengths). */
const matcherFor = (expected: Redacted.Redacted<string>) => {
  const expectedDigest = digest(Redacted.value(expected))
  return (presented: string): boolean => presented.length > 0 && timingSafeEqual(digest(presented), expectedDigest)
}

/** Compares a presented key with the expected one in constant time. */
export const keysMatch = (presented: string, expected: Redacted.Redacted<string>): boolean => matcherFor(expected)(presented)

/** The auth middleware; every group except health declares it. */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("llm-proxy/Authentication", {
  failure: UnauthorizedResponse,
  security: {
    internalKey: HttpApiSecurity.apiKey({ key: "x-internal-auth", in: "header" }),
    bearer: HttpApiSecurity.bearer
  }
}) {}

const missing = new Unauthorized({
  message: "Missing API key: send it as 'x-internal-auth: <key>' or 'Authorization: Bearer <key>'"
})
const invalid = new Unauthorized({ message: "Incorrect API key provided" })
const bearerPrefix = /^Bearer +/i

/**
 * The per-request check, with the expected key's digest computed once: `x-internal-auth` or a bearer token must
 * match; `undefined` when one does. Either header present but wrong is "incorrect", neither is "missing".
 */
export const makeCheck = (expected: Redacted.Redacted<string>) => {
  const matches = matcherFor(expected)
  return (headers: RequestHeaders): Unauthorized | undefined => {
    const internalKey = headerOf(headers, "x-internal-auth") ?? ""
    const authorization = headerOf(headers, "authorization") ?? ""
    if (internalKey === "" && authorization === "") return missing
    if (matches(internalKey)) return undefined
    return bearerPrefix.test(authorization) && matches(authorization.replace(bearerPrefix, "")) ? undefined : invalid
  }
}

/** Checks either header against `INTERNAL_API_KEY`, whichever scheme the platform tries first. */
export const layer: Layer.Layer<Authentication, never, ProxyConfig> = Layer.effect(
  Authentication,
  Effect.map(ProxyConfig, (config) => {
    const check = makeCheck(config.internalApiKey)
    const checkRequest = () =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const failure = check(request.headers)
        return failure === undefined ? Effect.void : Effect.fail(failure)
      })
    return { internalKey: checkRequest, bearer: checkRequest }
  })
)
