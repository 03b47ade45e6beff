/**
 * Authentication: `x-internal-auth: <key>`, `Authorization: Bearer <key>` (what the OpenAI SDKs and Claude Code with
 * `ANTHROPIC_AUTH_TOKEN` send) or `x-api-key: <key>` (what the Anthropic SDKs send), compared in constant time. The `Authenticator` service decides who a request is; every transport (the chat fast path and
 * the HttpApi middleware) asks the same service, so a swapped Auth layer guards every route alike.
 */
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { ProxyConfig } from "../Config.js"
import { sha256Hex } from "../Governance/Keys.js"
import type { VirtualKey } from "../Governance/Keys.js"
import { ModelRegistry } from "../Router/Registry.js"
import { Unauthorized } from "../Errors.js"
import { ErrorBody } from "../OpenAi/Schemas.js"
import { MessagesErrorBody } from "../Anthropic/Wire.js"
import { headerOf } from "./Edge.js"
import type { RequestHeaders } from "./Edge.js"

/** Who is calling: what logs, metrics and usage name (never the secret). */
export interface Caller {
  /** `operator` for `INTERNAL_API_KEY`, else the virtual key's id. */
  readonly id: string
  /** The operator key: every model, no limits, and the admin routes. */
  readonly operator: boolean
  /** The virtual key, for any other caller. */
  readonly key: VirtualKey | undefined
}

/** The caller of the operator key. */
export const operator: Caller = { id: "operator", operator: true, key: undefined }

/** Whether a caller may use the public model `name`. */
export const mayUse = (caller: Caller, name: string): boolean => caller.key === undefined || caller.key.allows(name)

/** Decides who a request is from its headers alone (synchronously: it runs on every request). */
export interface AuthenticatorService {
  readonly authenticate: (headers: RequestHeaders) => Caller | Unauthorized
}

/** The authenticator service. */
export class Authenticator extends Context.Tag("llm-proxy/Authenticator")<Authenticator, AuthenticatorService>() {}

/** The caller of the current request, as the HttpApi middleware found it. */
export class CurrentCaller extends Context.Tag("llm-proxy/CurrentCaller")<CurrentCaller, Caller>() {}

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

/** SHA-256 of a key: what keys are compared (and, for virtual keys, stored) as. */
export const digest = (value: string): Buffer => createHash("sha256").update(value).digest()

/** A constant-time matcher for one expected key, its digest computed once (digests have equal lengths). */
const matcherFor = (expected: Redacted.Redacted<string>) => {
  const expectedDigest = digest(Redacted.value(expected))
  return (presented: string): boolean => presented.length > 0 && timingSafeEqual(digest(presented), expectedDigest)
}

/** Compares a presented key with the expected one in constant time. */
export const keysMatch = (presented: string, expected: Redacted.Redacted<string>): boolean => matcherFor(expected)(presented)

const missing = new Unauthorized({
  message: "Missing API key: send it as 'x-internal-auth: <key>', 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
})
const invalid = new Unauthorized({ message: "Incorrect API key provided" })
const bearerPrefix = /^Bearer +/i

/**
 * An authenticator for one key (the operator's): with the expected key's digest computed once, `x-internal-auth`
 * or a bearer token must match. A header present but wrong is "incorrect", none at all is "missing".
 */
export const makeOperatorOnly = (expected: Redacted.Redacted<string>): AuthenticatorService => {
  const matches = matcherFor(expected)
  return {
    authenticate: (headers) => {
      const internalKey = headerOf(headers, "x-internal-auth") ?? ""
      const authorization = headerOf(headers, "authorization") ?? ""
      const apiKey = headerOf(headers, "x-api-key") ?? ""
      if (internalKey === "" && authorization === "" && apiKey === "") return missing
      if (matches(internalKey) || matches(apiKey)) return operator
      return bearerPrefix.test(authorization) && matches(authorization.replace(bearerPrefix, "")) ? operator : invalid
    }
  }
}

/**
 * The operator key and the registry's virtual keys (read at each request, so a reload takes effect at once): the
 * operator key compared in constant time, a virtual key found by the SHA-256 of what is presented.
 */
