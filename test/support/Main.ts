/**
 * `src/main.ts` run as its own process (through tsx, from the repository root), for what only a real start-up shows:
 * how it exits and what it prints.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))

/**
 * Starts main.ts with `env` (CONFIG_FILE and WORKERS removed unless given) and resolves with its exit code and stderr
 * once it exits; rejects when it has not exited within 20 s.
 */
export const runMainUntilExit = (env: NodeJS.ProcessEnv): Promise<{ readonly code: number | null; readonly stderr: string }> => {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  if (env["CONFIG_FILE"] === undefined) delete childEnv["CONFIG_FILE"]
  if (env["WORKERS"] === undefined) delete childEnv["WORKERS"]
  return new Promise((resolve, reject) => {
    const child = spawn("npx", ["tsx", "src/main.ts"], { cwd: root, env: childEnv, stdio: ["ignore", "pipe", "pipe"] })
    let stderr = ""
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text))
    child.stdout.resume()
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`main.ts did not exit within 20 s; stderr so far: ${stderr}`))
    }, 20_000)
    child.on("error", reject)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stderr })
    })
  })
}
