// Package localapi is the node operator's HTTP interface to a running
// agent: a status page, the same status as JSON, Prometheus metrics, and
// pause/resume.
//
// It knows nothing of the studio session, the engine host or the job
// runner: it reads a [Snapshot] from a [Source] and flips the pause flag
// through [Controls]. The agent package owns the adapter from its parts to
// those two interfaces, and is the only package that should import this
// one.
//
// # Routes
//
//	GET  /            the status page (HTML, refreshes itself every 5s)
//	GET  /v1/status   the Snapshot as JSON, plus uptimeSeconds and now
//	GET  /metrics     Prometheus text exposition format 0.0.4
//	POST /v1/pause    Controls.SetPaused(true);  answers {"paused":true}
//	POST /v1/resume   Controls.SetPaused(false); answers {"paused":false}
//
// Any other method on a route is answered 405 with an Allow header; any
// other path 404.
//
// # Guarding pause and resume
//
// Binding is the operator's choice (loopback by default), so the server
// does not refuse remote peers. It does refuse what a hostile web page in
// the operator's browser could send. A POST is served only when
//
//   - its Content-Type is application/json (an HTML form cannot send that,
//     and a script on another origin cannot send it without a CORS
//     preflight, which this server never approves);
//   - it is not a cross-origin browser request (Sec-Fetch-Site or Origin,
//     checked by [net/http.CrossOriginProtection]);
//   - its Host is an IP literal, "localhost", or one of Config.AllowedHosts,
//     which defeats DNS rebinding (a hostile name resolved to 127.0.0.1
//     would otherwise be same-origin with the page that named it).
//
// The body may be empty or any JSON value up to 4 KiB; it is not read for
// meaning. From a shell:
//
//	curl -XPOST -H 'Content-Type: application/json' 127.0.0.1:8710/v1/pause
//
// GET routes carry no secret and change nothing; they are not guarded, so
// a Prometheus server may scrape /metrics by any host name.
package localapi
