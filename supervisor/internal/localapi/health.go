package localapi

import "net/http"

// The probes a service manager, a container runtime or a load balancer
// asks (Kubernetes' liveness and readiness probes, Nomad's checks). Both
// take GET from this machine without the token, like every GET route.
//
//	GET /healthz  200 {"status":"ok"} while the process serves HTTP at
//	              all: nothing else is checked, so a restart is never
//	              asked for because a studio or a plugin is away.
//	GET /readyz   200 when the node can run a job now: at least one
//	              plugin is ready, and the jobs can reach it, from the
//	              studio (the session is welcomed) or from this machine
//	              (the local job routes are on, which need no studio).
//	              503 otherwise; the body lists the reasons.

// readyBody is the /readyz answer.
type readyBody struct {
	Ready bool `json:"ready"`
	// ReadyPlugins names the plugins that are ready.
	ReadyPlugins []string `json:"readyPlugins"`
	// Welcomed is the studio session's state; LocalJobs whether the
	// local job routes are on.
	Welcomed  bool `json:"welcomed"`
	LocalJobs bool `json:"localJobs"`
	// Reasons say what is missing when not ready.
	Reasons []string `json:"reasons,omitempty"`
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	snap := s.cfg.Source.Snapshot()
	body := readiness(&snap)
	status := http.StatusOK
	if !body.Ready {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, status, body)
}

// readiness is /readyz's verdict on snap.
func readiness(snap *Snapshot) readyBody {
	b := readyBody{ReadyPlugins: []string{}, Welcomed: snap.Session.Welcomed, LocalJobs: snap.Local != nil}
	for _, p := range snap.Plugins {
		if p.State == "ready" && p.Ready {
			b.ReadyPlugins = append(b.ReadyPlugins, p.Name)
		}
	}
	if len(b.ReadyPlugins) == 0 {
		b.Reasons = append(b.Reasons, "no plugin is ready")
	}
	if !b.Welcomed && !b.LocalJobs {
		b.Reasons = append(b.Reasons, "the studio session is not welcomed ("+snap.Session.State+") and the local job routes are off")
	}
	b.Ready = len(b.Reasons) == 0
	return b
}
