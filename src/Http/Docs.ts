/**
 * `GET /docs`: an interactive reference of the OpenAPI document, rendered in the browser by Scalar's standalone
 * bundle, which the gateway serves itself: no CDN, so the page works in a closed network.
 *
 * The bundle is the file `@scalar/api-reference/browser/standalone.js` of the installed package (the release
 * @effect/platform 0.97 pins). It is streamed from disk on each request that needs it, never held in memory (the
 * platform's inlined copy kept megabytes of JavaScript text in every gateway's heap for a page few ever open).
 * Its URL carries the package's version and is cached for a year (`immutable`); it also has an ETag and a
 * Last-Modified, and a conditional request is answered 304 without touching the file's contents.
 *
 * The package is a development dependency: the Docker image keeps that one file of it. An app that mounts the
 * gateway without the package gets a page that says so and links the OpenAPI document.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as OpenApi from "@effect/platform/OpenApi"
import { Effect } from "effect"
import { createReadStream, readFileSync } from "node:fs"
import { stat } from "node:fs/promises"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { Api } from "./Api.js"

/** The Scalar bundle on disk: its path, its package's version, and the URL the page loads it from. */
export interface ScalarBundle {
  readonly path: string
  readonly version: string
  readonly url: `/${string}`
}

/** The package's standalone bundle, found as Node resolves packages from here; `undefined` when not installed. */
const findBundle = (): ScalarBundle | undefined => {
  try {
    const path = createRequire(import.meta.url).resolve("@scalar/api-reference/browser/standalone.js")
    // …/@scalar/api-reference/dist/browser/standalone.js: the manifest is two folders up from `dist/browser`.
    const manifest: unknown = JSON.parse(readFileSync(join(dirname(path), "..", "..", "package.json"), "utf8"))
    const version =
      typeof manifest === "object" && manifest !== null && "version" in manifest && typeof manifest.version === "string" ? manifest.version : undefined
    return version === undefined || !/^[0-9A-Za-z.+-]+$/.test(version) ? undefined : { path, version, url: `/docs/scalar-api-reference-${version}.js` }
  } catch {
    return undefined
  }
}

/** The installed bundle, looked up once when this module loads. */
export const scalarBundle: ScalarBundle | undefined = findBundle()

/** The paths this module serves (the Server's 405 check and route list read them). */
export const paths: ReadonlyArray<`/${string}`> = scalarBundle === undefined ? ["/docs"] : ["/docs", scalarBundle.url]

/** A year: the bundle's URL changes with its version, so a cached copy never goes stale. */
const bundleCacheControl = "public, max-age=31536000, immutable"

/** JSON safe inside a `<script>` element: no `</script>`, no line terminators JavaScript rejects. */
const scriptSafeJson = (value: unknown): string =>
  JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029")

const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`)

/**
 * Scalar's settings: no web fonts (they would come from Scalar's servers), no developer toolbar (its Share and
 * Generate SDKs upload the document to Scalar's registry).
 * The page stays within the gateway.
 */
const scalarConfiguration = { withDefaultFonts: false, showToolbar: "never", _integration: "html" }

const page = (bundle: ScalarBundle | undefined): string => {
  // The same document `/openapi.json` serves (the platform caches it per Api; the options must match).
  const spec = OpenApi.fromApi(Api, { additionalPropertiesStrategy: "allow" })
  const title = escapeHtml(spec.info.title)
  const body =
    bundle === undefined
      ? `<h1>${title}</h1>
    <p>The interactive reference needs the package <code>@scalar/api-reference</code> installed beside the gateway.
    The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>.</p>`
      : `<script id="api-reference" type="application/json" data-configuration="${escapeHtml(JSON.stringify(scalarConfiguration))}">${scriptSafeJson(spec)}</script>
    <script src="${escapeHtml(bundle.url)}"></script>`
  return `<!doctype html>
<html>
  <head>
    <meta charset="utf-8" />
    <title>${title}</title>
    <meta name="viewport" content="width=device-width, initial-scale=1" />
  </head>
  <body>
    ${body}
  </body>
</html>`
}

/** A strong validator of the file as it is now: its size and modification time. */
const etagOf = (size: number, modified: Date): string => `"${size.toString(16)}-${modified.getTime().toString(16)}"`

/** The entity tags of an `If-None-Match` header, compared weakly (RFC 9110 §13.1.2). */
const matchesEtag = (header: string, etag: string): boolean => {
  const opaque = (tag: string) => tag.trim().replace(/^W\//, "")
  return header.trim() === "*" || header.split(",").some((tag) => opaque(tag) === opaque(etag))
}

/** Whether the client's copy is current: its `If-None-Match` names the ETag, or else `If-Modified-Since` is not older. */
const isFresh = (headers: Readonly<Record<string, string | undefined>>, etag: string, modified: Date): boolean => {
  const ifNoneMatch = headers["if-none-match"]
  if (ifNoneMatch !== undefined) return matchesEtag(ifNoneMatch, etag)
  const since = Date.parse(headers["if-modified-since"] ?? "")
  return !Number.isNaN(since) && Math.floor(modified.getTime() / 1000) * 1000 <= since
}

/**
 * The bundle from disk: a 304 when the client's copy is current, else a read stream of the file piped to the
 * socket (the platform destroys it if the client leaves), its length and validators from the same stat.
 */
const serveBundle = (bundle: ScalarBundle) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const info = yield* Effect.promise(() => stat(bundle.path))
    const etag = etagOf(info.size, info.mtime)
    const headers = {
      "cache-control": bundleCacheControl,
      "content-type": "text/javascript; charset=utf-8",
      etag,
      "last-modified": info.mtime.toUTCString()
    }
    if (isFresh(request.headers, etag, info.mtime)) return HttpServerResponse.empty({ status: 304, headers })
    const file = createReadStream(bundle.path, { start: 0, end: Math.max(0, info.size - 1) })
    return HttpServerResponse.raw(file, { headers: { ...headers, "content-length": String(info.size) } })
  })

/** Adds `GET /docs` (public) and, when the package is installed, the bundle's URL to the served Api. */
export const layer = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    yield* router.get(
      "/docs",
      Effect.sync(() => HttpServerResponse.html(page(scalarBundle)).pipe(HttpServerResponse.setHeader("cache-control", "no-cache")))
    )
    if (scalarBundle === undefined) {
      yield* Effect.logWarning("@scalar/api-reference is not installed: /docs shows a link to /openapi.json only")
      return
    }
    yield* router.get(scalarBundle.url, serveBundle(scalarBundle))
  })
)
