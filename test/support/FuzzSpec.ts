/**
 * What the fuzz suites share: the run count (`FUZZ_RUNS`, read once here), OpenAI's published schemas compiled
 * with ajv (test/support/Spec.ts), and the checks every
 * client-visible body must pass.
 */
import { describeErrors, validatorFor } from "./Spec.js"

/** Runs per property: small by default (the whole fuzz suite stays well under a minute); `FUZZ_RUNS=1000` for long runs. */
export const fuzzRuns: number = (() => {
  const raw = process.env["FUZZ_RUNS"]
  const runs = raw === undefined || raw.trim() === "" ? 50 : Number(raw)
  if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`FUZZ_RUNS must be a positive integer, got ${JSON.stringify(raw)}`)
  return runs
})()

/** A share of `fuzzRuns` (at least one) for the properties whose every run costs a round trip or more. */
export const runsOf = (share: number): number => Math.max(1, Math.round(fuzzRuns * share))

/** The spec's component schemas the fuzz suites check against. */
export type SpecSchema = "CreateChatCompletionResponse" | "CreateChatCompletionStreamResponse" | "CompletionUsage" | "ErrorResponse"

/** What is wrong with `value` as the spec's `schema`, or `undefined` when it conforms. */
export const specViolation = (schema: SpecSchema, value: unknown): string | undefined => {
  const validate = validatorFor(schema)
  return validate(value) ? undefined : describeErrors(validate.errors)
}

/** Throws (with the validator's explanation and the value) unless `value` conforms to `schema`. */
export const expectSpec = (schema: SpecSchema, value: unknown): void => {
  const violation = specViolation(schema, value)
  if (violation !== undefined) throw new Error(`not a valid ${schema}:\n${violation}\nvalue: ${preview(value)}`)
}

/** A value as JSON, cut to a readable length. */
export const preview = (value: unknown, max = 2000): string => {
  let text: string
  try {
    text = typeof value === "string" ? value : JSON.stringify(value) ?? String(value)
  } catch {
    text = String(value)
  }
  return text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text
}

const isCount = (value: unknown): boolean => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/**
 * Throws unless every token count of a usage object (the three totals and each declared detail) is a non-negative
 * safe integer: stricter than the spec's `integer`, which 1e308 and -1 satisfy.
 */
export const expectSaneUsage = (usage: unknown): void => {
  if (usage === undefined || usage === null) return
  if (typeof usage !== "object" || Array.isArray(usage)) throw new Error(`usage is not an object: ${preview(usage)}`)
  const record = usage as Record<string, unknown>
  for (const field of ["prompt_tokens", "completion_tokens", "total_tokens"]) {
    if (!isCount(record[field])) throw new Error(`usage.${field} is not a count: ${preview(usage)}`)
  }
  const declared: Record<string, ReadonlyArray<string>> = {
    prompt_tokens_details: ["audio_tokens", "cached_tokens", "text_tokens", "image_tokens", "cache_write_tokens"],
    completion_tokens_details: ["accepted_prediction_tokens", "audio_tokens", "reasoning_tokens", "text_tokens", "rejected_prediction_tokens"]
  }
  for (const [details, fields] of Object.entries(declared)) {
    const value = record[details]
    if (value === undefined) continue
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`usage.${details} is not an object: ${preview(usage)}`)
    for (const field of fields) {
      const count = (value as Record<string, unknown>)[field]
      if (count !== undefined && !isCount(count)) throw new Error(`usage.${details}.${field} is not a count: ${preview(usage)}`)
    }
  }
}

/** A chunk as a client receives it (after JSON), valid against the spec, with sane usage. */
export const expectClientChunk = (chunk: unknown): void => {
  const wire = JSON.parse(JSON.stringify(chunk)) as unknown
  expectSpec("CreateChatCompletionStreamResponse", wire)
  expectSaneUsage((chunk as { usage?: unknown }).usage)
}

/** A completion as a client receives it (after JSON), valid against the spec, with sane usage. */
export const expectClientCompletion = (completion: unknown): void => {
  const wire = JSON.parse(JSON.stringify(completion)) as unknown
  expectSpec("CreateChatCompletionResponse", wire)
  expectSaneUsage((completion as { usage?: unknown }).usage)
}

/** Throws unless `text` is exactly OpenAI's error envelope: `{"error":{"message","type","param","code"}}`, nothing else. */
export const expectEnvelope = (text: string): { readonly message: string; readonly type: string; readonly param: string | null; readonly code: string | null } => {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new Error(`an error body that is not JSON: ${preview(text)}`)
  }
  expectSpec("ErrorResponse", body)
  const outer = body as Record<string, unknown>
  if (Object.keys(outer).join(",") !== "error") throw new Error(`an error body with keys other than "error": ${preview(text)}`)
  const error = outer["error"] as Record<string, unknown>
  const keys = Object.keys(error).sort().join(",")
  if (keys !== "code,message,param,type") throw new Error(`an error object with keys ${keys}: ${preview(text)}`)
  if (typeof error["message"] !== "string" || typeof error["type"] !== "string") throw new Error(`message and type must be strings: ${preview(text)}`)
  for (const field of ["param", "code"]) {
    if (error[field] !== null && typeof error[field] !== "string") throw new Error(`${field} must be a string or null: ${preview(text)}`)
  }
  return error as { message: string; type: string; param: string | null; code: string | null }
}

/** Anthropic's envelope, exactly (what /v1/messages answers with). */
export const expectAnthropicEnvelope = (text: string): void => {
  const body = JSON.parse(text) as { type: unknown; error: { type: unknown; message: unknown } }
  if (Object.keys(body).sort().join(",") !== "error,type" || body.type !== "error") throw new Error(`not Anthropic's envelope: ${preview(text)}`)
  if (Object.keys(body.error).sort().join(",") !== "message,type") throw new Error(`not Anthropic's error object: ${preview(text)}`)
  if (typeof body.error.type !== "string" || typeof body.error.message !== "string") throw new Error(`not Anthropic's error fields: ${preview(text)}`)
}
