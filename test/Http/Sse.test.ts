import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Deferred, Effect, Exit, Logger, Option, Runtime, Scope } from "effect"
import { EventEmitter } from "node:events"
import { Readable } from "node:stream"
import { dataFrame, doneFrame, framesOf, sseHeaders, writeSse } from "../../src/Http/Sse.js"
import type { SseOptions, SseResponse } from "../../src/Http/Sse.js"
import type { ChatCompletionChunk, Usage } from "../../src/OpenAi/Schemas.js"
import { fromPull } from "../../src/Providers/ChunkSource.js"
import type { ChunkSource } from "../../src/Providers/ChunkSource.js"
import { ProviderError } from "../../src/Providers/Provider.js"
import { sseData } from "../support/Sse.js"

const usage: Usage = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }

const chunk = (choices: ChatCompletionChunk["choices"], extra: Partial<ChatCompletionChunk> = {}): ChatCompletionChunk => ({
  id: "chatcmpl-1",
  object: "chat.completion.chunk",
  created: 1700000000,
  model: "m",
  choices,
  ...extra
})

const content = (text: string) => chunk([{ index: 0, delta: { content: text }, finish_reason: null }])
const first = chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }])
const last = chunk([{ index: 0, delta: {}, finish_reason: "stop" }])
const usageOnly = chunk([], { usage })

const decoder = new TextDecoder()

// --- building the source ----------------------------------------------------------------------------------------

/** A pull of the source: a batch, `None` at the end, or the failure. */
type Pull = Effect.Effect<Chunk.Chunk<ChatCompletionChunk>, Option.Option<ProviderError>>

/** One pull's outcome: a batch, a failure, a defect, or any effect (e.g. one that never completes). */
type Step = Pull

const batch = (...chunks: ReadonlyArray<ChatCompletionChunk>): Step => Exit.succeed(Chunk.fromIterable(chunks))
const failure = (error: ProviderError): Step => Exit.fail(Option.some(error))
const defect = (message: string): Step => Exit.die(new Error(message))

/**
 * A `next` that answers each pull with the next step, then with the end (`None`) once the steps run out. With
 * `async`, every pull completes on a later tick (as a real upstream read does) rather than inside `read()`.
 */
const pullsOf = (steps: ReadonlyArray<Step>, mode: "sync" | "async" = "sync") => {
  const queue = [...steps]
  let pulls = 0
  const next: Pull = Effect.suspend(() => {
    pulls++
    const step = queue.shift() ?? Exit.fail(Option.none())
    return mode === "async" ? Effect.zipRight(Effect.yieldNow(), step) : step
  })
  return { next, pulls: () => pulls }
}

/** A pull that never completes, and records that it started and that it was interrupted. */
const hangingPull = Effect.gen(function* () {
  const started = yield* Deferred.make<void>()
  const interrupted = yield* Deferred.make<void>()
  const step: Step = Deferred.succeed(started, undefined).pipe(
    Effect.zipRight(Effect.never),
    Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
  )
  return { step, started, interrupted }
})

// --- the options and what they observe --------------------------------------------------------------------------

/**
 * Options over the current runtime, a fake Lifecycle registry of terminate callbacks, and `source`: the pulls as a
 * ChunkSource (as the Router makes of a provider's stream) whose first close counts as the release.
 */
const harness = (settings: { readonly includeUsage?: boolean; readonly requestId?: string } = {}) =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const terminators = new Set<() => void>()
    let released = 0
    let unregistered = 0
    const options: SseOptions = {
      includeUsage: settings.includeUsage ?? false,
      requestId: settings.requestId ?? "req-test",
      logDefect: (cause: Cause.Cause<unknown>) => Runtime.runFork(runtime)(Effect.logError("unhandled failure in stream", cause)),
      onTerminate: (terminate) => {
        terminators.add(terminate)
        return () => {
          unregistered++
          terminators.delete(terminate)
        }
      }
    }
    const source = (next: Pull): ChunkSource => {
      const pulled = fromPull(next, runtime, Effect.runSync(Scope.make()))
      let closed = false
      return {
        poll: pulled.poll,
        onReady: pulled.onReady,
        close: () => {
          if (!closed) released++
          closed = true
          pulled.close()
        }
      }
    }
    return {
      options,
      source,
      /** What Lifecycle.terminateAll does at the end of the grace period. */
      terminateAll: () => {
        for (const terminate of [...terminators]) terminate()
      },
      registered: () => terminators.size,
      released: () => released,
      unregistered: () => unregistered
    }
  })

