package localapi

import "time"

// Source gives the server everything it shows.
type Source interface {
	// Snapshot returns the node's state now. Each part is copied under its
	// owner's lock (studio.Client.Status, engines.Host.Status and
	// Offerings, jobs.Runner.Current), so the parts may be a few
	// microseconds apart but none is torn. It is called once per request,
	// from the request's goroutine, and must not block on a job or a
	// plugin. The server never modifies what it returns.
	Snapshot() Snapshot
}

// Controls flips the worker's runtime pause flag (studio.Client's
// SetPaused and Paused satisfy it). While paused the worker rejects
// offers; a running job is not interrupted. Both may be called from any
// goroutine.
type Controls interface {
	SetPaused(paused bool)
	Paused() bool
}

// Snapshot is everything the status page, /v1/status and /metrics show.
// The zero value is a valid, idle node. JSON names are given in the tags;
// zero times are left out of the JSON.
type Snapshot struct {
	// Version is the agent's version (agent.Version).
	Version string `json:"version"`
	// Started is when the agent started; the server derives uptime from
	// it. Zero when unknown (uptime is then reported as 0).
	Started time.Time `json:"started,omitzero"`
	// Session is the studio session (studio.Client.Status).
	Session Session `json:"session"`
	// Job is the job in flight (jobs.Runner.Current), nil when idle.
	Job *Job `json:"job"`
	// Plugins is one entry per plugin executable the engine host
	// supervises (engines.Host.Status), in the host's order.
	Plugins []Plugin `json:"plugins"`
	// Advertised is what the worker offers the studio now
	// (engines.Host.Offerings): only ready, healthy plugins count.
	Advertised Advertised `json:"advertised"`
	// Counters are running totals since the agent started.
	Counters Counters `json:"counters"`
	// Local is the local jobs (the local API's /image and OpenAI
	// routes), counted apart from the studio's; nil when those routes
	// are off.
	Local *LocalJobs `json:"local,omitempty"`
}

// LocalJobs are the local jobs' state and totals since the agent started.
type LocalJobs struct {
	// Running is 1 while a local job holds the node's job slot; Waiting
	// is the requests in the slot's queue, MaxWaiting its bound.
	Running    int `json:"running"`
	Waiting    int `json:"waiting"`
	MaxWaiting int `json:"maxWaiting"`
	// Completed and Failed local jobs ran; Refused ones never did (an
	// unknown model, a full queue, an engine not there).
	Completed uint64 `json:"completed"`
	Failed    uint64 `json:"failed"`
	Refused   uint64 `json:"refused"`
	// RunSeconds is the time local jobs held the slot, in all.
	RunSeconds float64 `json:"runSeconds"`
}

// Session is the studio session's state; the fields are those of
// studio.Status.
type Session struct {
	// State is the session loop's state as text (studio.State.String():
	// "connecting", "welcomed", "backing off", ...), and Since when it was
	// entered.
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	// Connected is true from the WebSocket upgrade to the end of the
	// session; Welcomed from the studio's welcome to the end of the
	// session.
	Connected bool `json:"connected"`
	Welcomed  bool `json:"welcomed"`
	// WorkerID is the approved worker id ("" before registration).
	WorkerID string `json:"workerId"`
	// Attempt is the count of consecutive failed connects (0 once
	// welcomed), and NextAttempt when the current backoff ends (zero when
	// not backing off).
	Attempt     int       `json:"attempt"`
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
	// LastError says how the last session ended. It never holds a secret.
	LastError string `json:"lastError"`
	// ServerTime is the studio's serverTime from the last welcome, as the
	// studio sent it.
	ServerTime string `json:"serverTime"`
	// CurrentJobID is the job the session has accepted and not yet
	// reported ("" when none). It can be set a moment before Job is.
	CurrentJobID string `json:"currentJobId"`
	// Paused is the runtime pause flag.
	Paused bool `json:"paused"`
	// Sessions counts sessions that reached welcome since start.
	Sessions int `json:"sessions"`
}

// Job is the job in flight; the fields are those of jobs.Current.
type Job struct {
	ID string `json:"id"`
	// Source is who asked for the job: "studio" or "local".
	Source string `json:"source"`
	Model  string `json:"model"`
	Engine string `json:"engine"` // the modelSource.engine id it is routed by
	Kind   string `json:"kind"`   // task kind: "image", "llm", "stt", ...
	// Phase is "fetching", "running" or "delivering".
	Phase string `json:"phase"`
	// Step of Total Units is the engine's last progress report ("tokens",
	// "steps", "seconds" ...); Total is 0 while unknown.
	Step  uint64 `json:"step"`
	Total uint64 `json:"total"`
	Unit  string `json:"unit"`
	// Started is when the runner took the job; LastProgress when the
	// engine last reported anything (zero before the first report).
	Started      time.Time `json:"started,omitzero"`
	LastProgress time.Time `json:"lastProgress,omitzero"`
}

