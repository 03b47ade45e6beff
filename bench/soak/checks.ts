/**
 * What a client checks in one gateway response, reading it with bounded memory: the body is never kept, only its
 * first bytes (for error envelopes and completions) and the SSE frame being read, both capped; frames over the
 * cap are passed over unchecked.
 */
import type { FindingName } from "./tally.js"

/** Bodies (non-stream) and SSE frames up to this size are parsed and checked (a 100k-deep nesting is 200 KB). */
const checkedBytes = 256 * 1024
/** The gateway's own bound on JSON nesting; deeper in a response means it passed an upstream's through. */
const maxDepth = 200

export type StreamEnd = "done" | "error-frame" | "cut"

export interface Finding {
  readonly name: FindingName
  readonly example: string
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)

const deeperThan = (value: unknown, limit: number): boolean => {
  const stack: Array<readonly [unknown, number]> = [[value, 1]]
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!
    if (typeof node !== "object" || node === null) continue
    if (depth > limit) return true
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, depth + 1])
  }
  return false
}

const tokenCount = (value: unknown) => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/** Why `usage` is not OpenAI's usage object, or undefined when it is (or is absent). */
const usageProblem = (usage: unknown): string | undefined => {
  if (usage === undefined || usage === null) return undefined
  if (!isRecord(usage)) return `usage ${JSON.stringify(usage)}`
  for (const field of ["prompt_tokens", "completion_tokens", "total_tokens"]) {
    if (!tokenCount(usage[field])) return `usage.${field} ${JSON.stringify(usage[field])}`
  }
  return undefined
}

const parse = (text: string): { readonly value: unknown } | undefined => {
  try {
    return { value: JSON.parse(text) }
  } catch {
    return undefined
  }
}

/** Reads one response; `feed` every body piece, then `end` (a clean end) — or nothing more when it broke off. */
export class ResponseCheck {
  readonly findings: Array<Finding> = []
  private status = 0
  private isStream = false
  // Non-stream body: its first `checkedBytes`.
  private head: Array<Buffer> = []
  private headBytes = 0
  // SSE: the frame being read, and how the stream has gone so far.
  private frame: Array<Buffer> = []
  private frameBytes = 0
  private endedWithNewline = false
  private sawDone = false
  private sawErrorFrame = false
  // Secret scan across piece boundaries.
  private carry: Buffer = Buffer.alloc(0)
  private readonly secret: Buffer

  constructor(secret: string) {
    this.secret = Buffer.from(secret)
  }

  private find(name: FindingName, example: string): void {
    if (!this.findings.some((finding) => finding.name === name)) this.findings.push({ name, example })
  }

  headers(status: number, headers: ReadonlyArray<string>): void {
    this.status = status
    const contentType = (headers[headers.findIndex((name, index) => index % 2 === 0 && name.toLowerCase() === "content-type") + 1] ?? "").toLowerCase()
    this.isStream = status === 200 && contentType.startsWith("text/event-stream")
    const joined = headers.join("\n")
    if (joined.includes(this.secret.toString())) this.find("upstream key in a response", `header: ${joined}`)
  }

  feed(piece: Buffer): void {
    this.scanSecret(piece)
    if (this.isStream) this.feedSse(piece)
    else if (this.headBytes < checkedBytes) {
      this.head.push(piece)
      this.headBytes += piece.length
    }
  }

  /** The body ended cleanly: check what was read. */
  end(): StreamEnd | undefined {
    if (this.isStream) {
      if (this.frameBytes > 0) this.checkFrame()
      if (this.sawDone) return "done"
      if (this.sawErrorFrame) return "error-frame"
      return "cut"
    }
    this.checkBody()
    return undefined
  }

  private scanSecret(piece: Buffer): void {
    const overlap = this.secret.length - 1
    const seam = this.carry.length > 0 ? Buffer.concat([this.carry, piece.subarray(0, overlap)]) : Buffer.alloc(0)
    const inPiece = piece.indexOf(this.secret)
    if (inPiece >= 0) {
      this.find("upstream key in a response", piece.subarray(Math.max(0, inPiece - 150), inPiece + overlap + 150).toString("utf8"))
    } else if (seam.indexOf(this.secret) >= 0) {
      this.find("upstream key in a response", seam.toString("utf8"))
    }
    const joined = piece.length >= overlap ? piece : Buffer.concat([this.carry, piece])
    this.carry = Buffer.from(joined.subarray(Math.max(0, joined.length - overlap)))
  }

