/**
 * The gateway's log lines, captured while a test runs: the JSON logger writes each line with `console.log`. The spy
 * stays until the test's `vi.restoreAllMocks()` (or the returned `restore`).
 */
import { vi } from "vitest"

/** What was logged: the raw lines, and those that are JSON, parsed. */
export interface CapturedLogs {
  readonly raw: Array<string>
  readonly json: Array<Record<string, unknown>>
  readonly restore: () => void
}

export const captureLogs = (): CapturedLogs => {
  const raw: Array<string> = []
  const json: Array<Record<string, unknown>> = []
  const spy = vi.spyOn(console, "log").mockImplementation((...args: Array<unknown>) => {
    for (const arg of args) {
      const line = typeof arg === "string" ? arg : JSON.stringify(arg)
      raw.push(line)
      try {
        const parsed: unknown = JSON.parse(line)
        if (typeof parsed === "object" && parsed !== null) json.push(parsed as Record<string, unknown>)
      } catch {
        // not a JSON log line
      }
    }
  })
  return { raw, json, restore: () => spy.mockRestore() }
}