// Ratio is Step/Total clamped to [0, 1], and 0 while Total is unknown.
func (j *Job) Ratio() float64 {
	if j == nil || j.Total == 0 {
		return 0
	}
	return min(float64(j.Step)/float64(j.Total), 1)
}

// Plugin is one supervised plugin; the fields are those of
// engines.PluginStatus and, once the plugin has answered Describe, of its
// plugins.Description.
type Plugin struct {
	// Name is the plugin's name (the executable's base name), Path the
	// executable.
	Name string `json:"name"`
	Path string `json:"path"`
	// State is the engine host's state: "starting", "ready", "not_ready",
	// "restarting", "quarantined" or "stopped"; Since
	// when it was entered.
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	// Pid of the running instance, 0 when none.
	Pid int `json:"pid"`
	// SparePid is the plugin's warm spare, an idle second process swapped
	// in when the serving one dies; 0 when none.
	SparePid int `json:"sparePid,omitempty"`
	// Version is the plugin's own version from Describe ("" before).
	Version string `json:"version"`
	// Engines are the engine ids it serves and Kinds the task kinds
	// (empty before the first Describe).
	Engines []string `json:"engines"`
	Kinds   []string `json:"kinds"`
	// Restarts counts relaunches after a death; Crashes counts deaths,
	// failed starts included. Both only grow.
	Restarts int `json:"restarts"`
	Crashes  int `json:"crashes"`
	// LastError is the last failure or the not-ready reason.
	LastError string `json:"lastError"`
	// QuarantinedUntil is when a quarantined plugin is probed again (zero
	// unless quarantined).
	QuarantinedUntil time.Time `json:"quarantinedUntil,omitzero"`
	// LastExit is when the last instance died and LastExitStatus how
	// ("signal: killed", "exit status 2"); zero and "" before any death.
	LastExit       time.Time `json:"lastExit,omitzero"`
	LastExitStatus string    `json:"lastExitStatus"`
	// Ready is the plugin's own word from Describe that it can serve.
	Ready bool `json:"ready"`
	// Device is what it runs on (zero before the first Describe).
	Device Device `json:"device"`
}

// Device is the compute a plugin runs on (plugins.Device).
type Device struct {
	Backend     string `json:"backend"` // "cpu", "cuda", "vulkan", "metal" ...
	Name        string `json:"name"`
	MemoryTotal uint64 `json:"memoryTotal"` // bytes
	MemoryFree  uint64 `json:"memoryFree"`  // bytes
}

// pluginStates are the engine host's plugin states, in the order the
// metrics list them. A Plugin.State outside this list is still reported.
func pluginStates() []string {
	return []string{"starting", "ready", "not_ready", "restarting", "quarantined", "stopped"}
}

// Advertised is what the worker's capabilities offer the studio now.
type Advertised struct {
	// Kinds are the task kinds offered, sorted.
	Kinds []string `json:"kinds"`
	// Models are the model ids offered per kind ("llama-cpp:*",
	// "synthetic-image").
	Models map[string][]string `json:"models"`
}

// Counters are totals since the agent started; each only grows.
type Counters struct {
	Jobs JobCounters `json:"jobs"`
	// UploadBytes counts the bytes of the binary results delivered to the
	// studio's uploads (a result counts once, however many attempts its
	// upload took).
	UploadBytes uint64 `json:"uploadBytes"`
	// PluginRestarts counts plugin relaunches across all plugins (the sum
	// of Plugins[].Restarts, kept here so it survives in one number).
	PluginRestarts uint64 `json:"pluginRestarts"`
}

// JobCounters count job offers by outcome.
type JobCounters struct {
	// Completed jobs were reported complete.
	Completed uint64 `json:"completed"`
	// FailedRetryable and FailedFinal jobs were reported as a fail with
	// retryable true and false.
	FailedRetryable uint64 `json:"failedRetryable"`
	FailedFinal     uint64 `json:"failedFinal"`
	// Rejected offers were never accepted (paused, busy, invalid claim,
	// engine unavailable).
	Rejected uint64 `json:"rejected"`
}
