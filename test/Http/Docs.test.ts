/**
 * `/docs` and the Scalar bundle it loads, both served by the gateway: the bundle is the installed package's file,
 * byte for byte, at a URL that names its version, cached for a year, with an ETag and a Last-Modified that a
 * conditional request is answered 304 against. (The page itself rendering in a browser: test/E2E/DocsBrowser.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { readFileSync, statSync } from "node:fs"
import { scalarBundle } from "../../src/Http/Docs.js"
import { startGateway } from "../support/Gateway.js"
import { call } from "../support/Http.js"

const bundle = scalarBundle

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

const fetchBytes = (url: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers })
    return { status: response.status, headers: response.headers, bytes: new Uint8Array(await response.arrayBuffer()) }
  })

describe("the Scalar bundle", () => {
  it("is the installed @scalar/api-reference's standalone file, the release @effect/platform 0.97 pins", () => {
    expect(bundle).toBeDefined()
    expect(bundle?.version).toBe("1.39.3")
    expect(bundle?.path).toMatch(/node_modules\/@scalar\/api-reference\/dist\/browser\/standalone\.js$/)
    expect(bundle?.url).toBe("/docs/scalar-api-reference-1.39.3.js")
  })

  it.scopedLive("is served byte for byte, versioned, cacheable for a year, with ETag and Last-Modified", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const path = bundle?.path ?? ""
      const answer = yield* fetchBytes(`${gateway.baseUrl}${bundle?.url}`)
      expect(answer.status).toBe(200)
      expect(answer.headers.get("content-type")).toBe("text/javascript; charset=utf-8")
      expect(answer.headers.get("cache-control")).toBe("public, max-age=31536000, immutable")
      expect(answer.headers.get("content-length")).toBe(String(statSync(path).size))
      expect(answer.headers.get("last-modified")).toBe(statSync(path).mtime.toUTCString())
      expect(answer.headers.get("etag")).toMatch(/^(W\/)?"[0-9a-f]+-[0-9a-f]+"$/)
      expect(answer.headers.get("x-request-id")).toBeTruthy()
      expect(sha256(answer.bytes)).toBe(sha256(readFileSync(path)))
      // no key needed, like the page
      expect(answer.headers.get("www-authenticate")).toBeNull()
    }))

  it.scopedLive("answers a conditional request for the same file 304 with no body, and a stale one 200", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const url = `${gateway.baseUrl}${bundle?.url}`
      const first = yield* fetchBytes(url)
      const etag = first.headers.get("etag") ?? ""
      const lastModified = first.headers.get("last-modified") ?? ""

      const byTag = yield* fetchBytes(url, { "if-none-match": etag })
      expect(byTag.status).toBe(304)
      expect(byTag.bytes.length).toBe(0)
      expect(byTag.headers.get("etag")).toBe(etag)
      expect(byTag.headers.get("cache-control")).toBe("public, max-age=31536000, immutable")
      // a list, and the strong form of a weak tag, match too (weak comparison)
      expect((yield* fetchBytes(url, { "if-none-match": `"other", ${etag.replace(/^W\//, "")}` })).status).toBe(304)
      expect((yield* fetchBytes(url, { "if-modified-since": lastModified })).status).toBe(304)

      const stale = yield* fetchBytes(url, { "if-none-match": '"0-0"' })
      expect(stale.status).toBe(200)
      expect(stale.bytes.length).toBe(first.bytes.length)
      // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
      expect((yield* fetchBytes(url, { "if-none-match": '"0-0"', "if-modified-since": lastModified })).status).toBe(200)
      expect((yield* fetchBytes(url, { "if-modified-since": new Date(Date.parse(lastModified) - 60_000).toUTCString() })).status).toBe(200)
    }))

  it.scopedLive("is a route like the others: another method is 405 with Allow, another version 404", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const post = yield* call(`${gateway.baseUrl}${bundle?.url}`, { method: "POST", body: "{}", headers: { "content-type": "application/json" } })
      expect(post.status).toBe(405)
      expect(post.headers.get("allow")).toBe("GET")
      expect((yield* call(`${gateway.baseUrl}/docs/scalar-api-reference-0.0.1.js`)).status).toBe(404)
    }))
})

describe("GET /docs", () => {
  it.scopedLive("is revalidated on each visit (it embeds the current document) and needs no key", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const page = yield* call(`${gateway.baseUrl}/docs`)
      expect(page.status).toBe(200)
      expect(page.headers.get("cache-control")).toBe("no-cache")
      expect(page.text).toContain(`<script src="${bundle?.url}"></script>`)
      expect(page.text).toContain("withDefaultFonts")
    }))
})
