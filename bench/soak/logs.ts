/**
 * What the gateway wrote while under soak: its log lines counted by level and message, and whether the upstream
 * key appears anywhere in them. Read in pieces, with each line capped: a log line may quote a huge payload.
 */
import { createReadStream, existsSync } from "node:fs"
import { Counter } from "./tally.js"

/** A line's first bytes are enough to tell its level and message. */
const lineCap = 8 * 1024

export interface LogSummary {
  readonly lines: number
  /** `<LEVEL> <message>` counts, e.g. `WARN upstream failed`. */
  readonly messages: Counter
  /** Lines that quote the secret. */
  readonly secretLines: number
}

const describe = (line: string): string => {
  try {
    const entry: unknown = JSON.parse(line)
    if (typeof entry === "object" && entry !== null) {
      const { logLevel, message } = entry as { logLevel?: unknown; message?: unknown }
      const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
      return `${String(logLevel ?? "?")} ${text.slice(0, 100)}`
    }
  } catch {
    // a truncated or non-JSON line (e.g. a stack trace on stderr)
  }
  return `raw ${line.slice(0, 100)}`
}

/** The lines of `files` (one per gateway start) counted together. */
export const summarizeLog = async (files: ReadonlyArray<string>, secret: string): Promise<LogSummary> => {
  const messages = new Counter(30)
  let lines = 0
  let secretLines = 0
  for (const file of files.filter((each) => existsSync(each))) {
    const counted = await countLines(file, secret, messages)
    lines += counted.lines
    secretLines += counted.secretLines
  }
  return { lines, messages, secretLines }
}

const countLines = async (file: string, secret: string, messages: Counter): Promise<{ lines: number; secretLines: number }> => {
  let lines = 0
  let secretLines = 0
  let line = ""
  let lineHasSecret = false
  // The secret may straddle two pieces: the end of the last one is kept.
  let seam = ""
  const closeLine = () => {
    if (line.trim() !== "") {
      lines++
      messages.add(describe(line))
      if (lineHasSecret) secretLines++
    }
    line = ""
    lineHasSecret = false
  }
  for await (const piece of createReadStream(file, { encoding: "utf8", highWaterMark: 256 * 1024 })) {
    const text = String(piece)
    let start = 0
    for (;;) {
      const end = text.indexOf("\n", start)
      const part = text.slice(start, end < 0 ? text.length : end)
      if ((seam + part.slice(0, secret.length)).includes(secret) || part.includes(secret)) lineHasSecret = true
      seam = part.length >= secret.length ? part.slice(-secret.length + 1) : (seam + part).slice(-secret.length + 1)
      if (line.length < lineCap) line += part.slice(0, lineCap - line.length)
      if (end < 0) break
      closeLine()
      seam = ""
      start = end + 1
    }
  }
  closeLine()
  return { lines, secretLines }
}
