package protocol

import (
	"strings"
	"time"
)

// Constants of spec §11.
const (
	// APIPrefix is the fixed prefix of every studio route (§1.2).
	APIPrefix = "/graphics/api"
	// DefaultBaseURL is the studio base URL used when none is configured.
	DefaultBaseURL = "https://studio.minis.gg/"
	// Subprotocol is the WebSocket subprotocol the worker asks for and the
	// studio echoes (§3.1).
	Subprotocol = "studio-worker-v1"

	RegistrationPollInterval = 30 * time.Second
	CredentialWaitPoll       = 1 * time.Second
	HeartbeatInterval        = 5 * time.Second
	LogFlushInterval         = 1 * time.Second
	ShutdownCheckTick        = 250 * time.Millisecond
	// ReadIdleTimeout is how long the worker waits for any application
	// frame before treating the socket as dead (I-4).
	ReadIdleTimeout = 20 * time.Second
	// ConnectTimeout bounds TCP+TLS+upgrade (I-6).
	ConnectTimeout = 15 * time.Second
	// CloseFrameTimeout bounds sending the close frame (I-6).
	CloseFrameTimeout = 5 * time.Second
	BackoffBase       = 1000 * time.Millisecond
	BackoffMax        = 30000 * time.Millisecond
	// ReconnectAttemptsSeed is the SEED default cap; LATER uses 0 (infinite).
	ReconnectAttemptsSeed = 5
	// StaleHeartbeat is the studio's threshold: a session whose last
	// heartbeat is older is closed and its claim released (§5.4).
	StaleHeartbeat = 30 * time.Second
	// StaleCheckInterval is how often the studio checks for stale sessions.
	StaleCheckInterval = 10 * time.Second
	// HTTPTimeout bounds registration calls and the result upload (§1.3).
	HTTPTimeout = 60 * time.Second
	// UploadRetries is the number of extra upload attempts (LATER); the
	// pause before retry n is n × UploadRetryPause.
	UploadRetries        = 2
	UploadRetryPause     = 1 * time.Second
	ModelDownloadTimeout = 30 * time.Minute
	STTFetchTimeout      = 120 * time.Second
	// LogQueueCap bounds the worker's log ship queue (I-15).
	LogQueueCap           = 5000
	PresenceIdleThreshold = 120 * time.Second
	PresenceSample        = 5 * time.Second
	// PromptPreviewChars is the UI-only preview length; never used on the
	// wire (I-3).
	PromptPreviewChars = 200
)

// Multipart part names of the binary result upload (§7.1), in the order the
// reference sends them.
const (
	PartPrompt = "prompt"
	PartExt    = "ext"
	// PartFile is the file part; it is named "image" for every binary kind.
	PartFile = "image"
)

// ContentTypeForExt returns the Content-Type of the upload's file part for an
// output extension (§7.1 table); the comparison ignores case and a leading
// dot. Unknown extensions get application/octet-stream.
func ContentTypeForExt(ext string) string {
	switch strings.ToLower(strings.TrimPrefix(ext, ".")) {
	case "png":
		return "image/png"
	case "webp":
		return "image/webp"
	case "gif":
		return "image/gif"
	case "wav":
		return "audio/wav"
	case "mp3":
		return "audio/mpeg"
	case "mp4":
		return "video/mp4"
	}
	return "application/octet-stream"
}

// ResultFileName is the file name of the upload's file part: <jobId>.<ext>.
func ResultFileName(jobID, ext string) string {
	return jobID + "." + strings.TrimPrefix(ext, ".")
}