// --- the writer over a stand-in socket ---------------------------------------------------------------------------

/**
 * The fast path's writer (`writeSse`) over a Readable standing in for the socket: each write is one push, a full
 * buffer waits for the next read (the socket's drain), the writer starts at the first read, and destroying the
 * Readable is the client leaving (before the writer started, the caller closes the source, as the hot path does).
 */
const sseBody = (source: ChunkSource, options: SseOptions): Readable => {
  const events = new EventEmitter()
  let started = false
  let ended = false
  const response: SseResponse = {
    write: (text) => body.push(text),
    end: (lastFrame) => {
      ended = true
      body.push(lastFrame)
      body.push(null)
    },
    cork: () => {},
    uncork: () => {},
    destroy: () => body.destroy(),
    once: (event, listener) => events.once(event, listener),
    get writableEnded() {
      return ended
    },
    get writableFinished() {
      return ended
    },
    writableLength: 0
  }
  const body: Readable = new Readable({
    read() {
      if (started) return void events.emit("drain")
      started = true
      writeSse(source, options, response)
    },
    destroy(error, callback) {
      if (started) events.emit("close")
      else source.close()
      callback(error)
    }
  })
  return body
}

// --- reading the body ------------------------------------------------------------------------------------------

/**
 * Reads the body to its end, one piece per `data` event. In flowing mode each event is exactly one push (one
 * socket write when piped), where `for await` (which calls `read()`) would join pieces pushed in the same tick.
 * `onPiece` sees every piece as it comes.
 */
const readAll = (body: Readable, onPiece: (piece: string) => void = () => {}) =>
  Effect.async<{ readonly pieces: ReadonlyArray<string>; readonly text: string }>((resume) => {
    const pieces: Array<string> = []
    body.on("data", (piece: Uint8Array) => {
      const text = decoder.decode(piece)
      pieces.push(text)
      onPiece(text)
    })
    body.once("end", () => resume(Effect.succeed({ pieces, text: pieces.join("") })))
    body.once("error", (error) => resume(Effect.die(error)))
    body.once("close", () => {
      if (!body.readableEnded) resume(Effect.dieMessage("the body closed before its end"))
    })
  })

/** Lets Node run its pending ticks (e.g. the auto-destroy that follows the end). */
const settle = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

const parsed = (payload: string): Record<string, unknown> => JSON.parse(payload) as Record<string, unknown>

const shuttingDownEnvelope = {
  error: {
    message: "The server is shutting down; retry on another instance",
    type: "server_error",
    param: null,
    code: "server_shutting_down"
  }
}

describe("dataFrame / doneFrame", () => {
  it("frames a payload as `data: <payload>` and a blank line", () => {
    expect(decoder.decode(dataFrame("{\"a\":1}"))).toBe("data: {\"a\":1}\n\n")
    expect(decoder.decode(doneFrame)).toBe("data: [DONE]\n\n")
  })

  it("declares the SSE headers that keep proxies from buffering", () => {
    expect(sseHeaders["cache-control"]).toBe("no-cache")
    expect(sseHeaders["x-accel-buffering"]).toBe("no")
  })
})

