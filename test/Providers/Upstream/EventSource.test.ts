/**
 * The upstream event source on its own: backpressure counted in bytes, and a dialect's decoder that throws.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { PassThrough } from "node:stream"
import { ProviderError } from "../../../src/Providers/ProviderError.js"
import { eventSource } from "../../../src/Providers/Upstream/EventSource.js"
import type { EventBatch } from "../../../src/Providers/Upstream/EventSource.js"
import type { SseEvent } from "../../../src/Providers/Upstream/SseDecoder.js"
import { transportOf } from "../../../src/Providers/Upstream/Transport.js"
import type { TransportService } from "../../../src/Providers/Upstream/Transport.js"
import { Agent } from "undici"

const transport = (limits: Partial<TransportService["limits"]> = {}): TransportService => transportOf(new Agent(), limits)

const asData = (events: ReadonlyArray<SseEvent>): EventBatch<string> => ({ items: events.map((event) => event.data), done: false })

const sourceOver = (decode: (events: ReadonlyArray<SseEvent>) => EventBatch<string> = asData, limits: Partial<TransportService["limits"]> = {}) => {
  const body = new PassThrough()
  const source = eventSource(transport(limits), "test", { status: 200, headers: {}, body }, decode)
  return { body, source }
}

describe("eventSource backpressure (finding 6)", () => {
  it("pauses the upstream once the bytes waiting for the consumer pass the buffer bound, whatever their count", () => {
    const { body, source } = sourceOver(asData, { streamBufferBytes: 1024 * 1024 })
    const event = `data: ${"x".repeat(4 * 1024 * 1024)}\n\n`
    body.write(event)
    // one item of 4 MB is already past the bound: the body is paused at once, not after 256 items
    expect(body.isPaused()).toBe(true)
    const take = source.poll()
    expect(Array.isArray(take) && take.length).toBe(1)
    expect(body.isPaused()).toBe(false)
  })

  it("keeps reading small events until their bytes, not their count, reach the bound", () => {
    const { body, source } = sourceOver(asData, { streamBufferBytes: 64 * 1024 })
    for (let index = 0; index < 1000; index++) body.write("data: s\n\n")
    expect(body.isPaused()).toBe(false)
    body.write(`data: ${"y".repeat(70 * 1024)}\n\n`)
    expect(body.isPaused()).toBe(true)
    const take = source.poll()
    expect(Array.isArray(take) && take.length).toBe(1001)
  })
})

describe("eventSource under a decoder that throws", () => {
  it("ends the stream with MalformedResponse and destroys the body, never throwing out of the data callback", () => {
    const { body, source } = sourceOver(() => {
      throw new TypeError("Cannot read properties of null")
    })
    expect(() => body.write("data: {}\n\n")).not.toThrow()
    const take = source.poll()
    expect(take).toBeInstanceOf(ProviderError)
    expect((take as ProviderError).reason).toBe("MalformedResponse")
    expect(body.destroyed).toBe(true)
  })

  it("fails an event larger than the event bound with MalformedResponse", () => {
    const { body, source } = sourceOver(asData, { maxEventBytes: 1024 })
    body.write(`data: ${"z".repeat(2048)}`)
    const take = source.poll()
    expect(take).toBeInstanceOf(ProviderError)
    expect((take as ProviderError).message).toContain("larger than 1024 bytes")
  })
})

describe("eventSource against the transport's held-bytes bound", () => {
  it("counts each stream's event in progress against the bound every stream shares, and gives it back", () => {
    const shared = transport({ maxHeldBytes: 1000, maxEventBytes: 100_000 })
    const open = () => {
      const body = new PassThrough()
      return { body, source: eventSource(shared, "test", { status: 200, headers: {}, body }, asData) }
    }
    const first = open()
    const second = open()
    first.body.write(`data: ${"a".repeat(600)}`)
    expect(shared.held.held).toBeGreaterThanOrEqual(600)
    expect(first.source.poll()).toBeUndefined()
    // The second stream's event would take the streams together past the bound: it fails; the first goes on.
    second.body.write(`data: ${"b".repeat(600)}`)
    const refused = second.source.poll()
    expect(refused).toBeInstanceOf(ProviderError)
    expect((refused as ProviderError).message).toContain("UPSTREAM_MAX_HELD_BYTES")
    expect(second.body.destroyed).toBe(true)
    first.body.write("\n\n")
    expect(first.source.poll()).toEqual(["a".repeat(600)])
    expect(shared.held.held).toBe(0)
  })

  it("whatever arrives, and however the stream ends (end, close, failure), it holds nothing afterwards", () =>
    fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.string({ maxLength: 300 }), fc.constantFrom("\n", "\n\n", "\r\n", "data: ", "data: [DONE]\n\n")), { maxLength: 30 }),
        fc.constantFrom("end" as const, "close" as const, "destroy" as const),
        async (pieces, how) => {
          const shared = transport({ maxHeldBytes: 2000, maxEventBytes: 1500 })
          const body = new PassThrough()
          const source = eventSource(shared, "test", { status: 200, headers: {}, body }, asData)
          for (const piece of pieces) if (!body.destroyed) body.write(piece)
          if (how === "end") body.end()
          else if (how === "close") source.close()
          else body.destroy(new Error("reset"))
          // A consumer drains it: the 'end' of a paused body comes once its data is read.
          while (source.poll() !== undefined && !body.destroyed && !body.readableEnded) continue
          await new Promise<void>((done) => setImmediate(done))
          expect(shared.held.held).toBe(0)
        }
      ),
      { numRuns: 200 }
    ))
})