export const makeWithKeys = (
  expected: Redacted.Redacted<string>,
  keys: () => ReadonlyMap<string, VirtualKey>
): AuthenticatorService => {
  const matchesOperator = matcherFor(expected)
  const callerOf = (presented: string): Caller | undefined => {
    if (presented.length === 0) return undefined
    if (matchesOperator(presented)) return operator
    const ring = keys()
    if (ring.size === 0) return undefined
    const key = ring.get(sha256Hex(presented))
    return key === undefined ? undefined : { id: key.id, operator: false, key }
  }
  return {
    authenticate: (headers) => {
      const internalKey = headerOf(headers, "x-internal-auth") ?? ""
      const authorization = headerOf(headers, "authorization") ?? ""
      const apiKey = headerOf(headers, "x-api-key") ?? ""
      if (internalKey === "" && authorization === "" && apiKey === "") return missing
      const byHeader = callerOf(internalKey) ?? callerOf(apiKey)
      if (byHeader !== undefined) return byHeader
      return (bearerPrefix.test(authorization) ? callerOf(authorization.replace(bearerPrefix, "")) : undefined) ?? invalid
    }
  }
}

/** `INTERNAL_API_KEY` (the operator) and the registry's virtual keys. */
export const layer: Layer.Layer<Authenticator, never, ProxyConfig | ModelRegistry> = Layer.effect(
  Authenticator,
  Effect.gen(function* () {
    const config = yield* ProxyConfig
    const registry = yield* ModelRegistry
    return makeWithKeys(config.internalApiKey, () => registry.current().keys.byDigest)
  })
)

/** The auth middleware of the HttpApi; every group except health declares it. It provides the caller. */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("llm-proxy/Authentication", {
  failure: UnauthorizedResponse,
  provides: CurrentCaller,
  security: {
    internalKey: HttpApiSecurity.apiKey({ key: "x-internal-auth", in: "header" }),
    bearer: HttpApiSecurity.bearer,
    apiKey: HttpApiSecurity.apiKey({ key: "x-api-key", in: "header" })
  }
}) {}

/** Unauthorized on a Messages endpoint: Anthropic's envelope, status 401. */
export const MessagesUnauthorizedResponse = Schema.transform(
  MessagesErrorBody,
  Schema.declare((value: unknown): value is Unauthorized => value instanceof Unauthorized),
  {
    strict: true,
    decode: (body) => new Unauthorized({ message: body.error.message }),
    encode: (error) => ({ type: "error" as const, error: { type: "authentication_error", message: error.message } })
  }
).annotations(HttpApiSchema.annotations({ status: 401, description: "Missing or invalid API key" }))

/** The auth middleware of the Messages endpoints: the same keys and headers, its 401 in Anthropic's envelope. */
export class MessagesAuthentication extends HttpApiMiddleware.Tag<MessagesAuthentication>()("llm-proxy/MessagesAuthentication", {
  failure: MessagesUnauthorizedResponse,
  provides: CurrentCaller,
  security: {
    apiKey: HttpApiSecurity.apiKey({ key: "x-api-key", in: "header" }),
    bearer: HttpApiSecurity.bearer,
    internalKey: HttpApiSecurity.apiKey({ key: "x-internal-auth", in: "header" })
  }
}) {}

/** The middleware over the Authenticator: either header is checked, whichever scheme the platform tries first. */
export const middlewareLayer: Layer.Layer<Authentication, never, Authenticator> = Layer.effect(
  Authentication,
  Effect.map(Authenticator, (authenticator) => {
    const checkRequest = () =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const outcome = authenticator.authenticate(request.headers)
        return outcome instanceof Unauthorized ? Effect.fail(outcome) : Effect.succeed(outcome)
      })
    return { internalKey: checkRequest, bearer: checkRequest, apiKey: checkRequest }
  })
)

/** The Messages endpoints' middleware over the same Authenticator. */
export const messagesMiddlewareLayer: Layer.Layer<MessagesAuthentication, never, Authenticator> = Layer.effect(
  MessagesAuthentication,
  Effect.map(Authenticator, (authenticator) => {
    const checkRequest = () =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const outcome = authenticator.authenticate(request.headers)
        return outcome instanceof Unauthorized ? Effect.fail(outcome) : Effect.succeed(outcome)
      })
    return { internalKey: checkRequest, bearer: checkRequest, apiKey: checkRequest }
  })
)
