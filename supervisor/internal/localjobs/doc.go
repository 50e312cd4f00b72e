// Package localjobs runs jobs that people on the node ask for through the
// agent's local API (the reference's /image route and the OpenAI routes),
// without any studio. A local request becomes a job claim (spec §6.1)
// whose ModelSource comes from the local model catalog (package
// localmodels) and is run by the very job runner that runs studio jobs:
// model files are fetched, verified and cached by the same model store,
// the job runs on the same engine host (crash isolation, typed errors,
// progress in the log), and only the reporter differs: it hands the
// outcome back to the waiting request instead of the studio.
//
// # One job slot
//
// A local job holds the node's one job slot (package jobslot, spec §9.3,
// I-10) from the moment it is taken to the moment its outcome is back:
// while a studio job runs, a local request waits in the slot's bounded
// queue (ErrQueueFull when it is full, answered 429 with Retry-After),
// and while a local job runs, studio offers are rejected busy.
//
// # What it keeps
//
// The last History jobs (id, model, kind, state, times, error) for GET
// /jobs, and totals by outcome with their durations for the status page
// and metrics, apart from the studio's jobs.
//
// The package knows nothing of HTTP, the studio session or the engine
// host: the agent adapts the job runner and the engine host's offerings
// to its interfaces.
package localjobs
