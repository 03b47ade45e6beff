/**
 * A raw HTTP/1.1 client over `node:net` for the fuzz suites: it sends exactly the bytes it is given (bare LFs,
 * duplicated or conflicting headers, invalid UTF-8, truncated bodies) and reads the first response back itself,
 * so that nothing between the test and the gateway repairs or refuses the request first.
 */
import { connect } from "node:net"

/** What came back on the connection. */
export type RawOutcome =
  | {
      readonly _tag: "Response"
      readonly status: number
      /** Lower-cased names; a repeated header keeps every value. */
      readonly headers: Readonly<Record<string, ReadonlyArray<string>>>
      readonly body: Buffer
      /** The raw head, for messages. */
      readonly head: string
    }
  /** The connection ended (or was reset) before a whole response: `received` is what had arrived. */
  | { readonly _tag: "Closed"; readonly received: Buffer; readonly error: string | undefined }
  /** Nothing conclusive within the guard time (a hang: a failure, never a measurement). */
  | { readonly _tag: "Stalled"; readonly received: Buffer }

export interface RawOptions {
  /** Half-close the socket after writing (a client that is done sending). */
  readonly endAfterWrite?: boolean
  /** Give up after this long; default 15 s. */
  readonly guardMs?: number
  /** The method sent, so that a HEAD response is read without a body. */
  readonly head?: boolean
}

const headEnd = Buffer.from("\r\n\r\n")

/** Parses the response head, or `undefined` when it is not (yet) complete. */
const parseHead = (data: Buffer) => {
  const end = data.indexOf(headEnd)
  if (end === -1) return undefined
  const head = data.subarray(0, end).toString("latin1")
  const [statusLine = "", ...lines] = head.split("\r\n")
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)
  const headers: Record<string, Array<string>> = {}
  for (const line of lines) {
    const colon = line.indexOf(":")
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    ;(headers[name] ??= []).push(line.slice(colon + 1).trim())
  }
  return { status: match === null ? NaN : Number(match[1]), headers, head, bodyStart: end + headEnd.length }
}

/** Decodes a whole chunked body, or `undefined` when its last chunk has not arrived. */
const dechunk = (data: Buffer): Buffer | undefined => {
  const pieces: Array<Buffer> = []
  let at = 0
  for (;;) {
    const lineEnd = data.indexOf("\r\n", at)
    if (lineEnd === -1) return undefined
    const size = Number.parseInt(data.subarray(at, lineEnd).toString("latin1"), 16)
    if (!Number.isFinite(size)) return undefined
    const start = lineEnd + 2
    if (size === 0) return Buffer.concat(pieces)
    if (data.length < start + size + 2) return undefined
    pieces.push(data.subarray(start, start + size))
    at = start + size + 2
  }
}

/** The first whole final response in `data` (interim 1xx responses skipped), if it has all arrived. */
const completeResponse = (data: Buffer, head: boolean, ended: boolean): RawOutcome | undefined => {
  const parsed = parseHead(data)
  if (parsed === undefined) return undefined
  const rest = data.subarray(parsed.bodyStart)
  if (parsed.status >= 100 && parsed.status < 200 && parsed.status !== 101) return completeResponse(rest, head, ended)
  const response = (body: Buffer): RawOutcome => ({ _tag: "Response", status: parsed.status, headers: parsed.headers, body, head: parsed.head })
  if (head || parsed.status === 204 || parsed.status === 304 || parsed.status === 101) return response(Buffer.alloc(0))
  const length = parsed.headers["content-length"]?.[0]
  if (length !== undefined) {
    const size = Number(length)
    return rest.length >= size ? response(rest.subarray(0, size)) : undefined
  }
  if ((parsed.headers["transfer-encoding"]?.[0] ?? "").toLowerCase().includes("chunked")) {
    const body = dechunk(rest)
    return body === undefined ? undefined : response(body)
  }
  // Neither: the body runs to the end of the connection.
  return ended ? response(rest) : undefined
}

/** Sends `request` (bytes, or pieces written one by one) to 127.0.0.1:`port` and reads the first response. */
export const rawRequest = (port: number, request: Uint8Array | ReadonlyArray<Uint8Array>, options: RawOptions = {}): Promise<RawOutcome> =>
  new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port })
    let data = Buffer.alloc(0)
    let done = false
    let error: string | undefined
    const finish = (outcome: RawOutcome) => {
      if (done) return
      done = true
      clearTimeout(guard)
      socket.destroy()
      resolve(outcome)
    }
    const guard = setTimeout(() => finish({ _tag: "Stalled", received: data }), options.guardMs ?? 15_000)
    socket.on("data", (piece: Buffer) => {
      data = Buffer.concat([data, piece])
      const response = completeResponse(data, options.head === true, false)
      if (response !== undefined) finish(response)
    })
    socket.on("error", (thrown) => {
      error = (thrown as NodeJS.ErrnoException).code ?? thrown.message
    })
    socket.on("close", () => finish(completeResponse(data, options.head === true, true) ?? { _tag: "Closed", received: data, error }))
    socket.once("connect", () => {
      const pieces = request instanceof Uint8Array ? [request] : request
      // A server that answers early may reset the connection while we write: that is an answer, not our failure.
      for (const piece of pieces) if (!socket.destroyed) socket.write(piece)
      if (options.endAfterWrite === true && !socket.destroyed) socket.end()
    })
  })

/** One header line as bytes (latin1, so that any byte 0-255 can be sent). */
export const headerLine = (name: string, value: string): string => `${name}: ${value}\r\n`

/** A whole request: request line, headers, blank line, body. Header text is sent as latin1 bytes. */
export const requestBytes = (requestLine: string, headers: ReadonlyArray<readonly [string, string]>, body: Uint8Array = new Uint8Array()): Buffer =>
  Buffer.concat([Buffer.from(`${requestLine}\r\n${headers.map(([name, value]) => headerLine(name, value)).join("")}\r\n`, "latin1"), body])

/** A response's body as text. */
export const bodyText = (outcome: RawOutcome): string => (outcome._tag === "Response" ? outcome.body.toString("utf8") : "")

/** A one-line description of an outcome, for failure messages. */
export const describeOutcome = (outcome: RawOutcome): string => {
  switch (outcome._tag) {
    case "Response":
      return `${outcome.status} ${JSON.stringify(outcome.head.split("\r\n").slice(1))} ${outcome.body.toString("utf8").slice(0, 600)}`
    case "Closed":
      return `connection closed (${outcome.error ?? "no error"}) after ${outcome.received.length} bytes: ${outcome.received.toString("latin1").slice(0, 300)}`
    case "Stalled":
      return `no answer after ${outcome.received.length} bytes: ${outcome.received.toString("latin1").slice(0, 300)}`
  }
}
