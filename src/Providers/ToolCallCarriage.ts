/**
 * What must come back with a tool call, carried inside the tool call's id.
 *
 * Gemini wants each function call's `thoughtSignature` back on the next turn, and Anthropic (with extended
 * thinking) the signed thinking blocks that preceded its tool calls. Clients rebuild the assistant message
 * themselves before the next turn, and the only field every SDK keeps is the tool call's `id` (the openai SDK's
 * `runTools` drops every other field; the AI SDK drops unknown ones). So the gateway issues ids that carry it:
 *
 *     <upstream id>.lp1<kind>.<payload>.<check>
 *
 * `kind` is `g` (a Gemini thought signature) or `a` (Anthropic thinking blocks); `payload` is the data as JSON,
 * deflated, in base64url; `check` is the first 16 base64url characters of the SHA-256 of everything before it.
 * An id is at most `maxCarriedIdChars` long: what would not fit is not carried (the response still shows it in
 * `thinking_blocks` / `extra_content`). On the way back an id is never trusted: one that is too long, does not
 * have this shape, fails its check, does not inflate within a bound, or does not decode to the kind's shape is
 * read as carrying nothing, and only its upstream part (everything before the marker) is sent upstream.
 *
 * Pure: the same input always gives the same id.
 */
import { Either, Schema } from "effect"
import { createHash } from "node:crypto"
import { deflateRawSync, inflateRawSync } from "node:zlib"
import { ThinkingBlock } from "../OpenAi/Schemas.js"

/** What one tool call id can carry. */
export type Carried =
  | { readonly kind: "gemini"; readonly thoughtSignature: string }
  | { readonly kind: "anthropic"; readonly thinkingBlocks: ReadonlyArray<ThinkingBlock> }

/** The longest id the gateway issues, and the longest it reads a carriage from. */
export const maxCarriedIdChars = 32 * 1024
/** The longest upstream id a carriage is appended to. */
const maxBaseChars = 256
/** The most a payload may inflate to when read back. */
const maxInflatedBytes = 256 * 1024
const checkChars = 16
const version = "lp1"
const base64url = /^[A-Za-z0-9_-]+$/
/** A thought signature is base64 (either alphabet, padded or not). */
const signaturePattern = /^[A-Za-z0-9+/_-]+=*$/

const Payloads = {
  g: Schema.Struct({ s: Schema.String.pipe(Schema.pattern(signaturePattern)) }),
  a: Schema.Struct({ b: Schema.Array(ThinkingBlock).pipe(Schema.minItems(1), Schema.maxItems(64)) })
} as const

const checkOf = (text: string): string => createHash("sha256").update(text).digest("base64url").slice(0, checkChars)

/** `base` with `carried` appended, or `base` alone when it would not fit. */
export const carry = (base: string, carried: Carried): string => {
  if (base.length === 0 || base.length > maxBaseChars) return base
  const [kind, data] =
    carried.kind === "gemini" ? (["g", { s: carried.thoughtSignature }] as const) : (["a", { b: carried.thinkingBlocks }] as const)
  const payload = deflateRawSync(Buffer.from(JSON.stringify(data), "utf8")).toString("base64url")
  const head = `${base}.${version}${kind}.${payload}`
  const id = `${head}.${checkOf(head)}`
  return id.length <= maxCarriedIdChars ? id : base
}

/** An id split into the upstream's own id and, when it is intact, what it carries. */
export interface Uncarried {
  readonly base: string
  readonly carried?: Carried | undefined
}

const decodePayload = (kind: "g" | "a", payload: string): Carried | undefined => {
  let json: unknown
  try {
    const bytes = inflateRawSync(Buffer.from(payload, "base64url"), { maxOutputLength: maxInflatedBytes })
    json = JSON.parse(bytes.toString("utf8"))
  } catch {
    return undefined
  }
  if (kind === "g") {
    const decoded = Schema.decodeUnknownEither(Payloads.g)(json)
    return Either.isRight(decoded) ? { kind: "gemini", thoughtSignature: decoded.right.s } : undefined
  }
  const decoded = Schema.decodeUnknownEither(Payloads.a)(json)
  return Either.isRight(decoded) ? { kind: "anthropic", thinkingBlocks: decoded.right.b } : undefined
}

interface Parts {
  readonly base: string
  readonly kind: "g" | "a"
  readonly head: string
  readonly payload: string
  readonly check: string
}

/** The parts of an id of the carriage's shape, checked for shape only. */
const split = (id: string): Parts | undefined => {
  if (id.length > maxCarriedIdChars) return undefined
  const last = id.lastIndexOf(".")
  const second = last > 0 ? id.lastIndexOf(".", last - 1) : -1
  const third = second > 0 ? id.lastIndexOf(".", second - 1) : -1
  if (third <= 0) return undefined
  const tag = id.slice(third + 1, second)
  if (tag !== `${version}g` && tag !== `${version}a`) return undefined
  const payload = id.slice(second + 1, last)
  const check = id.slice(last + 1)
  if (check.length !== checkChars || !base64url.test(check) || payload.length === 0 || !base64url.test(payload)) return undefined
  return { base: id.slice(0, third), kind: tag === `${version}g` ? "g" : "a", head: id.slice(0, last), payload, check }
}

/** The upstream's own id within an id the gateway may have issued (the whole id when it carries nothing). */
export const baseOf = (id: string): string => split(id)?.base ?? id

/**
 * Reads an id a client sent back. An id without the marker is all base; one with the marker loses it (the
 * upstream never sees the carriage) and yields its carriage only when every check passes.
 */
export const uncarry = (id: string): Uncarried => {
  const parts = split(id)
  if (parts === undefined) return { base: id }
  if (checkOf(parts.head) !== parts.check) return { base: parts.base }
  const carried = decodePayload(parts.kind, parts.payload)
  return carried === undefined ? { base: parts.base } : { base: parts.base, carried }
}
