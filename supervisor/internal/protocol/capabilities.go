package protocol

import (
	"encoding/json"
	"time"
)

// Presence is the LATER `userPresence` value (§8.1).
type Presence string

// Presence values; the zero value means unknown and is omitted on the wire.
const (
	PresenceUnknown Presence = ""
	PresenceIdle    Presence = "idle"
	PresenceActive  Presence = "active"
)

// WorkerCapabilities is the worker's advertised capability snapshot (§8.1),
// sent in hello, every heartbeat and the registration request. Slices and
// the map are always sent (as [] / {} when nil); UserPresence is omitted
// when unknown.
type WorkerCapabilities struct {
	MachineName     string  `json:"machineName"`
	Username        string  `json:"username"`
	AgentVersion    string  `json:"agentVersion"`
	Engine          string  `json:"engine"` // "multi" in the reference
	VramTotalGb     float32 `json:"vramTotalGb"`
	VramThresholdGb float32 `json:"vramThresholdGb"`
	// AutoEnabled is false while the worker is paused.
	AutoEnabled bool `json:"autoEnabled"`
	AutoStart   bool `json:"autoStart"`
	// SupportedModels is the sorted, de-duplicated union of
	// SupportedModelsPerKind.
	SupportedModels        []string              `json:"supportedModels"`
	TaskKinds              []TaskKind            `json:"taskKinds"`
	SupportedModelsPerKind map[TaskKind][]string `json:"supportedModelsPerKind"`
	AutoUpdate             bool                  `json:"autoUpdate"`
	StartMinimised         bool                  `json:"startMinimised"`
	OnlyWhenIdle           bool                  `json:"onlyWhenIdle"`
	UserPresence           Presence              `json:"userPresence,omitempty"`
}

// MarshalJSON writes nil slices and maps as [] and {}.
func (c WorkerCapabilities) MarshalJSON() ([]byte, error) {
	type plain WorkerCapabilities
	p := plain(c)
	if p.SupportedModels == nil {
		p.SupportedModels = []string{}
	}
	if p.TaskKinds == nil {
		p.TaskKinds = []TaskKind{}
	}
	if p.SupportedModelsPerKind == nil {
		p.SupportedModelsPerKind = map[TaskKind][]string{}
	}
	return json.Marshal(p)
}

// UnmarshalJSON decodes capabilities; absent or null slices and the map
// become empty (the spec's decode defaults), so nil never reaches callers.
func (c *WorkerCapabilities) UnmarshalJSON(b []byte) error {
	type plain WorkerCapabilities
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if p.SupportedModels == nil {
		p.SupportedModels = []string{}
	}
	if p.TaskKinds == nil {
		p.TaskKinds = []TaskKind{}
	}
	if p.SupportedModelsPerKind == nil {
		p.SupportedModelsPerKind = map[TaskKind][]string{}
	}
	*c = WorkerCapabilities(p)
	return nil
}

// Serves reports whether the capabilities list kind k.
func (c *WorkerCapabilities) Serves(k TaskKind) bool {
	for _, have := range c.TaskKinds {
		if have == k {
			return true
		}
	}
	return false
}

// Log levels of §8.2.
const (
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// LogEntry is one shipped log line (§8.2).
type LogEntry struct {
	// Ts is UTC RFC 3339 with milliseconds and Z; see [FormatTimestamp].
	Ts       string `json:"ts"`
	Level    string `json:"level"`
	Category string `json:"category"`
	Message  string `json:"message"`
	JobID    string `json:"jobId,omitempty"`
}

// TimestampLayout is the layout of LogEntry.Ts: always three fractional
// digits and Z, e.g. 2026-06-11T09:14:03.512Z.
const TimestampLayout = "2006-01-02T15:04:05.000Z"

// FormatTimestamp formats t in UTC as TimestampLayout.
func FormatTimestamp(t time.Time) string { return t.UTC().Format(TimestampLayout) }
