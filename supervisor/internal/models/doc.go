// Package models is the supervisor's model store: it turns the studio's
// ModelSource files (spec §6.3, §6.6) and task input URLs (spec §6.2) into
// verified files on local disk. Every byte a job reads from the network goes
// through it; engine plugins only ever see the local paths it returns.
//
// It is imported by the job runner and the `stoker models` commands. It knows
// nothing of the studio protocol types: callers convert to [File] and
// [InputKind].
//
// # Cache layout
//
//	<Root>/<sanitised model id>/<filename>        verified model files
//	<Root>/<sanitised model id>/<filename>.part   a download in progress (or interrupted by a cancel)
//	<Root>/<filename>                             legacy flat layout, reused, never written
//	<Root>/.stoker/locks/<model>/<filename>.lock  flock(2) files shared by all processes
//	<Root>/.stoker/verified/<path>.json           sha256 verified for a file's current size and mtime
//
// # Rules
//
//   - Only plain file names ([CheckFilename]) and only https URLs, or http to
//     a loopback address; anything else is refused before any request, and so
//     is a redirect that leaves that set, goes from https to http, or exceeds
//     the redirect limit.
//   - Only public addresses are connected to, unless [Config.Allow] lists the
//     target: the check runs on every address dialled, redirects included
//     (package dialguard).
//   - Only root and the agent's user may be able to change Root and every
//     directory above and inside it ([ErrUnsafe]); files in it are opened
//     without following symlinks, and a .part or lock that is not a plain
//     file of its own is replaced, never written through.
//   - A model file is at most [Config.MaxFileBytes], and a download leaves
//     [Config.MinFreeBytes] free on the disk, checked while it writes.
//   - No error carries bytes the server sent: errors become fail messages.
//   - A file already present is reused without network; a legacy flat file
//     only when its size equals approxBytes (when given). A requested sha256
//     is checked against a file on disk once and remembered.
//   - A download goes to <name>.part, resumes an existing .part with a Range
//     request, is checked against Content-Length and sha256, and is renamed
//     into place. Any failure removes the .part; only a cancel by the caller
//     (shutdown, job cancelled) keeps it for the next attempt to resume.
//   - A file is downloaded once: concurrent calls in one process share one
//     download, and processes share an exclusive flock per file.
//   - A file in use holds a shared flock (a [Lease]); LRU eviction under
//     [Config.MaxBytes] and [Store.Prune] skip such files.
//
// # Errors
//
// Every error returned by [Store.Fetch], [Store.Acquire] and
// [Store.FetchInput] is an *[Error]. errors.Is(err, [ErrRefused]) reports a
// hostile or invalid request (name, scheme, redirect, address, size,
// content): the same request fails the same way anywhere, so the job is bad
// input. Anything else (network, status, checksum, disk, an unsafe cache
// directory) is a fetch failure worth retrying; [Error.Retryable] says
// which.
package models
