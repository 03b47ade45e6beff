/**
 * UTC calendar periods and money as both governance stores count them. Spend is kept as whole nano-dollars so that
 * sums are exact integers: rounding one request's spend to 1e-9 USD errs by at most 5e-10, and adding never drifts.
 */

/** Milliseconds in a UTC day (UTC has no leap seconds in epoch time). */
export const dayMs = 86_400_000

/** A budget's period. */
export type Period = "daily" | "monthly"

const pad = (value: number, width: number) => String(value).padStart(width, "0")

/** The UTC day of `ms`, as `YYYY-MM-DD`. */
export const utcDay = (ms: number): string => {
  const date = new Date(ms)
  return `${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1, 2)}-${pad(date.getUTCDate(), 2)}`
}

/** The UTC month of `ms`, as `YYYY-MM`. */
export const utcMonth = (ms: number): string => utcDay(ms).slice(0, 7)

/**
 * The name of the period that holds `ms`: `d:YYYY-MM-DD` or `m:YYYY-MM`. Both stores name spend by it (the Redis
 * scripts build the same names from Redis's own time).
 */
export const periodName = (period: Period, ms: number): string =>
  period === "daily" ? `d:${utcDay(ms)}` : `m:${utcMonth(ms)}`

/** When the period that holds `ms` ends (the next UTC midnight, or the first of the next UTC month). */
export const periodEndMs = (period: Period, ms: number): number => {
  const date = new Date(ms)
  return period === "daily"
    ? Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() + 1)
    : Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1)
}

/** Dollars → whole nano-dollars. */
export const toNanoUsd = (usd: number): number => Math.round(usd * 1e9)

/** Whole nano-dollars → dollars. */
export const fromNanoUsd = (nano: number): number => nano / 1e9
