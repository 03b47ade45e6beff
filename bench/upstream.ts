/**
 * A fast local OpenAI-compatible upstream for the benchmark. Every response body is serialized once:
 * a chat.completion for `stream: false`, and for `stream: true` N `data: <chunk>\n\n` frames followed by
 * `data: [DONE]\n\n`, written together (no delay) or one every `delayMs`.
 *
 * The stream shape comes from the path, so that a gateway that does not forward client headers can still
 * select it through its upstream base URL: `/v1/...` uses the start options (default 20 chunks, no delay),
 * `/bench/c<N>-d<ms>/v1/...` overrides them (e.g. `/bench/c20-d50/v1` for 20 chunks 50 ms apart).
 *
 * Run as a script (`node --import tsx bench/upstream.ts [--chunks N] [--delay-ms D] [--port P]`) it reports
 * `{ "type": "listening", "port": P }` over IPC when it has one, else prints `listening <port>`.
 */
import { createServer } from "node:http"
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { pathToFileURL } from "node:url"

export interface UpstreamOptions {
  /** Default number of chunks in a stream (the last carries `finish_reason: "stop"`). */
  readonly chunks?: number
  /** Default delay between two chunks, in milliseconds; 0 writes the whole stream at once. */
  readonly delayMs?: number
  readonly port?: number
  readonly host?: string
}

export interface RunningUpstream {
  readonly port: number
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  readonly origin: string
  readonly server: Server
  readonly close: () => Promise<void>
}

const created = 1_700_000_000
const modelName = "bench"

const completionBody: Buffer = Buffer.from(
  JSON.stringify({
    id: "chatcmpl-bench",
    object: "chat.completion",
    created,
    model: modelName,
    system_fingerprint: "fp_bench",
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: "Hello from the bench upstream: a short, fixed answer.", refusal: null },
        logprobs: null,
        finish_reason: "stop"
      }
    ],
    usage: { prompt_tokens: 12, completion_tokens: 11, total_tokens: 23 }
  })
)

const modelsBody: Buffer = Buffer.from(
  JSON.stringify({ object: "list", data: [{ id: modelName, object: "model", created, owned_by: "bench" }] })
)

const notFoundBody: Buffer = Buffer.from(
  JSON.stringify({ error: { message: "not found", type: "invalid_request_error", param: null, code: "not_found" } })
)

/**
 * The frames of one stream: role + first token, tokens, then an empty delta with the finish reason; with
 * `usage`, the usage-only chunk (`choices: []`) before `[DONE]`, as OpenAI sends it for `include_usage`.
 */
const streamFrames = (chunks: number, usage: boolean): ReadonlyArray<Buffer> => {
  const count = Math.max(1, chunks)
  const frames: Array<Buffer> = []
  for (let index = 0; index < count; index++) {
    const last = index === count - 1
    const delta = last && count > 1 ? {} : index === 0 ? { role: "assistant", content: "tok0 " } : { content: `tok${index} ` }
    const chunk = {
      id: "chatcmpl-bench",
      object: "chat.completion.chunk",
      created,
      model: modelName,
      system_fingerprint: "fp_bench",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: last ? "stop" : null }]
    }
    frames.push(Buffer.from(`data: ${JSON.stringify(chunk)}\n\n`))
  }
  if (usage) {
    const usageChunk = {
      id: "chatcmpl-bench",
      object: "chat.completion.chunk",
      created,
      model: modelName,
      system_fingerprint: "fp_bench",
      choices: [],
      usage: { prompt_tokens: 12, completion_tokens: count, total_tokens: 12 + count }
    }
    frames.push(Buffer.from(`data: ${JSON.stringify(usageChunk)}\n\n`))
  }
  frames.push(Buffer.from("data: [DONE]\n\n"))
  return frames
}

interface StreamShape {
  readonly delayMs: number
  readonly frames: ReadonlyArray<Buffer>
  /** All frames joined, for `delayMs === 0`. */
  readonly whole: Buffer
}

const streamHeaders = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "transfer-encoding": "chunked"
}

const jsonHeaders = (body: Buffer) => ({ "content-type": "application/json", "content-length": String(body.length) })

