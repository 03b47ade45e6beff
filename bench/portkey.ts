/** The peer: Portkey's gateway (@portkey-ai/gateway), installed into a temporary folder and routed to the bench upstream. */
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort, pinned, spawnTracked, stopChild, waitForHttp } from "./processes.js"
import { ttftPath } from "./targets.js"
import type { RunningTarget, Upstream } from "./targets.js"

export const portkeyVersion = "1.15.2"
const honoNodeServerPin = "1.14.1"

/** Installs @portkey-ai/gateway with the @hono/node-server pin, reusing an earlier install in the temp dir. */
export const installPortkey = (): string => {
  const dir = join(tmpdir(), `llm-proxy-bench-portkey-${portkeyVersion}-hono-${honoNodeServerPin}`)
  const installed = (name: string) => {
    const file = join(dir, "node_modules", ...name.split("/"), "package.json")
    if (!existsSync(file)) return undefined
    const parsed: unknown = JSON.parse(readFileSync(file, "utf8"))
    const version = typeof parsed === "object" && parsed !== null ? (parsed as { version?: unknown }).version : undefined
    return typeof version === "string" ? version : undefined
  }
  if (installed("@portkey-ai/gateway") === portkeyVersion && installed("@hono/node-server") === honoNodeServerPin) {
    console.log(`using @portkey-ai/gateway@${portkeyVersion} from ${dir}`)
    return dir
  }
  console.log(`installing @portkey-ai/gateway@${portkeyVersion} into ${dir} (with @hono/node-server pinned to ${honoNodeServerPin})…`)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify(
      {
        name: "llm-proxy-bench-peer",
        private: true,
        type: "module",
        dependencies: { "@portkey-ai/gateway": portkeyVersion },
        // Without the pin, streams fail with "TypeError: immutable" (Portkey-AI/gateway#1389).
        overrides: { "@hono/node-server": honoNodeServerPin }
      },
      null,
      2
    )
  )
  const npm = process.platform === "win32" ? "npm.cmd" : "npm"
  const result = spawnSync(npm, ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel", "error"], {
    cwd: dir,
    stdio: "inherit"
  })
  if (result.status !== 0) throw new Error(`npm install of @portkey-ai/gateway@${portkeyVersion} failed`)
  const hono = installed("@hono/node-server")
  if (hono !== honoNodeServerPin) throw new Error(`@hono/node-server resolved to ${String(hono)}, not ${honoNodeServerPin}`)
  return dir
}

export const startPortkey = async (backend: Upstream, work: string, dir: string): Promise<RunningTarget> => {
  const entry = join(dir, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
  if (!existsSync(entry)) throw new Error(`${entry} is missing`)
  const port = await freePort()
  const logFile = join(work, "portkey.log")
  const child = spawnTracked(pinned(0, [process.execPath, entry, `--port=${port}`, "--headless"]), {
    name: "portkey",
    logFile,
    cwd: dir,
    env: { ...process.env, NODE_ENV: "production" }
  })
  const origin = `http://127.0.0.1:${port}`
  await waitForHttp(`${origin}/`, child, "Portkey's gateway", logFile)
  return {
    name: "peer",
    label: `portkey ${portkeyVersion}`,
    pid: child.pid ?? -1,
    upstreamPid: backend.child.pid,
    endpoint: (shape) => ({
      url: `${origin}/v1/chat/completions`,
      headers: {
        authorization: "Bearer sk-bench",
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": `${backend.origin}${shape === "ttft" ? ttftPath : ""}/v1`
      },
      model: "bench"
    }),
    stop: () => stopChild(child)
  }
}
