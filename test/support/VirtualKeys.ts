/**
 * Virtual keys for governance tests over a running gateway: a key's secret and its registry entry (by its SHA-256),
 * and the usage report of a key read until it shows what the test waits for (usage rows are written after answers).
 */
import { Effect } from "effect"
import { sha256Hex } from "../../src/Governance/Keys.js"
import { testKey } from "./Gateway.js"
import { call } from "./Http.js"

/** The secret of the test key `id`. */
export const secretOf = (id: string) => `sk-llmp-${id}-${"y".repeat(24)}`

/** A registry `keys:` entry for `id`, its secret given as its SHA-256. */
export const keyEntry = (id: string, extra: Record<string, unknown> = {}) => ({ id, key_sha256: sha256Hex(secretOf(id)), ...extra })

/** `GET /admin/usage?key=…` as the gateway answers it. */
export interface UsageReport {
  readonly rows: ReadonlyArray<{ readonly key: string; readonly model: string; readonly requests: number; readonly prompt_tokens: number; readonly completion_tokens: number; readonly spend_usd: number }>
}

/** The usage report of `key`, read (at most 100 times, 20 ms apart) until `done` holds; the last one read otherwise. */
export const usageWhen = (baseUrl: string, key: string, done: (report: UsageReport) => boolean) =>
  Effect.gen(function* () {
    let report: UsageReport = { rows: [] }
    for (let attempt = 0; attempt < 100; attempt++) {
      report = JSON.parse((yield* call(`${baseUrl}/admin/usage?key=${key}`, { headers: { authorization: `Bearer ${testKey}` } })).text) as UsageReport
      if (done(report)) return report
      yield* Effect.sleep("20 millis")
    }
    return report
  })
