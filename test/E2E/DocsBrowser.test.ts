/**
 * `/docs` in a real browser with no network beyond loopback: Debian's Chromium, headless, driven by
 * playwright-core. The reference must render the chat endpoint from the gateway's own copy of Scalar's bundle,
 * and the browser must not try to reach anything but the gateway.
 *
 * Chromium is not optional: without it this test fails (`.ci/run` installs it with `apt-get install -y chromium`;
 * elsewhere set CHROMIUM_PATH or install it).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { chromium } from "playwright-core"
import type { BrowserContext } from "playwright-core"
import { scalarBundle } from "../../src/Http/Docs.js"
import { startGateway } from "../support/Gateway.js"

const executablePath = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium"

/** The flags of a closed network: no background traffic, and no name resolves but 127.0.0.1. */
const chromiumArgs = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
]

/** Headless Chromium on a new, empty profile (its --user-data-dir), closed and removed with the scope. */
const launch = Effect.acquireRelease(
  Effect.promise(async () => {
    if (!existsSync(executablePath)) {
      throw new Error(`Chromium is not installed at ${executablePath}: run \`apt-get install -y chromium\` (as .ci/run does) or set CHROMIUM_PATH`)
    }
    const profile = mkdtempSync(join(tmpdir(), "llm-proxy-chromium-"))
    const context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: chromiumArgs,
      viewport: { width: 1280, height: 900 },
      timeout: 60_000
    })
    return { context, profile }
  }),
  ({ context, profile }) =>
    Effect.promise(async () => {
      await context.close()
      rmSync(profile, { recursive: true, force: true })
    })
)

/** The little of the browser's DOM the PNG decoding below uses (the project's types are Node's, not the DOM's). */
interface PageGlobals {
  readonly Image: new () => { src: string; readonly naturalWidth: number; readonly naturalHeight: number; decode(): Promise<void> }
  readonly document: {
    createElement(tag: "canvas"): {
      width: number
      height: number
      getContext(kind: "2d"): {
        drawImage(image: unknown, x: number, y: number): void
        getImageData(x: number, y: number, width: number, height: number): { readonly data: Uint8ClampedArray }
      } | null
    }
  }
}

/** Distinct colours of a PNG and the share of its pixels that are not the background, decoded by the browser itself. */
const colourFigures = (context: BrowserContext, png: Buffer) =>
  Effect.promise(async () => {
    const page = await context.newPage()
    try {
      return await page.evaluate(async (base64) => {
        const { Image, document } = globalThis as unknown as PageGlobals
        const image = new Image()
        image.src = `data:image/png;base64,${base64}`
        await image.decode()
        const canvas = document.createElement("canvas")
        canvas.width = image.naturalWidth
        canvas.height = image.naturalHeight
        const drawing = canvas.getContext("2d")
        if (drawing === null) throw new Error("no 2d canvas")
        drawing.drawImage(image, 0, 0)
        const { data } = drawing.getImageData(0, 0, canvas.width, canvas.height)
        const counts = new Map<number, number>()
        for (let index = 0; index < data.length; index += 4) {
          const colour = (data[index]! << 16) | (data[index + 1]! << 8) | data[index + 2]!
          counts.set(colour, (counts.get(colour) ?? 0) + 1)
        }
        const background = Math.max(...counts.values())
        const pixels = data.length / 4
        return { width: canvas.width, height: canvas.height, colours: counts.size, inked: (pixels - background) / pixels }
      }, png.toString("base64"))
    } finally {
      await page.close()
    }
  })

describe("/docs in headless Chromium, offline", () => {
  it.scopedLive(
    "renders the chat endpoint from the gateway's own Scalar bundle and reaches nothing beyond loopback",
    () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway()
        const { context } = yield* launch
        const page = context.pages()[0] ?? (yield* Effect.promise(() => context.newPage()))

        // Anything not for the gateway is refused and remembered; the test fails if there was any.
        const outside: Array<string> = []
        const served: Array<{ readonly url: string; readonly status: number }> = []
        yield* Effect.promise(() =>
          context.route("**/*", (route) => {
            const url = new URL(route.request().url())
            if (url.hostname === "127.0.0.1" || url.protocol === "data:" || url.protocol === "blob:") return route.continue()
            outside.push(url.href)
            return route.abort("blockedbyclient")
          })
        )
        page.on("response", (response) => served.push({ url: response.url(), status: response.status() }))

        yield* Effect.promise(() => page.goto(`${gateway.baseUrl}/docs`))
        // The reference has rendered when its sidebar lists the first group's endpoints.
        yield* Effect.promise(() => page.getByText("Liveness", { exact: true }).first().waitFor({ state: "visible", timeout: 60_000 }))
        // Open the chat group as a reader would, and wait for the endpoint's section.
        yield* Effect.promise(() => page.getByText("chat", { exact: true }).first().click())
        const heading = page.getByRole("heading", { name: "Create a chat completion" })
        yield* Effect.promise(() => heading.first().waitFor({ state: "visible", timeout: 30_000 }))
        yield* Effect.promise(() => heading.first().scrollIntoViewIfNeeded())
        const path = page.getByText("/v1/chat/completions", { exact: true })
        expect(yield* Effect.promise(() => path.first().isVisible())).toBe(true)
        const description = yield* Effect.promise(() => page.getByText("Creates a chat completion.").first().isVisible())
        expect(description).toBe(true)

        const screenshot = yield* Effect.promise(() => page.screenshot())
        const file = join(tmpdir(), "llm-proxy-docs.png")
        writeFileSync(file, screenshot)
        const figures = yield* colourFigures(context, screenshot)
        // A blank or error page has a handful of colours; the rendered reference (text, code, highlighting) has hundreds.
        expect({ ...figures, file }).toMatchObject({ width: 1280, height: 900 })
        console.log(`the rendered reference: ${JSON.stringify(figures)}, screenshot ${file}`)
        expect(figures.colours, `distinct colours in ${file}`).toBeGreaterThan(400)
        expect(figures.inked, `share of non-background pixels in ${file}`).toBeGreaterThan(0.1)

        expect(outside).toEqual([])
        expect(served).toContainEqual({ url: `${gateway.baseUrl}${scalarBundle?.url}`, status: 200 })
      }),
    120_000
  )
})
