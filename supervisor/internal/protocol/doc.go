// Package protocol is the studio⇄worker wire contract of
// shared/spec/studio-protocol.md (§1–§8, §11) as Go types: every WebSocket
// frame in both directions, the job offer claim with its task and model
// source, worker capabilities and log entries, the registration bodies, the
// URL rules, the error and close codes and the protocol constants.
//
// The package does no I/O and keeps no state. Both sides of the wire import
// it: the worker's session client (supervisor/internal/studio) and the dev
// studio (supervisor/internal/devstudio). It imports nothing of the project.
//
// # Frames
//
// [Encode] turns a [Frame] into one JSON text frame with the `type`
// discriminator flattened next to the fields; [Decode] does the reverse and
// dispatches on `type`. Optional fields the worker sends are omitted when
// absent (never null); optional fields received accept an absent key or null;
// unknown properties are ignored. An unknown `type` is reported as
// [ErrUnknownFrame] so the session can choose to skip it (spec open point 9);
// anything else that is not a well-formed frame is [ErrMalformed].
//
// # Offers that lack required fields
//
// Spec §4.3: in the reference worker an offer whose claim lacks a required
// field (task, modelSource, a task parameter, a cliDefaults number) is a
// parse error that tears the whole session down. Open-point decision: here
// [Decode] of an `offer` succeeds as soon as `claim.jobId` is present, and
// [JobOfferClaim.Validate] reports what is missing or malformed (naming the
// field). The worker then rejects that one job with the reason instead of
// killing the session, which loses no work: other offers and the running job
// are unaffected, and the invalid job is never run (invariant I-13).
//
// "Required" means what it means to the reference decoder (serde): the key
// is present and not null. A required string may be empty: a claim with an
// empty gameId or assetName, or an image task with an empty prompt, is
// valid, as the reference worker runs it; only jobId and model, which name
// the upload route and the cache directory, must not be empty.
package protocol
