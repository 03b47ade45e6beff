/**
 * The answers of the soak upstream: a healthy OpenAI-compatible one and every fault the soak injects. Each fault
 * says which requests it fits (`json`: `stream: false`, `stream`: `stream: true`) and how often it is drawn.
 *
 * Big payloads are built once, on first use, and written with backpressure; anything that keeps writing or waits
 * stops when the gateway closes the connection, so the upstream never holds more than the socket buffers.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { gzipSync } from "node:zlib"
import type { FaultName } from "./protocol.js"

export type Mode = "json" | "stream"

export interface Exchange {
  readonly mode: Mode
  /** The request asked for `stream_options.include_usage`. */
  readonly includeUsage: boolean
  readonly request: IncomingMessage
  readonly response: ServerResponse
  /** The key the registry gives the gateway for this upstream. */
  readonly upstreamKey: string
  /** Where redirects point. */
  readonly trapOrigin: string
}

export interface Fault {
  readonly name: FaultName
  readonly modes: ReadonlyArray<Mode>
  /** Relative frequency among the faults that fit a request. */
  readonly weight: number
  readonly serve: (exchange: Exchange) => void
}

const created = 1_700_000_000
const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(Math.random() * items.length)] as A
const lazy = <A>(make: () => A): (() => A) => {
  let value: A | undefined
  return () => (value ??= make())
}

// ---------------------------------------------------------------------------------------------------------
// Healthy bodies

const usageOk = { prompt_tokens: 12, completion_tokens: 20, total_tokens: 32 }

const completionJson = (usage: string = JSON.stringify(usageOk)): string =>
  `{"id":"chatcmpl-soak","object":"chat.completion","created":${created},"model":"soak","choices":[{"index":0,"message":{"role":"assistant","content":"A healthy answer from the soak upstream.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":${usage}}`

const chunkJson = (delta: object, finishReason: string | null, extra = ""): string =>
  `{"id":"chatcmpl-soak","object":"chat.completion.chunk","created":${created},"model":"soak","choices":[{"index":0,"delta":${JSON.stringify(delta)},"logprobs":null,"finish_reason":${JSON.stringify(finishReason)}}]${extra}}`

const frame = (data: string): string => `data: ${data}\n\n`
const doneFrame = frame("[DONE]")
const usageFrame = (usage: string) =>
  frame(`{"id":"chatcmpl-soak","object":"chat.completion.chunk","created":${created},"model":"soak","choices":[],"usage":${usage}}`)

const tokenFrames = (count: number): ReadonlyArray<string> =>
  Array.from({ length: count }, (_, index) =>
    frame(index === 0 ? chunkJson({ role: "assistant", content: "tok0 " }, null) : chunkJson({ content: `tok${index} ` }, null))
  )
const finishFrame = frame(chunkJson({}, "stop"))
const healthyFrames = (includeUsage: boolean): ReadonlyArray<string> => [
  ...tokenFrames(19),
  finishFrame,
  ...(includeUsage ? [usageFrame(JSON.stringify(usageOk))] : []),
  doneFrame
]

const sseHeaders = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" }

const sendJson = (response: ServerResponse, status: number, body: string | Buffer, headers: Readonly<Record<string, string>> = {}) => {
  if (response.destroyed) return
  response.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), ...headers })
  response.end(body)
}

/** Writes `frames` `gapMs` apart (all at once for 0), then ends; stops when the connection closes. */
const sendFrames = (response: ServerResponse, frames: ReadonlyArray<string>, gapMs: number, then: "end" | "reset" | "stall" = "end") => {
  if (response.destroyed) return
  if (!response.headersSent) response.writeHead(200, sseHeaders)
  let next = 0
  let timer: NodeJS.Timeout | undefined
  response.once("close", () => clearTimeout(timer))
  const finish = () => {
    if (then === "end") response.end()
    else if (then === "reset") response.socket?.resetAndDestroy()
  }
  const writeNext = () => {
    if (response.destroyed) return
    if (gapMs <= 0) {
      response.write(frames.join(""))
      return finish()
    }
    const piece = frames[next++]
    if (piece === undefined) return finish()
    response.write(piece)
    timer = setTimeout(writeNext, gapMs)
  }
  writeNext()
}

/** Writes the pieces `next` gives, waiting for the socket to drain, until it gives `undefined` or the connection closes. */
const pump = (response: ServerResponse, next: () => Buffer | string | undefined, paceMs = 0, onEnd: () => void = () => response.end()) => {
  let timer: NodeJS.Timeout | undefined
  response.once("close", () => clearTimeout(timer))
  const step = () => {
    while (!response.destroyed) {
      const piece = next()
      if (piece === undefined) return onEnd()
      const flowing = response.write(piece)
      if (paceMs > 0) {
        // The drain may come before the pause ends: ask again then.
        timer = setTimeout(() => (response.writableNeedDrain ? response.once("drain", step) : step()), paceMs)
        return
      }
      if (!flowing) return void response.once("drain", step)
    }
  }
  step()
}

// ---------------------------------------------------------------------------------------------------------
// Payloads built once

