// Package secret holds credentials in a type that cannot leak through a log
// line, an error string, a %v or a panic: its String, GoString, Format-free
// formatting and JSON encoding all redact. Read the value with Reveal at the
// one place that puts it on the wire.
package secret

import "log/slog"

// Value is a credential (an auth token, a registration secret).
type Value struct{ v string }

// New wraps s.
func New(s string) Value { return Value{v: s} }

// Reveal returns the credential itself. Call it only where the value goes on
// the wire (an Authorization header, the hello frame).
func (s Value) Reveal() string { return s.v }

// IsZero reports whether the credential is empty.
func (s Value) IsZero() bool { return s.v == "" }

const redacted = "[redacted]"

// String redacts.
func (s Value) String() string { return redacted }

// GoString redacts, so %#v does too.
func (s Value) GoString() string { return redacted }

// LogValue redacts for slog.
func (s Value) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText redacts, so encoding/json and TOML encoders never write it.
func (s Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// UnmarshalText reads a credential from a config file.
func (s *Value) UnmarshalText(b []byte) error {
	s.v = string(b)
	return nil
}
