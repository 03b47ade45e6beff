/**
 * Speaking to an in-process gateway over a real socket with fetch: one call, its status, headers and whole text;
 * the checks of OpenAI's error envelope.
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

/** GET with the test key; `headers` add to it or replace it. */
export const get = (url: string, headers: Readonly<Record<string, string>> = {}) =>
  call(url, { headers: { authorization: `Bearer ${testKey}`, ...headers } })

/** POST a body sent exactly as given (broken JSON, say) with the test key and a JSON content type. */
export const postRaw = (url: string, body: string, headers: Readonly<Record<string, string>> = {}) =>
  call(url, {
    method: "POST",
    headers: { authorization: `Bearer ${testKey}`, "content-type": "application/json", ...headers },
    body
  })

/** POST /v1/chat/completions with the test key and a JSON body. */
export const postChat = (baseUrl: string, body: unknown, headers: Readonly<Record<string, string>> = {}) =>
  postRaw(`${baseUrl}/v1/chat/completions`, JSON.stringify(body), headers)

/** POST /v1/embeddings with the test key and a JSON body. */
export const postEmbeddings = (baseUrl: string, body: unknown, headers: Readonly<Record<string, string>> = {}) =>
  postRaw(`${baseUrl}/v1/embeddings`, JSON.stringify(body), headers)

/** A one-message chat request for `model`. */
export const chatRequest = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: "user", content: "hi" }],
  ...extra
})

/**
 * The envelope of an error answer, checked: the given status, JSON, exactly `{error:{message,type,param,code}}` with
 * a message, and the given code and param (unchecked when left out).
 */
export const expectEnvelope = (answer: Answer, status: number, code?: string | null, param?: string | null): ErrorEnvelope["error"] => {
  expect({ status: answer.status, text: answer.text }).toMatchObject({ status })
  expect(answer.headers.get("content-type")).toContain("application/json")
  const body = JSON.parse(answer.text) as ErrorEnvelope
  expect(Object.keys(body)).toEqual(["error"])
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"])
  expect(body.error.message.length).toBeGreaterThan(0)
  if (code !== undefined) expect(body.error.code).toBe(code)
  if (param !== undefined) expect(body.error.param).toBe(param)
  return body.error
}

/** POSTs `body` (JSON) to a streaming endpoint, reads the answer until `text` arrives, then aborts: a client that leaves. */
export const readThenAbort = (url: string, headers: Readonly<Record<string, string>>, body: unknown, text: string) =>
  Effect.tryPromise(async () => {
    const controller = new AbortController()
    const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body), signal: controller.signal })
    const reader = response.body!.getReader()
    let seen = ""
    while (!seen.includes(text)) {
      const { done, value } = await reader.read()
      if (done) throw new Error(`the stream ended before ${text}: ${seen}`)
      seen += new TextDecoder().decode(value)
    }
    controller.abort()
    return seen
  })
