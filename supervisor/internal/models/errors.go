package models

import (
	"errors"
	"fmt"
	"net/url"
)

// Sentinel errors. Test with errors.Is.
var (
	// ErrRefused marks a request the store will not serve anywhere: a hostile
	// file name or model id, a refused scheme or redirect, an input over the
	// size limit, an input image of unknown type. Not retryable.
	ErrRefused = errors.New("models: refused")

	// ErrTooLarge marks a task input over Config.InputLimit or a model
	// file over Config.MaxFileBytes. It also matches ErrRefused.
	ErrTooLarge error = refusal("models: too large")

	// ErrIntegrity marks a download whose length or sha256 did not match.
	ErrIntegrity = errors.New("models: integrity check failed")

	// ErrNoSpace marks a failed disk-space preflight.
	ErrNoSpace = errors.New("models: not enough disk space")

	// ErrStalled marks a download that received no bytes for
	// Config.IdleTimeout.
	ErrStalled = errors.New("models: download stalled")

	// ErrUnsafe marks a directory of the cache (models_root, a directory
	// above it or one inside it) that a user other than root and the
	// agent's own can change: files there could be planted. It is this
	// node's problem, not the job's, so a fetch failing with it is
	// retryable.
	ErrUnsafe = errors.New("models: unsafe directory")
)

// refusal is a sentinel that also matches ErrRefused.
type refusal string

func (r refusal) Error() string        { return string(r) }
func (r refusal) Is(target error) bool { return target == ErrRefused }

// Error is a failed fetch. Op is "fetch" (a model file) or "input" (a task
// input); URL has its query string redacted, since signed URLs carry
// credentials there.
type Error struct {
	Op   string
	URL  string
	File string // the file name or input kind, "" when unknown
	Err  error
}

func (e *Error) Error() string {
	s := "models: " + e.Op
	if e.File != "" {
		s += " " + e.File
	}
	if e.URL != "" {
		s += " from " + e.URL
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the same request may succeed later or on
// another node. Refusals are not retryable; everything else is.
func (e *Error) Retryable() bool { return !errors.Is(e.Err, ErrRefused) }

// refusedf returns an error wrapping ErrRefused.
func refusedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// redactURL returns raw with any userinfo, query and fragment replaced, for
// logs and errors.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	u.Fragment = ""
	return u.String()
}
