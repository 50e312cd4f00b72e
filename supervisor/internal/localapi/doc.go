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
//	GET  /metrics     Prometheus metrics (prometheus/client_golang): the
//	                  Snapshot's, the process's, the Go runtime's and
//	                  Config.Collectors' (the agent's Tally histograms)
//	POST /v1/pause    Controls.SetPaused(true);  answers {"paused":true}
//	POST /v1/resume   Controls.SetPaused(false); answers {"paused":false}
//	GET  /healthz     200 while the process serves (liveness)
//	GET  /readyz      200 when a plugin is ready and jobs can reach it (a
//	                  welcomed session, or Snapshot.Local set); 503 and the
//	                  reasons otherwise (health.go)
//
// Other packages mount more routes through Config.Routes (the agent mounts
// the local job routes of packages imageapi and openaiapi), behind the
// same Host check; a Route with JobAccess wants the token from every peer
// and refuses cross-origin browser requests, and its handler bounds its
// own body.
//
// Any other method on a route is answered 405 with an Allow header; any
// other path 404.
//
// # Who may do what
//
// Every route, before anything else, wants a Host that no DNS rebinding
// can forge: an IP literal, "localhost", or one of Config.AllowedHosts
// (403 otherwise). A page on a hostile name that its owner re-points at
// 127.0.0.1 would otherwise be same-origin with this server and read the
// status and metrics.
//
// The bearer token lives in Config.TokenFile (the agent's
// <state_dir>/local-api-token, created owner-only with 256 random bits on
// the first start). A peer on another machine, possible only when the
// operator binds the API off loopback (Start then logs a warning), needs
// "Authorization: Bearer <token>" on every route (401 otherwise). A peer
// on this machine reads the GET routes without it.
//
// A POST (pause, resume) is served only when
//
//   - its Content-Type is application/json (an HTML form cannot send that,
//     and a script on another origin cannot send it without a CORS
//     preflight, which this server never approves);
//   - it is not a cross-origin browser request (Sec-Fetch-Site or Origin,
//     checked by [net/http.CrossOriginProtection]);
//   - it carries the token, or the status page's key (below);
//   - its body is empty or JSON, at most 4 KiB; it is not read for
//     meaning.
//
// From a shell on the node:
//
//	curl -XPOST -H 'Content-Type: application/json' \
//	  -H "Authorization: Bearer $(cat /var/lib/stoker/local-api-token)" 127.0.0.1:8710/v1/pause
//
// # The status page's buttons
//
// A browser cannot read the token file, so the page served to a peer on
// this machine carries a key of its own (a data attribute its script
// sends as the bearer credential). The key is random per process and is
// not the token; it is accepted only from a peer on this machine, so a
// copy of the page is worth nothing elsewhere, and the page served to
// another machine carries none. No other site can read the page to learn
// the key: it is same-origin only (no CORS), may not be framed
// (frame-ancestors 'none'), and the Host check stops rebinding. What the
// key gives is what a person at the node's own browser already has: a
// user or process on the node that can fetch the page can pause the node,
// as any local user could before the token existed; the token keeps that
// power from everyone else, and from a local process that can send a POST
// but read nothing back.
//
// Refused requests are answered with a JSON {"error": "…"} and logged at
// warn level, at most one line every 10s, which counts the others.
package localapi