describe("framesOf", () => {
  it("frames each chunk as `data: <json>` in order, as one string", () => {
    const chunks = [first, content("a\nb"), last]
    const text = framesOf(chunks, false)
    expect(sseData(text).map(parsed)).toEqual(chunks)
  })

  it("drops the usage-only chunk and strips usage elsewhere unless include_usage", () => {
    const withUsage = chunk([{ index: 0, delta: {}, finish_reason: "stop" }], { usage })
    const without = sseData(framesOf([withUsage, usageOnly], false)).map(parsed)
    expect(without).toHaveLength(1)
    expect("usage" in (without[0] ?? {})).toBe(false)
    expect(without[0]?.["choices"]).toEqual(withUsage.choices)
    expect(sseData(framesOf([withUsage, usageOnly], true)).map(parsed)).toEqual([withUsage, usageOnly])
  })

  it("frames nothing for no chunks, or only usage nobody asked for", () => {
    expect(framesOf([], false)).toBe("")
    expect(framesOf([usageOnly], false)).toBe("")
  })
})

describe("writeSse over a socket read on demand", () => {
  for (const mode of ["sync", "async"] as const) {
    it.effect(`writes one frame per chunk and one piece per batch, then [DONE] (${mode} pulls)`, () =>
      Effect.gen(function* () {
        const h = yield* harness()
        const together = [content("Hello"), content(" world\nwith a newline")]
        const { next, pulls } = pullsOf([batch(first), batch(...together), batch(last)], mode)
        const body = sseBody(h.source(next), h.options)
        // pulls on demand: nothing is pulled before the body is read
        expect(pulls()).toBe(0)
        const { pieces, text } = yield* readAll(body)
        const frames = sseData(text)
        expect(frames).toHaveLength(5)
        expect(frames.slice(0, 4).map(parsed)).toEqual([first, ...together, last])
        expect(text.endsWith("data: [DONE]\n\n")).toBe(true)
        // one piece per batch: the two chunks of the second batch arrive together
        expect(pieces).toHaveLength(4)
        expect(sseData(pieces[1] ?? "").map(parsed)).toEqual(together)
        expect(pieces[3]).toBe("data: [DONE]\n\n")
        expect(pulls()).toBe(4)
        yield* settle
        expect(h.released()).toBe(1)
        expect(h.registered()).toBe(0)
        expect(h.unregistered()).toBe(1)
      }))
  }

  it.effect("ends an empty stream with [DONE] alone", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const { text, pieces } = yield* readAll(sseBody(h.source(pullsOf([]).next), h.options))
      expect(text).toBe("data: [DONE]\n\n")
      expect(pieces).toHaveLength(1)
      yield* settle
      expect(h.released()).toBe(1)
      expect(h.registered()).toBe(0)
    }))

  it.effect("drops the usage-only chunk and strips usage elsewhere unless include_usage", () =>
    Effect.gen(function* () {
      const h = yield* harness({ includeUsage: false })
      const withUsage = chunk([{ index: 0, delta: {}, finish_reason: "stop" }], { usage })
      const { next } = pullsOf([batch(first, content("Hi")), batch(withUsage, usageOnly)])
      const { text } = yield* readAll(sseBody(h.source(next), h.options))
      const frames = sseData(text)
      expect(frames).toHaveLength(4)
      const objects = frames.slice(0, 3).map(parsed)
      for (const object of objects) expect("usage" in object).toBe(false)
      expect(objects[2]?.["choices"]).toEqual(withUsage.choices)
      expect(frames[3]).toBe("[DONE]")
    }))

  it.effect("keeps the usage-only chunk (choices []) before [DONE] with include_usage", () =>
    Effect.gen(function* () {
      const h = yield* harness({ includeUsage: true })
      const { next } = pullsOf([batch(first, content("Hi")), batch(last), batch(usageOnly)])
      const { text } = yield* readAll(sseBody(h.source(next), h.options))
      const frames = sseData(text)
      expect(frames).toHaveLength(5)
      const beforeDone = parsed(frames[3] ?? "")
      expect(beforeDone["choices"]).toEqual([])
      expect(beforeDone["usage"]).toEqual(usage)
      expect(frames[4]).toBe("[DONE]")
    }))

  for (const mode of ["sync", "async"] as const) {
    it.effect(`pulls again after a batch that frames to nothing rather than stalling (${mode} pulls)`, () =>
      Effect.gen(function* () {
        const h = yield* harness({ includeUsage: false })
        const { next, pulls } = pullsOf([batch(first), batch(usageOnly), batch(usageOnly), batch(last)], mode)
        const { text, pieces } = yield* readAll(sseBody(h.source(next), h.options))
        expect(sseData(text)).toEqual([JSON.stringify(first), JSON.stringify(last), "[DONE]"])
        // no empty piece is ever written
        expect(pieces).toHaveLength(3)
        expect(pulls()).toBe(5)
        yield* settle
        expect(h.released()).toBe(1)
      }))
  }

  it.effect("ends with [DONE] alone when the only batch frames to nothing", () =>
    Effect.gen(function* () {
      const h = yield* harness({ includeUsage: false })
      const { text } = yield* readAll(sseBody(h.source(pullsOf([batch(usageOnly)], "async").next), h.options))
      expect(text).toBe("data: [DONE]\n\n")
    }))

  for (const mode of ["sync", "async"] as const) {
    it.effect(`turns a failure after the first frame into exactly one error frame and no [DONE] (${mode} pulls)`, () =>
      Effect.gen(function* () {
        const h = yield* harness()
        const error = new ProviderError({ reason: "Unavailable", message: "upstream went away", provider: "openai", status: 503 })
        const { next, pulls } = pullsOf([batch(first), batch(content("partial")), failure(error), batch(last)], mode)
        const { text } = yield* readAll(sseBody(h.source(next), h.options))
        const frames = sseData(text)
        expect(frames).toHaveLength(3)
        expect(text).not.toContain("[DONE]")
        expect(parsed(frames[1] ?? "")["choices"]).toEqual(content("partial").choices)
        expect(parsed(frames[2] ?? "")).toEqual({
          error: { message: "upstream went away", type: "upstream_error", param: null, code: "upstream_unavailable" }
        })
        expect(frames.filter((frame) => frame.includes("\"error\""))).toHaveLength(1)
        // nothing is pulled past the failure
        expect(pulls()).toBe(3)
        yield* settle
        expect(h.released()).toBe(1)
        expect(h.registered()).toBe(0)
      }))
  }

  it.effect("turns a failure before any chunk into an error frame alone", () =>
    Effect.gen(function* () {
      const h = yield* harness({ includeUsage: true })
      const error = new ProviderError({ reason: "Timeout", message: "too slow", provider: "router" })
      const { text } = yield* readAll(sseBody(h.source(pullsOf([failure(error)]).next), h.options))
      const frames = sseData(text)
      expect(frames).toHaveLength(1)
      expect(parsed(frames[0] ?? "")).toEqual({
        error: { message: "too slow", type: "timeout_error", param: null, code: "upstream_timeout" }
      })
      yield* settle
      expect(h.released()).toBe(1)
    }))

  it.effect("turns a defect after the first frame into an internal_error frame with the request id, and logs it", () => {
    const logged: Array<{ readonly message: unknown; readonly cause: string }> = []
    const capture = Logger.make(({ message, cause }) => {
      logged.push({ message, cause: String(cause) })
    })
    return Effect.gen(function* () {
      const h = yield* harness({ requestId: "req-sse-1" })
      const { next } = pullsOf([batch(first), defect("secret stack detail"), batch(last)], "async")
      const { text } = yield* readAll(sseBody(h.source(next), h.options))
      const frames = sseData(text)
      expect(frames).toHaveLength(2)
      expect(text).not.toContain("[DONE]")
      expect(text).not.toContain("secret stack detail")
      const error = parsed(frames[1] ?? "")["error"] as Record<string, unknown>
      expect(error["code"]).toBe("internal_error")
      expect(error["type"]).toBe("server_error")
      expect(String(error["message"])).toContain("req-sse-1")
      // the defect itself goes to the log only
      expect(logged.some(({ cause }) => cause.includes("secret stack detail"))).toBe(true)
      yield* settle
      expect(h.released()).toBe(1)
      expect(h.registered()).toBe(0)
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
  })

  it.live("ends a stream that is still running with a server_shutting_down frame when terminate fires", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const hanging = yield* hangingPull
      const { next, pulls } = pullsOf([batch(first), batch(content("still thinking")), hanging.step])
      const body = sseBody(h.source(next), h.options)
      const twoSeen = yield* Deferred.make<void>()
      let seen = 0
      const reading = yield* Effect.fork(
        readAll(body, () => {
          if (++seen === 2) Deferred.unsafeDone(twoSeen, Exit.void)
        })
      )
      // both chunks are written while the stream is still open, and the third pull hangs
      yield* Deferred.await(twoSeen).pipe(Effect.timeout("2 seconds"))
      yield* Deferred.await(hanging.started).pipe(Effect.timeout("2 seconds"))
      expect(h.registered()).toBe(1)
      expect(h.released()).toBe(0)
      h.terminateAll()
      const { text } = yield* reading.await.pipe(Effect.flatten, Effect.timeout("2 seconds"))
      const frames = sseData(text)
      expect(frames).toHaveLength(3)
      expect(parsed(frames[2] ?? "")).toEqual(shuttingDownEnvelope)
      expect(text).not.toContain("[DONE]")
      // the pull in flight is interrupted, the callback unregistered, the upstream released once
      yield* Deferred.await(hanging.interrupted).pipe(Effect.timeout("2 seconds"))
      expect(pulls()).toBe(3)
      expect(h.registered()).toBe(0)
      expect(h.unregistered()).toBe(1)
      yield* settle
      expect(h.released()).toBe(1)
    }))

  it.live("ends with the shutdown frame alone when terminate fires before the first chunk", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const hanging = yield* hangingPull
      const { next, pulls } = pullsOf([hanging.step])
      const body = sseBody(h.source(next), h.options)
      const reading = yield* Effect.fork(readAll(body))
      yield* Deferred.await(hanging.started).pipe(Effect.timeout("2 seconds"))
      h.terminateAll()
      const { text } = yield* reading.await.pipe(Effect.flatten, Effect.timeout("2 seconds"))
      expect(sseData(text).map(parsed)).toEqual([shuttingDownEnvelope])
      expect(pulls()).toBe(1)
      yield* Deferred.await(hanging.interrupted).pipe(Effect.timeout("2 seconds"))
      yield* settle
      expect(h.released()).toBe(1)
    }))

  it.effect("ignores a terminate callback fired after the body ended", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      let terminate: (() => void) | undefined
      const options: SseOptions = {
        ...h.options,
        onTerminate: (callback) => {
          terminate = callback
          return h.options.onTerminate(callback)
        }
      }
      const body = sseBody(h.source(pullsOf([batch(first)]).next), options)
      const { text } = yield* readAll(body)
      expect(sseData(text)).toEqual([JSON.stringify(first), "[DONE]"])
      // e.g. Lifecycle.terminateAll iterating a copy that still holds this callback
      terminate?.()
      body.destroy()
      yield* settle
      expect(h.released()).toBe(1)
      expect(h.unregistered()).toBe(1)
    }))

  it.live("interrupts the pull in flight and releases once when destroyed early (the client left)", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const hanging = yield* hangingPull
      const { next, pulls } = pullsOf([batch(first), hanging.step])
      const body = sseBody(h.source(next), h.options)
      const firstPiece = yield* Effect.promise(async () => {
        for await (const piece of body as AsyncIterable<Uint8Array>) {
          // the client leaves while the next pull waits; leaving the loop destroys the body, as a closed socket does
          await Effect.runPromise(Deferred.await(hanging.started))
          return decoder.decode(piece)
        }
        return undefined
      }).pipe(Effect.timeout("2 seconds"))
      expect(firstPiece).toBe(`data: ${JSON.stringify(first)}\n\n`)
      yield* Deferred.await(hanging.interrupted).pipe(Effect.timeout("2 seconds"))
      expect(body.destroyed).toBe(true)
      expect(pulls()).toBe(2)
      expect(h.registered()).toBe(0)
      body.destroy()
      h.terminateAll()
      yield* settle
      expect(h.released()).toBe(1)
      expect(h.unregistered()).toBe(1)
    }))

  it.live("releases once and pulls nothing when destroyed before it is read", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const { next, pulls } = pullsOf([batch(first)])
      const body = sseBody(h.source(next), h.options)
      body.destroy()
      yield* settle
      body.destroy()
      expect(pulls()).toBe(0)
      expect(h.released()).toBe(1)
      expect(h.registered()).toBe(0)
    }))
})

