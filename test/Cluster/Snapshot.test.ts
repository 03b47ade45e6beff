import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Snapshot from "../../src/Cluster/Snapshot.js"
import type { FamilyData } from "../../src/Metrics.js"
import { renderSnapshot } from "../../src/Metrics.js"

const counter = (series: ReadonlyArray<readonly [string, number]>): FamilyData => ({
  name: "llm_proxy_http_requests_total",
  help: "requests",
  type: "counter",
  bounds: [],
  series: series.map(([route, value]) => ({ labels: [["route", route]], value, buckets: [], sum: 0 }))
})

const histogram = (count: number, buckets: ReadonlyArray<number>, sum: number): FamilyData => ({
  name: "llm_proxy_http_request_duration_seconds",
  help: "durations",
  type: "histogram",
  bounds: [0.1, 1],
  series: [{ labels: [["route", "/v1/chat/completions"]], value: count, buckets, sum }]
})

const gauge = (value: number): FamilyData => ({
  name: "llm_proxy_http_requests_in_flight",
  help: "in flight",
  type: "gauge",
  bounds: [],
  series: [{ labels: [], value, buckets: [], sum: 0 }]
})

const worker = (requests: number, inFlight: number, fibers: number): Snapshot.Snapshot => ({
  families: [counter([["/v1/models", requests]]), histogram(2, [1, 2], 0.5), gauge(inFlight)],
  effect: [
    { kind: "counter", name: "effect_fiber_started", description: null, tags: [], value: fibers },
    {
      kind: "histogram",
      name: "effect_fiber_lifetimes",
      description: null,
      tags: [["time_unit", "milliseconds"]],
      buckets: [
        [1, 1],
        [Number.POSITIVE_INFINITY, 3]
      ],
      count: 3,
      sum: 12,
      min: 0.5,
      max: 9
    }
  ]
})

const seriesOf = (snapshot: Snapshot.Snapshot, name: string) => snapshot.families.find((family) => family.name === name)?.series ?? []

describe("merging workers' metrics", () => {
  it("sums counters and histograms per label set and gauges, with no worker label", () => {
    const { dropped, snapshot } = Snapshot.merge(
      [
        { snapshot: worker(3, 1, 10), live: true },
        { snapshot: { families: [counter([["/v1/models", 4], ["/health", 1]])], effect: [] }, live: true }
      ],
      1_000
    )
    expect(dropped).toBe(0)
    expect(seriesOf(snapshot, "llm_proxy_http_requests_total").map((series) => [series.labels, series.value])).toEqual([
      [[["route", "/v1/models"]], 7],
      [[["route", "/health"]], 1]
    ])
    const text = renderSnapshot(snapshot.families, Snapshot.toPairs(snapshot.effect))
    expect(text).toContain('llm_proxy_http_requests_total{route="/v1/models"} 7\n')
    expect(text).toContain("llm_proxy_http_requests_in_flight 1\n")
    expect(text).not.toContain("worker")
  })

  it("adds histograms bucket by bound, and the runtime's metrics of live workers", () => {
    const { snapshot } = Snapshot.merge([{ snapshot: worker(1, 2, 10), live: true }, { snapshot: worker(1, 3, 5), live: true }], 1_000)
    const [series] = seriesOf(snapshot, "llm_proxy_http_request_duration_seconds")
    expect(series).toMatchObject({ value: 4, buckets: [2, 4], sum: 1 })
    expect(seriesOf(snapshot, "llm_proxy_http_requests_in_flight")[0]?.value).toBe(5)
    const text = renderSnapshot(snapshot.families, Snapshot.toPairs(snapshot.effect))
    expect(text).toContain("effect_fiber_started 15\n")
    expect(text).toContain('effect_fiber_lifetimes_bucket{time_unit="milliseconds",le="+Inf"} 6\n')
    expect(text).toContain('effect_fiber_lifetimes_count{time_unit="milliseconds"} 6\n')
  })

  it("counts the last figures of exited or silent workers in counters and histograms only", () => {
    const { snapshot } = Snapshot.merge([{ snapshot: worker(5, 1, 10), live: true }, { snapshot: worker(2, 7, 99), live: false }], 1_000)
    expect(seriesOf(snapshot, "llm_proxy_http_requests_total")[0]?.value).toBe(7)
    expect(seriesOf(snapshot, "llm_proxy_http_request_duration_seconds")[0]?.value).toBe(4)
    expect(seriesOf(snapshot, "llm_proxy_http_requests_in_flight")[0]?.value).toBe(1)
    expect(snapshot.effect.find((metric) => metric.name === "effect_fiber_started")).toMatchObject({ value: 10 })
  })

  it("keeps at most maxSeries series and says how many it left out", () => {
    const many = (offset: number): Snapshot.Snapshot => ({
      families: [counter(Array.from({ length: 10 }, (_, index) => [`/r${offset + index}`, 1] as const))],
      effect: []
    })
    const { dropped, snapshot } = Snapshot.merge([{ snapshot: many(0), live: true }, { snapshot: many(5), live: true }], 12)
    expect(seriesOf(snapshot, "llm_proxy_http_requests_total")).toHaveLength(12)
    expect(dropped).toBe(3)
  })

  it("leaves out a histogram whose bounds differ instead of adding unlike buckets", () => {
    const other: FamilyData = { ...histogram(1, [1], 0.1), bounds: [0.5] }
    const { dropped, snapshot } = Snapshot.merge(
      [
        { snapshot: { families: [histogram(2, [1, 2], 0.5)], effect: [] }, live: true },
        { snapshot: { families: [other], effect: [] }, live: true }
      ],
      1_000
    )
    expect(dropped).toBe(1)
    expect(seriesOf(snapshot, "llm_proxy_http_request_duration_seconds")[0]?.value).toBe(2)
  })

  it.effect("reads this process's metrics as data the renderer takes back", () =>
    Effect.map(Snapshot.local, (snapshot) => {
      expect(snapshot.families.map((family) => family.name)).toContain("llm_proxy_http_requests_total")
      expect(() => renderSnapshot(snapshot.families, Snapshot.toPairs(snapshot.effect))).not.toThrow()
    }))
})
