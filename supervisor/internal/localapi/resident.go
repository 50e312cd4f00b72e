package localapi

import (
	"context"
	"net/http"
	"time"
)

// ResidentSource lists what every plugin holds in memory now, for
// GET /v1/resident (`stoker ps`). It asks the plugins, so a call may take
// a moment; ctx ends with the request.
type ResidentSource interface {
	Resident(ctx context.Context) []PluginResident
}

// PluginResident is one plugin's resident models.
type PluginResident struct {
	Name   string          `json:"name"`
	Path   string          `json:"path"`
	State  string          `json:"state"`
	Device Device          `json:"device"`
	Models []ResidentModel `json:"models"`
	// Error says why Models is unknown (the plugin is not running or did
	// not answer); "" when it is the plugin's answer.
	Error string `json:"error,omitempty"`
}

// ResidentModel is one model a plugin holds in memory.
type ResidentModel struct {
	Model    string    `json:"model"`
	Bytes    uint64    `json:"bytes"` // host RAM plus device memory, as the plugin reports it
	LastUsed time.Time `json:"lastUsed,omitzero"`
}

// ResidentBody is GET /v1/resident's answer.
type ResidentBody struct {
	Plugins []PluginResident `json:"plugins"`
}

func (s *Server) handleResident(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Resident == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this agent does not list resident models"})
		return
	}
	body := ResidentBody{Plugins: s.cfg.Resident.Resident(r.Context())}
	if body.Plugins == nil {
		body.Plugins = []PluginResident{}
	}
	for i := range body.Plugins {
		if body.Plugins[i].Models == nil {
			body.Plugins[i].Models = []ResidentModel{}
		}
	}
	writeJSON(w, http.StatusOK, body)
}
