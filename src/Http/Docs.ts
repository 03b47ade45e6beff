/**
 * `GET /docs`: an interactive reference of the OpenAPI document, rendered by Scalar in the browser. The page
 * loads Scalar from jsDelivr rather than inlining it: the platform's inlined bundle (and Swagger's, which the
 * package barrel loads) kept ~20 MB of JavaScript text in every gateway's heap for a page few ever open.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as OpenApi from "@effect/platform/OpenApi"
import { Effect } from "effect"
import { Api } from "./Api.js"

/** The Scalar release the page loads; the one @effect/platform 0.97 bundles. */
export const scalarVersion = "1.39.3"

/** JSON safe inside a `<script>` element: no `</script>`, no line terminators JavaScript rejects. */
const scriptSafeJson = (value: unknown): string =>
  JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029")

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`)

const page = (): string => {
  const spec = OpenApi.fromApi(Api)
  return `<!doctype html>
<html>
  <head>
    <meta charset="utf-8" />
    <title>${escapeHtml(spec.info.title)}</title>
    <meta name="viewport" content="width=device-width, initial-scale=1" />
  </head>
  <body>
    <script id="api-reference" type="application/json">${scriptSafeJson(spec)}</script>
    <script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference@${scalarVersion}/dist/browser/standalone.min.js" crossorigin></script>
  </body>
</html>`
}

/** Adds `GET /docs` (public) to the served Api. */
export const layer = HttpApiBuilder.Router.use((router) =>
  Effect.suspend(() => router.get("/docs", Effect.succeed(HttpServerResponse.html(page()))))
)
