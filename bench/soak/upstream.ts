/**
 * The soak's upstream, run as a child of bench/soak.ts: an OpenAI-compatible server on 127.0.0.1 that answers
 * `POST …/v1/chat/completions` healthily or with a fault drawn at random per request (bench/soak/faults.ts).
 *
 *   /mix/v1/chat/completions            a random answer among the enabled ones (`--faults`)
 *   /fault/<name>/v1/chat/completions   always that fault (the healthy answer where it does not fit)
 *
 * A second server, the redirect target, answers healthily and counts who reached it: the redirect fault points
 * there, so any hit means the gateway followed an upstream redirect (and perhaps took its key along).
 *
 *   node --import tsx bench/soak/upstream.ts --key K [--faults a,b,c]
 *
 * It reports `UpstreamListening` over IPC (or prints its ports when run by hand), answers `{ type: "stats" }` with
 * `UpstreamStats`, and exits with its parent.
 */
import { createServer } from "node:http"
import type { IncomingMessage, Server, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { drawFault, faultByName, healthy } from "./faults.js"
import type { Fault, Mode } from "./faults.js"
import { faultNames, isFaultName } from "./protocol.js"
import type { UpstreamListening, UpstreamStats } from "./protocol.js"

const flag = (name: string): string | undefined => {
  const index = process.argv.indexOf(name)
  return index >= 0 ? process.argv[index + 1] : undefined
}

const upstreamKey = flag("--key") ?? ""
const enabled: ReadonlyArray<Fault> = (flag("--faults") ?? faultNames.join(","))
  .split(",")
  .filter(isFaultName)
  .flatMap((name) => faultByName.get(name) ?? [])

/** Request bodies are the gateway's forwards of client bodies (≤ 4 MiB by default); more is not a chat request. */
const maxBodyBytes = 8 * 1024 * 1024
const recentSize = 40

const served = new Map<string, number>()
const recent: Array<{ readonly atMs: number; readonly answer: string }> = []
let trapHits = 0
let trapHitsWithKey = 0
let ownErrors = 0

const record = (fault: Fault, mode: Mode) => {
  const key = `${fault.name} ${mode}`
  served.set(key, (served.get(key) ?? 0) + 1)
  recent.push({ atMs: Date.now(), answer: key })
  if (recent.length > recentSize) recent.shift()
}

const errorBody = (message: string) => JSON.stringify({ error: { message, type: "invalid_request_error", param: null, code: null } })

/** Reads a request body of at most `maxBodyBytes`, then calls `onBody`; answers 413 past that. */
const readBody = (request: IncomingMessage, response: ServerResponse, onBody: (text: string) => void) => {
  const pieces: Array<Buffer> = []
  let size = 0
  request.on("data", (piece: Buffer) => {
    size += piece.length
    if (size > maxBodyBytes) {
      response.writeHead(413, { "content-type": "application/json", connection: "close" }).end(errorBody("body too large"))
      request.destroy()
      return
    }
    pieces.push(piece)
  })
  request.once("end", () => {
    if (size <= maxBodyBytes) onBody(Buffer.concat(pieces, size).toString("utf8"))
  })
}

const chatPath = /^(?:\/mix|\/fault\/([a-z0-9-]+))?\/v1\/chat\/completions$/

const serve = (choose: (mode: Mode, forced: string | undefined) => Fault, onServe: (request: IncomingMessage) => void) =>
  createServer((request, response) => {
    request.on("error", () => response.destroy())
    response.on("error", () => {})
    const match = chatPath.exec((request.url ?? "").split("?")[0] ?? "")
    if (request.method !== "POST" || match === null) {
      response.writeHead(404, { "content-type": "application/json" }).end(errorBody("not found"))
      return
    }
    onServe(request)
    readBody(request, response, (text) => {
      const mode: Mode = /"stream"\s*:\s*true/.test(text) ? "stream" : "json"
      const fault = choose(mode, match[1])
      record(fault, mode)
      try {
        fault.serve({
          mode,
          includeUsage: /"include_usage"\s*:\s*true/.test(text),
          request,
          response,
          upstreamKey,
          trapOrigin
        })
      } catch (error) {
        ownErrors++
        console.error(`soak upstream: ${fault.name} ${mode} threw: ${error instanceof Error ? error.message : String(error)}`)
        response.destroy()
      }
    })
  })

const chooseFault = (mode: Mode, forced: string | undefined): Fault => {
  if (forced === undefined) return drawFault(enabled, mode)
  const fault = isFaultName(forced) ? faultByName.get(forced) : undefined
  return fault !== undefined && fault.modes.includes(mode) ? fault : healthy
}

const listen = (server: Server): Promise<number> =>
  new Promise((done, fail) => {
    server.once("error", fail)
    server.listen(0, "127.0.0.1", () => done((server.address() as AddressInfo).port))
  })

const upstream = serve(chooseFault, () => undefined)
const trap = serve(
  () => healthy,
  (request) => {
    trapHits++
    if ((request.headers.authorization ?? "").includes(upstreamKey)) trapHitsWithKey++
  }
)
for (const server of [upstream, trap]) server.on("clientError", (_error, socket) => socket.destroy())

const trapPort = await listen(trap)
const trapOrigin = `http://127.0.0.1:${trapPort}`
const port = await listen(upstream)

process.on("uncaughtException", (error) => {
  ownErrors++
  console.error(`soak upstream: ${error.stack ?? error.message}`)
})

const openConnections = (): Promise<number> =>
  new Promise((done) => upstream.getConnections((error, count) => done(error === null ? count : -1)))

process.on("message", (message: unknown) => {
  if (typeof message !== "object" || message === null || (message as { type?: unknown }).type !== "stats") return
  void openConnections().then((count) => {
    const stats: UpstreamStats = {
      type: "stats",
      served: Object.fromEntries(served),
      trapHits,
      trapHitsWithKey,
      recent: [...recent],
      ownErrors,
      openConnections: count
    }
    process.send?.(stats)
  })
})
process.on("disconnect", () => process.exit(0))
const listening: UpstreamListening = { type: "listening", port, trapPort }
if (process.send !== undefined) process.send(listening)
else console.log(`listening ${port}, redirect target ${trapPort}`)