  private feedSse(piece: Buffer): void {
    let start = 0
    // A frame boundary split across two pieces: "\n" | "\n".
    if (this.endedWithNewline && piece[0] === 0x0a) {
      this.checkFrame()
      start = 1
    }
    for (;;) {
      const end = piece.indexOf("\n\n", start)
      if (end < 0) break
      this.appendFrame(piece.subarray(start, end))
      this.checkFrame()
      start = end + 2
    }
    this.appendFrame(piece.subarray(start))
    this.endedWithNewline = piece.length > 0 && piece[piece.length - 1] === 0x0a
  }

  private appendFrame(part: Buffer): void {
    if (part.length === 0) return
    // Past the cap only the size is kept: the frame is passed over.
    if (this.frameBytes + part.length <= checkedBytes) this.frame.push(part)
    this.frameBytes += part.length
  }

  private checkFrame(): void {
    const whole = this.frameBytes <= checkedBytes
    const text = whole ? Buffer.concat(this.frame).toString("utf8").replace(/\n$/, "") : ""
    const size = this.frameBytes
    this.frame = []
    this.frameBytes = 0
    if (size === 0) return
    if (this.sawDone || this.sawErrorFrame) return this.find("data after [DONE]", whole ? text : `a frame of ${size} bytes`)
    if (!whole) return
    const data = text
      .split("\n")
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trimStart())
      .join("\n")
    if (data === "") return
    if (data === "[DONE]") {
      this.sawDone = true
      return
    }
    const parsed = parse(data)
    if (parsed === undefined) return this.find("invalid chunk forwarded", data)
    const chunk = parsed.value
    if (isRecord(chunk) && chunk["error"] !== undefined) {
      this.sawErrorFrame = true
      const error = chunk["error"]
      if (!isRecord(error) || typeof error["message"] !== "string") this.find("error body not in OpenAI's envelope", data)
      return
    }
    if (deeperThan(chunk, maxDepth)) return this.find("nesting deeper than 200 forwarded", data.slice(0, 200))
    const choices = isRecord(chunk) ? chunk["choices"] : undefined
    if (!isRecord(chunk) || chunk["object"] !== "chat.completion.chunk" || !Array.isArray(choices)) {
      return this.find("invalid chunk forwarded", data)
    }
    if (!choices.every((choice) => isRecord(choice) && typeof choice["index"] === "number" && isRecord(choice["delta"]))) {
      return this.find("invalid chunk forwarded", data)
    }
    const usage = usageProblem(chunk["usage"])
    if (usage !== undefined) this.find("invalid usage forwarded", `${usage} in ${data}`)
  }

  private checkBody(): void {
    const text = Buffer.concat(this.head).toString("utf8")
    const truncated = this.headBytes >= checkedBytes
    if (this.status >= 200 && this.status < 300) {
      if (truncated) return this.find("invalid completion forwarded", `a ${this.headBytes}+ byte body: ${text.slice(0, 100)}`)
      const parsed = parse(text)
      const completion = parsed?.value
      if (deeperThan(completion, maxDepth)) return this.find("nesting deeper than 200 forwarded", text.slice(0, 200))
      const choices = isRecord(completion) ? completion["choices"] : undefined
      if (
        !isRecord(completion) ||
        completion["object"] !== "chat.completion" ||
        !Array.isArray(choices) ||
        !choices.every((choice) => isRecord(choice) && isRecord(choice["message"]))
      ) {
        return this.find("invalid completion forwarded", text)
      }
      const usage = usageProblem(completion["usage"])
      if (usage !== undefined) this.find("invalid usage forwarded", `${usage} in ${text}`)
      return
    }
    const envelope = truncated ? undefined : parse(text)?.value
    const error = isRecord(envelope) ? envelope["error"] : undefined
    if (!isRecord(error) || typeof error["message"] !== "string" || typeof error["type"] !== "string") {
      this.find("error body not in OpenAI's envelope", `${this.status}: ${text}`)
    }
    if (this.status === 500) this.find("500 internal_error", text)
  }
}
