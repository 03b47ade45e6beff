/**
 * A worker's metrics as plain data, and how a group's are merged into one: counters and histograms summed per
 * label set, gauges summed, no label naming the worker (the group is one scrape target).
 */
import { Effect, Metric, MetricBoundaries, MetricKey, MetricLabel, MetricPair, MetricState, Option, Schema } from "effect"
import type { FamilyData, SeriesData } from "../Metrics.js"
import { snapshotFamilies } from "../Metrics.js"

const Label = Schema.Tuple(Schema.String, Schema.String)

const Series = Schema.Struct({
  labels: Schema.Array(Label),
  value: Schema.Number,
  buckets: Schema.Array(Schema.Number),
  sum: Schema.Number
})

const Family = Schema.Struct({
  name: Schema.String,
  help: Schema.String,
  type: Schema.Literal("counter", "gauge", "histogram"),
  bounds: Schema.Array(Schema.Number),
  series: Schema.Array(Series)
})

const EffectMetricKey = {
  name: Schema.String,
  description: Schema.NullOr(Schema.String),
  tags: Schema.Array(Label)
}

/**
 * One of the Effect runtime's metrics (`effect_fiber_*`). Summaries are not carried: their quantiles cannot be
 * added up.
 */
const EffectMetric = Schema.Union(
  Schema.Struct({ kind: Schema.Literal("counter", "gauge"), ...EffectMetricKey, value: Schema.Number }),
  Schema.Struct({
    kind: Schema.Literal("histogram"),
    ...EffectMetricKey,
    buckets: Schema.Array(Schema.Tuple(Schema.Number, Schema.Number)),
    count: Schema.Number,
    sum: Schema.Number,
    min: Schema.Number,
    max: Schema.Number
  }),
  Schema.Struct({ kind: Schema.Literal("frequency"), ...EffectMetricKey, occurrences: Schema.Array(Schema.Tuple(Schema.String, Schema.Number)) })
)
export type EffectMetric = typeof EffectMetric.Type

/** A worker's metrics: the gateway's families and the Effect runtime's metrics. */
export const Snapshot = Schema.Struct({
  families: Schema.Array(Family),
  effect: Schema.Array(EffectMetric)
})
export type Snapshot = typeof Snapshot.Type

export const emptySnapshot: Snapshot = { families: [], effect: [] }

/** Series in one snapshot, the gateway's and the runtime's together. */
export const seriesCount = (snapshot: Snapshot): number =>
  snapshot.families.reduce((total, family) => total + family.series.length, 0) + snapshot.effect.length

const toNumber = (value: number | bigint): number => (typeof value === "bigint" ? Number(value) : value)

const effectMetricOf = (pair: MetricPair.MetricPair.Untyped): EffectMetric | undefined => {
  const key = {
    name: pair.metricKey.name,
    description: Option.getOrNull(pair.metricKey.description),
    tags: pair.metricKey.tags.map((tag) => [tag.key, tag.value] as const)
  }
  const state = pair.metricState
  if (MetricState.isCounterState(state)) return { kind: "counter", ...key, value: toNumber(state.count) }
  if (MetricState.isGaugeState(state)) return { kind: "gauge", ...key, value: toNumber(state.value) }
  if (MetricState.isHistogramState(state)) {
    return { kind: "histogram", ...key, buckets: state.buckets, count: state.count, sum: state.sum, min: state.min, max: state.max }
  }
  if (MetricState.isFrequencyState(state)) return { kind: "frequency", ...key, occurrences: [...state.occurrences] }
  return undefined
}

/** This process's metrics now. */
export const local: Effect.Effect<Snapshot> = Effect.map(Metric.snapshot, (pairs) => ({
  families: snapshotFamilies(),
  effect: pairs.flatMap((pair) => {
    const metric = effectMetricOf(pair)
    return metric === undefined ? [] : [metric]
  })
}))

/**
 * What a part contributes: a `live` part (a worker that answered) everything; the last figures of a worker that
 * did not answer in time, or of workers that exited, only the gateway's counters and histograms, so that those
 * never go backwards when a worker is replaced or slow (gauges and the runtime's metrics describe live processes).
 */
export interface Part {
  readonly snapshot: Snapshot
  readonly live: boolean
}

const keyOf = (name: string, labels: ReadonlyArray<readonly [string, string]>) =>
  `${name}\u0000${labels.map(([key, value]) => `${key}\u0001${value}`).join("\u0000")}`

const sameBounds = (left: ReadonlyArray<number>, right: ReadonlyArray<number>) =>
  left.length === right.length && left.every((bound, index) => bound === right[index])

/** The merged snapshot, and how many series were left out (over `maxSeries`, or histograms of other bounds). */
export interface Merged {
  readonly snapshot: Snapshot
  readonly dropped: number
}

