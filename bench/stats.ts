/** Small statistics helpers shared by the harness and the load generator. */

/** Nearest-rank percentile of `values` (0 < p ≤ 100); NaN for an empty list. */
export const percentile = (values: ArrayLike<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  const sorted = Float64Array.from(values).sort()
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1] ?? Number.NaN
}

/** Median of the finite values; NaN when there are none. */
export const median = (values: ReadonlyArray<number>): number => {
  const finite = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b)
  if (finite.length === 0) return Number.NaN
  const middle = Math.floor(finite.length / 2)
  const upper = finite[middle] ?? Number.NaN
  return finite.length % 2 === 1 ? upper : ((finite[middle - 1] ?? upper) + upper) / 2
}

export interface LatencySummary {
  readonly count: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
  readonly mean: number
}

export const summarize = (values: ArrayLike<number>): LatencySummary => {
  let sum = 0
  let max = 0
  for (let index = 0; index < values.length; index++) {
    const value = values[index] ?? 0
    sum += value
    if (value > max) max = value
  }
  return {
    count: values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: values.length === 0 ? Number.NaN : max,
    mean: values.length === 0 ? Number.NaN : sum / values.length
  }
}
