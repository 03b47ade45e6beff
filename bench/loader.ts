/** The harness side of the load generator: bench/load.ts runs as a child on the load core, driven over IPC. */
import type { ChildProcess } from "node:child_process"
import { isAlive, pinned, spawnTracked, stopChild, tsxCommand, waitForMessage } from "./processes.js"
import type { Job, JobResult, LoaderMessage, LoadResult, ProbeResult, SequentialResult } from "./protocol.js"

export class Loader {
  private nextId = 1
  private readonly pending = new Map<number, { readonly done: (result: JobResult) => void; readonly fail: (error: Error) => void }>()
  private constructor(readonly child: ChildProcess) {
    child.on("message", (message: unknown) => this.onMessage(message))
    child.once("exit", (code, signal) => {
      for (const { fail } of this.pending.values()) fail(new Error(`the load generator exited (code ${String(code)}, signal ${String(signal)})`))
      this.pending.clear()
    })
  }

  static async start(): Promise<Loader> {
    const child = spawnTracked(pinned(1, tsxCommand("load.ts")), { name: "load generator", ipc: true })
    await waitForMessage(child, "ready", "the load generator")
    return new Loader(child)
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  private onMessage(raw: unknown) {
    const message = raw as LoaderMessage
    if (!("id" in message)) return
    const waiter = this.pending.get(message.id)
    if (waiter === undefined) return
    this.pending.delete(message.id)
    if (message.ok) waiter.done(message.result)
    else waiter.fail(new Error(`load generator: ${message.error}`))
  }

  run(job: Job): Promise<JobResult> {
    const id = this.nextId++
    return new Promise((done, fail) => {
      this.pending.set(id, { done, fail })
      this.child.send({ id, job })
    })
  }

  async load(job: Omit<Extract<Job, { kind: "load" }>, "kind">): Promise<LoadResult> {
    const result = await this.run({ kind: "load", ...job })
    if (result.kind !== "load") throw new Error("unexpected reply from the load generator")
    return result
  }

  async probe(job: Omit<Extract<Job, { kind: "probe" }>, "kind">): Promise<ProbeResult> {
    const result = await this.run({ kind: "probe", ...job })
    if (result.kind !== "probe") throw new Error("unexpected reply from the load generator")
    return result
  }

  async sequential(job: Omit<Extract<Job, { kind: "sequential" }>, "kind">): Promise<SequentialResult> {
    const result = await this.run({ kind: "sequential", ...job })
    if (result.kind !== "sequential") throw new Error("unexpected reply from the load generator")
    return result
  }

  async stop(): Promise<void> {
    if (isAlive(this.child)) this.child.disconnect()
    await stopChild(this.child, 2_000)
  }
}