/** Sums the parts per family and label set, keeping at most `maxSeries` series. */
export const merge = (parts: ReadonlyArray<Part>, maxSeries: number): Merged => {
  let dropped = 0
  let kept = 0
  const room = () => (kept < maxSeries ? (kept++, true) : (dropped++, false))

  const families = new Map<string, { family: Omit<FamilyData, "series">; series: Map<string, { labels: ReadonlyArray<readonly [string, string]>; value: number; buckets: Array<number>; sum: number }> }>()
  for (const { live, snapshot } of parts) {
    for (const family of snapshot.families) {
      if (!live && family.type === "gauge") continue
      let merged = families.get(family.name)
      if (merged === undefined) {
        merged = { family: { name: family.name, help: family.help, type: family.type, bounds: family.bounds }, series: new Map() }
        families.set(family.name, merged)
      }
      if (merged.family.type !== family.type || !sameBounds(merged.family.bounds, family.bounds)) {
        dropped += family.series.length
        continue
      }
      for (const series of family.series) {
        const key = keyOf(family.name, series.labels)
        const found = merged.series.get(key)
        if (found === undefined) {
          if (room()) merged.series.set(key, { labels: series.labels, value: series.value, buckets: [...series.buckets], sum: series.sum })
        } else {
          found.value += series.value
          found.sum += series.sum
          series.buckets.forEach((count, index) => (found.buckets[index] = (found.buckets[index] ?? 0) + count))
        }
      }
    }
  }

  const effect = new Map<string, EffectMetric>()
  for (const { live, snapshot } of parts) {
    if (!live) continue
    for (const metric of snapshot.effect) {
      const key = keyOf(`${metric.kind}:${metric.name}`, metric.tags)
      const found = effect.get(key)
      if (found === undefined) {
        if (room()) effect.set(key, metric)
      } else {
        const sum = addEffect(found, metric)
        if (sum === undefined) dropped++
        else effect.set(key, sum)
      }
    }
  }

  return {
    snapshot: {
      families: [...families.values()]
        .filter(({ series }) => series.size > 0)
        .map(({ family, series }): FamilyData => ({ ...family, series: [...series.values()] satisfies ReadonlyArray<SeriesData> })),
      effect: [...effect.values()]
    },
    dropped
  }
}

/** The sum of two readings of one Effect metric, or undefined when they cannot be added (other bounds). */
const addEffect = (left: EffectMetric, right: EffectMetric): EffectMetric | undefined => {
  if ((left.kind === "counter" || left.kind === "gauge") && left.kind === right.kind) return { ...left, value: left.value + right.value }
  if (left.kind === "histogram" && right.kind === "histogram") {
    if (!sameBounds(left.buckets.map(([bound]) => bound), right.buckets.map(([bound]) => bound))) return undefined
    return {
      ...left,
      buckets: left.buckets.map(([bound, count], index) => [bound, count + (right.buckets[index]?.[1] ?? 0)] as const),
      count: left.count + right.count,
      sum: left.sum + right.sum,
      min: Math.min(left.min, right.min),
      max: Math.max(left.max, right.max)
    }
  }
  if (left.kind === "frequency" && right.kind === "frequency") {
    const occurrences = new Map(left.occurrences)
    for (const [value, count] of right.occurrences) occurrences.set(value, (occurrences.get(value) ?? 0) + count)
    return { ...left, occurrences: [...occurrences] }
  }
  return undefined
}

/** Effect metric pairs again, for the Prometheus renderer. */
export const toPairs = (metrics: ReadonlyArray<EffectMetric>): ReadonlyArray<MetricPair.MetricPair.Untyped> =>
  metrics.map((metric) => {
    const description = metric.description ?? undefined
    const labels = metric.tags.map(([key, value]) => MetricLabel.make(key, value))
    switch (metric.kind) {
      case "counter":
        return MetricPair.unsafeMake(MetricKey.taggedWithLabels(MetricKey.counter(metric.name, { description }), labels), MetricState.counter(metric.value))
      case "gauge":
        return MetricPair.unsafeMake(MetricKey.taggedWithLabels(MetricKey.gauge(metric.name, { description }), labels), MetricState.gauge(metric.value))
      case "histogram":
        return MetricPair.unsafeMake(
          MetricKey.taggedWithLabels(MetricKey.histogram(metric.name, MetricBoundaries.fromIterable(metric.buckets.map(([bound]) => bound)), description), labels),
          MetricState.histogram(metric)
        )
      case "frequency":
        return MetricPair.unsafeMake(
          MetricKey.taggedWithLabels(MetricKey.frequency(metric.name, { description }), labels),
          MetricState.frequency(new Map(metric.occurrences))
        )
    }
  })
