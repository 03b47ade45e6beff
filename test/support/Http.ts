/**
 * Speaking to an in-process gateway over a real socket with fetch: one call, its status, headers and whole text.
 */
import { Effect } from "effect"
import { expect } from "vitest"
import { testKey } from "./Gateway.js"
import type { ErrorEnvelope } from "./Sse.js"

/** A whole answer. */
export interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

/** Any request; the body is read to its end. */
export const call = (url: string, init: RequestInit = {}): Effect.Effect<Answer, unknown> =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(url, { ...init, signal })
      return { status: response.status, headers: response.headers, text: await response.text() }
    },
    catch: (error) => error
  })

/** POST /v1/chat/completions with the test key and a JSON body. */
export const postChat = (baseUrl: string, body: unknown, headers: Readonly<Record<string, string>> = {}) =>
  call(`${baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${testKey}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body)
  })

/** A one-message chat request for `model`. */
export const chatRequest = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: "user", content: "hi" }],
  ...extra
})

/** The envelope of an error answer, checked: exactly `{error:{message,type,param,code}}`, the given status and code. */
export const expectEnvelope = (answer: Answer, status: number, code?: string | null): ErrorEnvelope["error"] => {
  expect({ status: answer.status, text: answer.text }).toMatchObject({ status })
  expect(answer.headers.get("content-type")).toContain("application/json")
  const body = JSON.parse(answer.text) as ErrorEnvelope
  expect(Object.keys(body)).toEqual(["error"])
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"])
  if (code !== undefined) expect(body.error.code).toBe(code)
  return body.error
}
