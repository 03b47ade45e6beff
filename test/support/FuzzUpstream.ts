/**
 * A fake upstream that answers every request with bytes the test chose: a status, headers, and a body written in
 * the given pieces (a write each, a turn of the event loop apart, so that cuts inside a UTF-8 character or a CRLF
 * reach the gateway as separate reads as far as TCP allows), then a clean end or a reset. One server for every
 * dialect: it answers whatever path it is asked. Start it in a Scope; closing the scope stops it.
 */
import { Effect, Option } from "effect"
import fc from "fast-check"
import { cutAt, cutsOf } from "./FuzzArbitraries.js"
import type { Scope } from "effect"
import { pullOf, releaseOf } from "../../src/Providers/ChunkSource.js"
import type { ChunkSource } from "../../src/Providers/ChunkSource.js"
import type { ProviderError } from "../../src/Providers/ProviderError.js"
import { createServer } from "node:http"
import type { ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"

/** What the next requests get. */
export interface ByteReply {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly pieces: ReadonlyArray<Uint8Array>
  /** `end`: finish the response; `destroy`: reset the connection after the last piece. */
  readonly then: "end" | "destroy"
}

export interface ByteUpstream {
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
  /** Sets the reply of every request from now on. */
  readonly reply: (reply: ByteReply) => void
  /** Requests answered so far. */
  readonly requests: () => number
}

/** Starts the byte upstream in the current scope. */
export const startByteUpstream: Effect.Effect<ByteUpstream, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(async () => {
    let current: ByteReply = { status: 200, headers: {}, pieces: [], then: "end" }
    let requests = 0
    const write = (res: ServerResponse, reply: ByteReply, index: number): void => {
      if (res.destroyed) return
      if (index < reply.pieces.length) {
        res.write(reply.pieces[index])
        setImmediate(() => write(res, reply, index + 1))
        return
      }
      if (reply.then === "end") res.end()
      else res.destroy()
    }
    const server = createServer((req, res) => {
      req.resume()
      req.once("end", () => {
        requests++
        const reply = current
        // A client that gave up leaves a response nobody reads: nothing to report.
        res.on("error", () => {})
        res.writeHead(reply.status, reply.headers)
        res.flushHeaders()
        write(res, reply, 0)
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const upstream: ByteUpstream = {
      origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      reply: (next) => {
        current = next
      },
      requests: () => requests
    }
    return { server, upstream }
  }),
  ({ server }) =>
    Effect.promise(() => {
      server.closeAllConnections()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    })
).pipe(Effect.map(({ upstream }) => upstream))

/** Opens a source and reads every item to its end (or its failure); the source is released however it ends. */
export const readToEnd = <A>(open: Effect.Effect<ChunkSource<A>, ProviderError>): Effect.Effect<ReadonlyArray<A>, ProviderError> =>
  Effect.acquireUseRelease(
    open,
    (source) => {
      const items: Array<A> = []
      const loop: Effect.Effect<ReadonlyArray<A>, ProviderError> = Effect.matchEffect(pullOf(source), {
        onFailure: (end) => (Option.isNone(end) ? Effect.succeed(items) : Effect.fail(end.value)),
        onSuccess: (batch) => {
          for (const item of batch) items.push(item)
          return loop
        }
      })
      return loop
    },
    releaseOf
  )

/** One SSE event with any name and data, its line breaks replaced (each stays one frame). */
export const sseFrame = (name: string, data: string): string => `event: ${name.replace(/[\r\n]/g, "")}\ndata: ${data.replace(/[\r\n]/g, " ")}\n\n`

/**
 * What a hostile upstream answers: one of `bodies`, mostly at 200 else at one of `errorStatuses`, under any content
 * type, cut into pieces anywhere, the connection ended or reset; with a summary for the counterexample.
 */
export const byteRepliesOf = (bodies: fc.Arbitrary<Uint8Array>, errorStatuses: ReadonlyArray<number>): fc.Arbitrary<{ readonly reply: ByteReply; readonly summary: string }> =>
  fc
    .tuple(
      bodies,
      fc.oneof({ weight: 8, arbitrary: fc.constant(200) }, { weight: 2, arbitrary: fc.constantFrom(...errorStatuses) }),
      fc.constantFrom("text/event-stream", "application/json", "text/html", ""),
      fc.oneof({ weight: 9, arbitrary: fc.constant("end" as const) }, { weight: 1, arbitrary: fc.constant("destroy" as const) })
    )
    .chain(([body, status, contentType, then]) =>
      cutsOf(body.length).map((cuts) => {
        const summary = `${status} ${contentType} ${then}, cuts ${JSON.stringify(cuts)}, body ${Buffer.from(body).toString("utf8").slice(0, 1500)}`
        const reply: ByteReply = { status, headers: contentType === "" ? {} : { "content-type": contentType }, pieces: cutAt(body, cuts), then }
        return { reply, summary, [fc.toStringMethod]: () => summary }
      })
    )