const shapePattern = /^\/bench\/c(\d{1,5})-d(\d{1,6})(\/.*)$/

const streamRequested = (body: Buffer): boolean => /"stream"\s*:\s*true/.test(body.toString("latin1"))

/** Whether a stream request asks for usage (`stream_options.include_usage`), as OpenAI then sends it. */
const usageRequested = (body: Buffer): boolean => /"include_usage"\s*:\s*true/.test(body.toString("latin1"))

/** Starts the upstream; resolves once it listens. */
export const startUpstream = (options: UpstreamOptions = {}): Promise<RunningUpstream> => {
  const shapes = new Map<string, StreamShape>()
  const shapeFor = (chunks: number, delayMs: number, usage: boolean): StreamShape => {
    const key = `${chunks}:${delayMs}:${usage}`
    const known = shapes.get(key)
    if (known !== undefined) return known
    const frames = streamFrames(chunks, usage)
    const shape = { delayMs, frames, whole: Buffer.concat(frames) }
    shapes.set(key, shape)
    return shape
  }
  const defaultShape = (usage: boolean) => shapeFor(options.chunks ?? 20, options.delayMs ?? 0, usage)

  const sendStream = (response: ServerResponse, shape: StreamShape) => {
    response.writeHead(200, streamHeaders)
    if (shape.delayMs <= 0) {
      response.write(shape.whole)
      response.end()
      return
    }
    let next = 0
    let timer: NodeJS.Timeout | undefined
    const writeNext = () => {
      const frame = shape.frames[next]
      if (frame === undefined || response.destroyed) {
        response.end()
        return
      }
      response.write(frame)
      next++
      // The last data frame and [DONE] go together, as OpenAI sends them.
      if (next === shape.frames.length - 1) {
        const done = shape.frames[next]
        if (done !== undefined) response.write(done)
        response.end()
        return
      }
      timer = setTimeout(writeNext, shape.delayMs)
    }
    response.on("close", () => {
      if (timer !== undefined) clearTimeout(timer)
    })
    writeNext()
  }

  const handle = (request: IncomingMessage, response: ServerResponse, body: Buffer) => {
    const rawPath = (request.url ?? "/").split("?")[0] ?? "/"
    const match = shapePattern.exec(rawPath)
    const path = match?.[3] ?? rawPath
    if (request.method === "POST" && path === "/v1/chat/completions") {
      const usage = usageRequested(body)
      const shape = match === null ? defaultShape(usage) : shapeFor(Number(match[1]), Number(match[2]), usage)
      if (streamRequested(body)) sendStream(response, shape)
      else response.writeHead(200, jsonHeaders(completionBody)).end(completionBody)
      return
    }
    if (request.method === "GET" && path === "/v1/models") {
      response.writeHead(200, jsonHeaders(modelsBody)).end(modelsBody)
      return
    }
    response.writeHead(404, jsonHeaders(notFoundBody)).end(notFoundBody)
  }

  const server = createServer((request, response) => {
    const parts: Array<Buffer> = []
    request.on("data", (part: Buffer) => parts.push(part))
    request.on("end", () => handle(request, response, parts.length === 1 && parts[0] !== undefined ? parts[0] : Buffer.concat(parts)))
    request.on("error", () => response.destroy())
  })
  server.keepAliveTimeout = 120_000
  server.headersTimeout = 125_000
  server.requestTimeout = 0

  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        port,
        origin: `http://127.0.0.1:${port}`,
        server,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections()
            server.close(() => done())
          })
      })
    })
  })
}

const flag = (name: string): string | undefined => {
  const index = process.argv.indexOf(name)
  return index >= 0 ? process.argv[index + 1] : undefined
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href

if (isMain) {
  const upstream = await startUpstream({
    chunks: Number(flag("--chunks") ?? 20),
    delayMs: Number(flag("--delay-ms") ?? 0),
    port: Number(flag("--port") ?? 0)
  })
  if (process.send !== undefined) {
    process.send({ type: "listening", port: upstream.port })
    // Exit with the parent.
    process.on("disconnect", () => process.exit(0))
  } else {
    console.log(`listening ${upstream.port}`)
  }
  const stop = () => void upstream.close().then(() => process.exit(0))
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
}
