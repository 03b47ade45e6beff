import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Either, Exit, Layer } from "effect"
import cluster from "node:cluster"
import * as App from "./App.js"
import { slotVariable } from "./Cluster/Messages.js"
import * as Worker from "./Cluster/Worker.js"
import { parseWorkers } from "./Config.js"

const describeStartupFailure = (error: { readonly _tag: string; readonly message?: string }) =>
  error._tag === "RegistryError" || error._tag === "GroupRefused" ? error.message : `Invalid configuration: ${String(error)}`

const reportStartupFailure = <A, E extends { readonly _tag: string; readonly message?: string }, R>(program: Effect.Effect<A, E, R>) =>
  Effect.tapError(program, (error) => Effect.sync(() => console.error(describeStartupFailure(error))))

const runOptions = { disablePrettyLogger: true, disableErrorReporting: true } as const

// WORKERS=1 (or unset, or invalid: the gateway's own configuration check then names it) serves in this process.
const workers = Either.getOrElse(parseWorkers(process.env["WORKERS"] ?? "1"), () => 1)

// A worker this gateway's primary forked (not one of another cluster manager, pm2's say: that one serves alone).
if (cluster.isWorker && process.env[slotVariable] !== undefined) {
  NodeRuntime.runMain(Layer.launch(Worker.serve(App.layer)).pipe(reportStartupFailure), runOptions)
} else if (workers === 1) {
  NodeRuntime.runMain(Layer.launch(App.layer).pipe(reportStartupFailure), runOptions)
} else {
  // The primary handles its own signals (it forwards them), so it runs outside runMain.
  const Primary = await import("./Cluster/Primary.js")
  Effect.runFork(Primary.main.pipe(reportStartupFailure)).addObserver((exit) => {
    if (Exit.isFailure(exit) && Cause.isDie(exit.cause)) console.error(Cause.pretty(exit.cause))
    process.exit(Exit.isSuccess(exit) ? exit.value : 1)
  })
}
