// Package studio is the worker's side of the studio session (spec §3–§5,
// §7, §9): one long-lived WebSocket with hello/welcome, heartbeats, log
// shipping, job offers, JSON results and failures, plus the HTTP multipart
// upload of binary results, all under a reconnect loop with backoff.
//
// The package knows nothing of engines. The job runner implements
// [JobRunner]; the session admits offers through it and hands each accepted
// job to RunJob with a [Reporter] that delivers the job's one terminal
// outcome over the session that accepted it. RunJob returns that
// [Outcome], which the client hands to Config.JobDone.
//
// # Lifecycle
//
// [Client.Run] is the outer loop of §5.1: wait for credentials (I-8),
// connect (bounded, §3.2), send hello, wait for welcome (nothing else is
// sent before it, I-1/R2), then start the heartbeat and log pumps and
// dispatch frames until the session ends. Teardown stops every helper
// unconditionally, sends close 1000 bounded by CloseTimeout and closes the
// socket (I-5, I-6). An in-flight job is not touched by teardown: it keeps
// its slot and its later WebSocket sends fail (§5.2 step 8).
//
// [Client.Shutdown] is the graceful stop (I-25): offers are refused as
// paused, the job in the slot gets until Shutdown's ctx ends to finish and
// report, then it is cancelled with the ctx's cause and reports its
// failure over the session, which then closes. The end of Run's ctx is the
// hard stop: the job is cancelled with it.
//
// # Decisions on the spec's open points
//
// Each choice is the one that loses no work:
//
//   - Close codes 4003/4004 without an error frame (open point 7): stop, as
//     for the duplicate_worker / worker_deleted error frames. Reconnecting
//     as a duplicate would kick the other session (and its job) off in a
//     loop; a deleted worker's token is dead.
//   - internal_error (open point 8), protocol_violation and unknown error
//     codes, and close 4002: reconnect with backoff. The studio's own fault
//     or a single bad frame is no reason to idle a healthy worker. Such a
//     session does not reset the reconnect counter even if it was welcomed,
//     so a studio that keeps failing is met with growing backoff rather than
//     a 1 s loop.
//   - Unknown frame types (open point 9): logged and skipped. Tearing down
//     would release the claim of every accepted job for a frame the worker
//     has no use for. Malformed frames, binary frames and frames over
//     MaxFrameBytes are protocol errors: the session ends and reconnects.
//   - Offers whose claim fails Validate are rejected with the reason and
//     no code (the studio counts an attempt); they are never run (I-13).
//   - Poll/upgrade 401 is an auth failure (never retried, §3.2).
//   - A runner that returns without reporting sends nothing more: its
//     [Outcome] says so, and the studio releases the claim when the socket
//     that accepted the job closes (§7.2). A runner that panics gets a
//     fail{retryable:true} sent for it if nothing was reported.
//
// # Bounds
//
// A hostile or broken studio costs at most the job concerned. Refusals go
// through one bounded reject queue and writer per session; a reject the
// studio does not read in time is dropped, as the spec allows a lost reject
// (refusals.go says why). Lines a studio can provoke once per frame are
// rate-limited. No frame over MaxSendFrameBytes is sent (open point 18: the
// studio's limit is not documented; it refuses a larger frame with close
// 1009): a completeJson over it is refused to the runner, which fails the
// job for good. Log batches stay under MaxLogBatchBytes; a batch refused
// with 1009 is dropped with a marker, another failed batch is requeued at
// most logship.MaxBatchTries times. Frame writes and uploads time out on a
// lack of progress (WriteTimeout per 32 KiB, UploadStallTimeout), not on
// their total time; an upload answered 411 is sent again with its length.
package studio
