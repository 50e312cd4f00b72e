// Package devstudio is an in-process studio: the server side of
// shared/spec/studio-protocol.md, faithful enough to be the partner of every
// end-to-end test, stress test and benchmark, and what `stoker agent -dev`
// and `stoker studio` run. It serves registration (§2), the worker WebSocket
// session with the studio's ordering rules R1–R9 (§5.3) and acks (§4.2), the
// binary result upload (§7.1), a JSON API and a small dashboard for people,
// and fault hooks for tests.
//
// Only the supervisor's main and tests import it.
//
// # Choices where the spec is open
//
//   - Duplicate sessions: when a second session of the same worker is
//     welcomed, the older one gets `error duplicate_worker` and close 4003.
//     The newest wins, so a worker whose old socket went half-open can come
//     back at once; its old claim is released (requeued) as on any close.
//   - Unknown frame types from a worker are logged and ignored (open point
//     9); malformed frames, binary frames and studio-only frame types are a
//     protocol_violation (close 4002).
//   - A `reject` for a job this session does not hold is logged and ignored
//     (R7 names only accept, completeJson and fail).
//   - No WS completeAck follows a binary upload (open point 3, flows.md): the
//     HTTP 200 {"ok":true} is the acknowledgement; the next offer follows.
//   - A socket close releases the claim: a job only offered goes back to the
//     queue without an attempt; a running job counts an attempt (and fails
//     once MaxAttempts is reached), as spec §7.2 says.
//   - An upload for a job released by a socket close but not yet offered to
//     anyone else is still accepted from the worker that last held it, so a
//     result computed across a disconnect is not lost (open point 4). Anything
//     else not held by the uploading worker is 409.
//   - A non-transient reject counts an attempt and the job is not offered to
//     that worker again; busy/paused rejects (by code, or by the reference
//     reason text for workers without codes) requeue without an attempt and
//     the worker gets no offer until its next heartbeat.
//   - Registration: the same installId with an open pending request gets the
//     existing requestId back and its secret hash is replaced by the newest
//     one (a worker that lost its secret is not locked out).
//   - A session with no heartbeat for StaleAfter is closed with 1000
//     "heartbeat timeout" (no error frame: the worker should reconnect).
//
// # Who may reach it
//
// It has no login for people, so it listens on loopback only unless
// Config.InsecureListen, answers only to a Host no DNS rebinding can forge
// (an IP literal, localhost, Config.AllowedHosts), and takes no POST from
// another site's page and no POST to /api/... that is not
// application/json (see guard).
package devstudio