const deepNesting = lazy(() => `${"[".repeat(100_000)}${"]".repeat(100_000)}`)
const megabyteOfA = lazy(() => Buffer.alloc(1024 * 1024, "a"))
const fourMegabyteFrame = lazy(() => Buffer.from(frame(chunkJson({ content: "b".repeat(4 * 1024 * 1024) }, null))))
const endlessStreamFrame = lazy(() => Buffer.from(frame(chunkJson({ content: "c".repeat(64 * 1024) }, null))))
const gzippedStream = lazy(() => gzipSync(healthyFrames(true).join("")))
const gzippedCompletion = lazy(() => gzipSync(completionJson()))

// ---------------------------------------------------------------------------------------------------------
// The catalogue

const ok: Fault = {
  name: "ok",
  modes: ["json", "stream"],
  weight: 40,
  // 20 frames 10 ms apart: long enough for clients that leave mid-stream to leave mid-stream.
  serve: ({ mode, includeUsage, response }) =>
    mode === "json" ? sendJson(response, 200, completionJson()) : sendFrames(response, healthyFrames(includeUsage), 10)
}

const faults: ReadonlyArray<Fault> = [
  ok,
  {
    name: "null-choice",
    modes: ["stream"],
    weight: 4,
    serve: ({ includeUsage, response }) =>
      sendFrames(response, [frame(`{"object":"chat.completion.chunk","choices":[null]}`), ...healthyFrames(includeUsage)], 5)
  },
  {
    name: "deep-json",
    modes: ["json"],
    weight: 4,
    serve: ({ response }) => sendJson(response, 200, `${completionJson().slice(0, -1)},"x_vendor":${deepNesting()}}`)
  },
  {
    name: "deep-json-chunk",
    modes: ["stream"],
    weight: 4,
    serve: ({ response }) => {
      const deep = frame(chunkJson({ content: "deep " }, null, `,"x_vendor":${deepNesting()}`))
      // Before the gateway commits the stream (first event) or after.
      const frames = Math.random() < 0.5 ? [deep, ...healthyFrames(false)] : [...tokenFrames(3), deep, finishFrame, doneFrame]
      sendFrames(response, frames, 5)
    }
  },
  {
    name: "endless-body",
    modes: ["json", "stream"],
    weight: 1.5,
    // About 1 MB/s, forever: only the gateway's limits or deadline end it.
    serve: ({ mode, response }) => {
      if (mode === "json") {
        response.writeHead(200, { "content-type": "application/json" })
        response.write(`{"id":"chatcmpl-soak","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"`)
        const block = megabyteOfA().subarray(0, 64 * 1024)
        pump(response, () => block, 64)
      } else {
        response.writeHead(200, sseHeaders)
        response.write(tokenFrames(1)[0] ?? "")
        pump(response, endlessStreamFrame, 64)
      }
    }
  },
  {
    name: "huge-chunks",
    modes: ["stream"],
    weight: 1.5,
    serve: ({ response }) => {
      response.writeHead(200, sseHeaders)
      const pieces: Array<Buffer | string> = [tokenFrames(1)[0] ?? "", fourMegabyteFrame(), fourMegabyteFrame(), fourMegabyteFrame(), finishFrame, doneFrame]
      let next = 0
      pump(response, () => pieces[next++])
    }
  },
  {
    name: "stall",
    modes: ["json", "stream"],
    weight: 4,
    // Headers (and for a stream, sometimes one event), then silence until the gateway hangs up.
    serve: ({ mode, response }) => {
      if (mode === "json") {
        response.writeHead(200, { "content-type": "application/json" })
        if (Math.random() < 0.5) response.write(`{"id":"chatcmpl-soak",`)
        else response.flushHeaders()
      } else {
        response.writeHead(200, sseHeaders)
        if (Math.random() < 0.5) response.write(tokenFrames(1)[0] ?? "")
        else response.flushHeaders()
      }
    }
  },
  {
    name: "event-50mb",
    modes: ["stream"],
    weight: 1,
    serve: ({ response }) => {
      response.writeHead(200, sseHeaders)
      response.write(`data: {"id":"chatcmpl-soak","object":"chat.completion.chunk","created":${created},"model":"soak","choices":[{"index":0,"delta":{"content":"`)
      let written = 0
      pump(response, () => (written++ < 50 ? megabyteOfA() : undefined), 0, () => {
        response.end(`"},"logprobs":null,"finish_reason":"stop"}]}\n\n${doneFrame}`)
      })
    }
  },
  {
    name: "redirect",
    modes: ["json", "stream"],
    weight: 4,
    serve: ({ response, trapOrigin }) => {
      const body = JSON.stringify({ error: { message: "moved", type: "server_error", param: null, code: null } })
      sendJson(response, pick([302, 307]), body, { location: `${trapOrigin}/v1/chat/completions` })
    }
  },
  {
    name: "bad-usage",
    modes: ["json", "stream"],
    weight: 4,
    serve: ({ mode, response }) => {
      const usage = pick([
        `{"prompt_tokens":"abc","completion_tokens":20,"total_tokens":"abc"}`,
        `{"prompt_tokens":-1000000,"completion_tokens":20,"total_tokens":-999980}`,
        `{"prompt_tokens":1e308,"completion_tokens":1e308,"total_tokens":1e308}`
      ])
      if (mode === "json") sendJson(response, 200, completionJson(usage))
      else sendFrames(response, [...tokenFrames(5), finishFrame, usageFrame(usage), doneFrame], 5)
    }
  },
  {
    name: "key-in-error",
    modes: ["json", "stream"],
    weight: 4,
    serve: ({ mode, response, upstreamKey }) => {
      const variant = Math.floor(Math.random() * (mode === "stream" ? 4 : 3))
      if (variant === 3) {
        // After the commit: an error event inside the 200 stream, as OpenAI and vLLM send them.
        const error = JSON.stringify({ error: { message: `Rate limit reached for key ${upstreamKey}`, type: "server_error", param: null, code: "500" } })
        return sendFrames(response, [...tokenFrames(3), frame(error)], 5)
      }
      // The key in the message, in `param`, in `code`: wherever an upstream may echo it.
      const answers: ReadonlyArray<readonly [number, object]> = [
        [401, { message: `Incorrect API key provided: ${upstreamKey}. You can find your API key at https://platform.openai.com/account/api-keys.`, type: "invalid_request_error", param: null, code: "invalid_api_key" }],
        [400, { message: `The key ${upstreamKey} has no access to model soak`, type: "invalid_request_error", param: upstreamKey, code: "model_not_found" }],
        [500, { message: `internal error while serving ${upstreamKey}`, type: "server_error", param: null, code: upstreamKey }]
      ]
      const [status, error] = answers[variant] ?? answers[0]!
      sendJson(response, status, JSON.stringify({ error }))
    }
  },
  {
    name: "junk-choices",
    modes: ["json", "stream"],
    weight: 4,
    serve: ({ mode, response }) =>
      mode === "json"
        ? sendJson(response, 200, `{"choices":[1,"x",null]}`)
        : sendFrames(response, Math.random() < 0.5 ? [frame(`{"choices":[1,"x",null]}`), doneFrame] : [...tokenFrames(3), frame(`{"choices":[1,"x",null]}`), doneFrame], 5)
  },
  {
    name: "html-to-stream",
    modes: ["stream"],
    weight: 4,
    serve: ({ response }) => {
      const body = "<!doctype html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
      response.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": String(body.length) }).end(body)
    }
  },
  {
    name: "json-to-stream",
    modes: ["stream"],
    weight: 4,
    serve: ({ response }) => sendJson(response, 200, completionJson())
  },
  {
    name: "gzip",
    modes: ["json", "stream"],
    weight: 4,
    serve: ({ mode, response }) => {
      if (mode === "json") return sendJson(response, 200, gzippedCompletion(), { "content-encoding": "gzip" })
      const body = gzippedStream()
      response.writeHead(200, { ...sseHeaders, "content-encoding": "gzip", "content-length": String(body.length) }).end(body)
    }
  },
  {
    name: "reset",
    modes: ["json", "stream"],
    weight: 4,
    serve: ({ mode, response }) => {
      if (mode === "stream") return sendFrames(response, tokenFrames(1 + Math.floor(Math.random() * 5)), 5, "reset")
      const body = completionJson()
      response.writeHead(200, { "content-type": "application/json", "content-length": String(body.length) })
      response.write(body.slice(0, body.length >> 1), () => response.socket?.resetAndDestroy())
    }
  },
  {
    name: "rate-limited",
    modes: ["json", "stream"],
    weight: 4,
    serve: ({ response }) => {
      const body = JSON.stringify({ error: { message: "Rate limit reached", type: "requests", param: null, code: "rate_limit_exceeded" } })
      sendJson(response, 429, body, pick([{ "retry-after-ms": "20" }, { "retry-after": "1" }, { "retry-after": "3600" }, {}]))
    }
  },
  {
    name: "server-error",
    modes: ["json", "stream"],
    weight: 4,
    serve: ({ response }) => {
      const status = pick([500, 502, 503, 504])
      if (Math.random() < 0.25) {
        const page = `<html><body><h1>${status}</h1></body></html>`
        return void response.writeHead(status, { "content-type": "text/html", "content-length": String(page.length) }).end(page)
      }
      sendJson(response, status, JSON.stringify({ error: { message: "The server had an error", type: "server_error", param: null, code: null } }))
    }
  }
]

export const faultByName: ReadonlyMap<FaultName, Fault> = new Map(faults.map((fault) => [fault.name, fault]))

/** Draws one of `enabled` that fits `mode`, by weight; the healthy answer when none fits. */
export const drawFault = (enabled: ReadonlyArray<Fault>, mode: Mode): Fault => {
  const fitting = enabled.filter((fault) => fault.modes.includes(mode))
  let roll = Math.random() * fitting.reduce((sum, fault) => sum + fault.weight, 0)
  for (const fault of fitting) {
    roll -= fault.weight
    if (roll < 0) return fault
  }
  return fitting[0] ?? ok
}

/** The healthy answer, also what the redirect target serves. */
export const healthy: Fault = ok