describe("writeSse (the hot path's writer)", () => {
  /** A response that records its writes and corks, and reports itself full after `capacity` writes until drained. */
  const fakeResponse = (capacity = Number.POSITIVE_INFINITY) => {
    const events = new EventEmitter()
    const writes: Array<string> = []
    let corked = 0
    let flushes = 0
    let pending = 0
    let ended = false
    const response: SseResponse = {
      write: (text) => {
        writes.push(text)
        pending++
        return pending < capacity
      },
      end: (lastFrame) => {
        writes.push(decoder.decode(lastFrame))
        ended = true
        if (corked > 0) flushes++
        corked = 0
        events.emit("close")
      },
      cork: () => {
        corked++
      },
      uncork: () => {
        if (corked > 0 && --corked === 0) flushes++
      },
      once: (event, listener) => events.once(event, listener),
      destroy: () => events.emit("close"),
      get writableEnded() {
        return ended
      },
      get writableFinished() {
        return ended
      },
      writableLength: 0
    }
    return {
      response,
      writes,
      flushes: () => flushes,
      drain: () => {
        pending = 0
        events.emit("drain")
      },
      leave: () => events.emit("close")
    }
  }

  it.effect("writes every ready batch and [DONE] in one corked burst", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const fake = fakeResponse()
      writeSse(h.source(pullsOf([batch(first), batch(content("Hi")), batch(last)]).next), h.options, fake.response)
      expect(sseData(fake.writes.join("")).slice(-1)).toEqual(["[DONE]"])
      expect(sseData(fake.writes.join(""))).toHaveLength(4)
      // all of it went out in one flush of the corked socket
      expect(fake.flushes()).toBe(1)
      expect(h.released()).toBe(1)
      expect(h.registered()).toBe(0)
    }))

  it.effect("stops taking batches while the socket is full and resumes on drain", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const fake = fakeResponse(1)
      const { next, pulls } = pullsOf([batch(first), batch(content("a")), batch(content("b")), batch(last)])
      writeSse(h.source(next), h.options, fake.response)
      // one write filled the socket: nothing more is taken from the source until it drains
      expect(fake.writes).toHaveLength(1)
      expect(pulls()).toBe(1)
      fake.drain()
      expect(fake.writes).toHaveLength(2)
      expect(pulls()).toBe(2)
      fake.drain()
      fake.drain()
      fake.drain()
      expect(sseData(fake.writes.join("")).at(-1)).toBe("[DONE]")
      expect(h.released()).toBe(1)
    }))

  it.live("closes the source and interrupts the pull in flight when the client leaves", () =>
    Effect.gen(function* () {
      const h = yield* harness()
      const hanging = yield* hangingPull
      const fake = fakeResponse()
      const { next } = pullsOf([batch(first), hanging.step])
      writeSse(h.source(next), h.options, fake.response)
      yield* Deferred.await(hanging.started).pipe(Effect.timeout("2 seconds"))
      expect(sseData(fake.writes.join("")).map(parsed)).toEqual([first])
      fake.leave()
      yield* Deferred.await(hanging.interrupted).pipe(Effect.timeout("2 seconds"))
      expect(h.released()).toBe(1)
      expect(h.registered()).toBe(0)
      expect(fake.writes.join("")).not.toContain("[DONE]")
    }))
})
