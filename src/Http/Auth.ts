/**
 * Authentication: `x-internal-auth: <key>` or `Authorization: Bearer <key>` (what the OpenAI SDKs send),
 * compared in constant time with `INTERNAL_API_KEY`.
 */
import { HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, HttpServerRequest } from "@effect/platform"
import { Effect, Layer, Redacted, Schema } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { ProxyConfig } from "../Config.js"
import { Unauthorized } from "../Errors.js"
import { ErrorBody } from "../OpenAi/Schemas.js"

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

/** Compares a presented key with the expected one in constant time (digests have equal lengths). */
export const keysMatch = (presented: string, expected: Redacted.Redacted<string>): boolean =>
  presented.length > 0 && timingSafeEqual(digest(presented), digest(Redacted.value(expected)))

/** `keysMatch` with the expected key's digest computed once, for the per-request check. */
const matcherFor = (expected: Redacted.Redacted<string>) => {
  const expectedDigest = digest(Redacted.value(expected))
  return (presented: string): boolean => presented.length > 0 && timingSafeEqual(digest(presented), expectedDigest)
}

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
const keyHeaders = ["x-internal-auth", "authorization"] as const

/** Checks either header against `INTERNAL_API_KEY`; an absent header arrives as an empty value. */
export const layer: Layer.Layer<Authentication, never, ProxyConfig> = Layer.effect(
  Authentication,
  Effect.map(ProxyConfig, (config) => {
    const matches = matcherFor(config.internalApiKey)
    const check = (credential: Redacted.Redacted<string>) => {
      const presented = Redacted.value(credential)
      // Schemes are tried in order and the last failure is reported: an empty credential for this scheme only
      // means "missing" when the other header is absent too, else a wrong key would be reported as missing.
      if (presented === "") {
        return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
          Effect.fail(keyHeaders.some((name) => (request.headers[name] ?? "") !== "") ? invalid : missing)
        )
      }
      return matches(presented) ? Effect.void : Effect.fail(invalid)
    }
    return { internalKey: check, bearer: check }
  })
)
