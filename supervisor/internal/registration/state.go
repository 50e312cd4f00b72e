package registration

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/stokerhq/stoker/supervisor/internal/secret"
)

// FileName is the state file inside the state directory. It holds the
// install id, the pending request (id and secret) or the approved
// credentials, and a rejection. It is written with mode 0600 in a 0700
// directory, atomically (temporary file, fsync, rename).
const FileName = "registration.json"

// Phase is where registration stands.
type Phase int

// The phases of §2.
const (
	// Pristine: no request open (maybe an install id, maybe a secret kept
	// from a POST that failed).
	Pristine Phase = iota
	// Pending: a request is open and awaits the operator.
	Pending
	// Approved: worker id and auth token are stored; registration is over.
	Approved
	// Rejected: the operator refused; `stoker register --reset` starts over.
	Rejected
)

// String returns the phase's lowercase name.
func (p Phase) String() string {
	switch p {
	case Pristine:
		return "pristine"
	case Pending:
		return "pending"
	case Approved:
		return "approved"
	case Rejected:
		return "rejected"
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// Status is what `stoker status` and the local status page show. It holds no
// secret.
type Status struct {
	Phase     Phase
	InstallID string
	// RequestID is the open request, shown so the operator can find it in
	// the studio's approval queue.
	RequestID string
	// WorkerID is set once approved.
	WorkerID string
	// RejectReason is the operator's reason, when rejected (may be empty).
	RejectReason string
}

// Credentials are what approval yields: the session's identity.
type Credentials struct {
	WorkerID  string
	AuthToken secret.Value
}

// state is the on-disk document. Secrets are plain strings here and only
// here: this is the one place they are written, to an owner-only file.
type state struct {
	InstallID          string `json:"installId,omitempty"`
	RegistrationSecret string `json:"registrationSecret,omitempty"`
	RequestID          string `json:"requestId,omitempty"`
	WorkerID           string `json:"workerId,omitempty"`
	AuthToken          string `json:"authToken,omitempty"`
	Rejected           bool   `json:"rejected,omitempty"`
	RejectReason       string `json:"rejectReason,omitempty"`
}

func (s *state) phase() Phase {
	switch {
	case s.WorkerID != "" && s.AuthToken != "":
		return Approved
	case s.Rejected:
		return Rejected
	case s.RequestID != "" && s.RegistrationSecret != "":
		return Pending
	}
	return Pristine
}

func (s *state) status() Status {
	st := Status{Phase: s.phase(), InstallID: s.InstallID, RejectReason: s.RejectReason}
	switch st.Phase {
	case Pending:
		st.RequestID = s.RequestID
	case Approved:
		st.WorkerID = s.WorkerID
	}
	return st
}

// String redacts, so a state logged by mistake leaks nothing.
func (s state) String() string {
	return fmt.Sprintf("registration{phase:%s installId:%q requestId:%q workerId:%q}", s.phase(), s.InstallID, s.RequestID, s.WorkerID)
}

// GoString redacts.
func (s state) GoString() string { return s.String() }

var (
	installIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	secretPattern    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// validate rejects a state file that was edited into nonsense rather than
// silently replacing an identity.
func (s *state) validate() error {
	if s.InstallID != "" && !installIDPattern.MatchString(s.InstallID) {
		return fmt.Errorf("installId %q is not a lowercase 8-4-4-4-12 hex id", s.InstallID)
	}
	if s.RegistrationSecret != "" && !secretPattern.MatchString(s.RegistrationSecret) {
		return errors.New("registrationSecret is not 64 lowercase hex characters")
	}
	if (s.WorkerID == "") != (s.AuthToken == "") {
		return errors.New("workerId and authToken must be both present or both absent")
	}
	return nil
}

// newInstallID returns 16 CSPRNG bytes as lowercase 8-4-4-4-12 hex (the
// version bits are not forced, as in the reference).
func newInstallID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate install id: %w", err)
	}
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// newSecret returns 32 CSPRNG bytes as 64 lowercase hex characters.
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate registration secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// load reads the state of dir. A missing file is a pristine state. A file
// or directory that others can read is refused: the token may already have
// leaked, and the operator should know.
func load(dir string) (*state, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &state{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registration state: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read registration state: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read registration state: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("read registration state: %s has mode %04o, want owner-only (chmod 600 it)", path, perm)
	}
	var s state
	dec := json.NewDecoder(f)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("read registration state %s: %w", path, err)
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("read registration state %s: %w", path, err)
	}
	return &s, nil
}

// save writes s atomically with owner-only permissions, creating dir (0700)
// if needed.
func save(dir string, s *state) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write registration state: %w", err)
	}
	// MkdirAll keeps the mode of an existing directory; tighten ours.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("write registration state: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("write registration state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+FileName+".*")
	if err != nil {
		return fmt.Errorf("write registration state: %w", err)
	}
	tmpName := tmp.Name()
	cleanup := func() { tmp.Close(); os.Remove(tmpName) }
	// CreateTemp already uses 0600; say so explicitly all the same.
	if err := tmp.Chmod(0o600); err != nil {
		cleanup()
		return fmt.Errorf("write registration state: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		cleanup()
		return fmt.Errorf("write registration state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		cleanup()
		return fmt.Errorf("write registration state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("write registration state: %w", err)
	}
	if err := os.Rename(tmpName, filepath.Join(dir, FileName)); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("write registration state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}

// Load returns the registration status stored in stateDir, for status
// output. It never returns a secret.
func Load(stateDir string) (Status, error) {
	s, err := load(stateDir)
	if err != nil {
		return Status{}, err
	}
	return s.status(), nil
}

// LoadCredentials returns the stored credentials, or ok false when the
// worker is not approved yet.
func LoadCredentials(stateDir string) (c Credentials, ok bool, err error) {
	s, err := load(stateDir)
	if err != nil {
		return Credentials{}, false, err
	}
	if s.phase() != Approved {
		return Credentials{}, false, nil
	}
	return Credentials{WorkerID: s.WorkerID, AuthToken: secret.New(s.AuthToken)}, true, nil
}

// Reset clears everything registration stored in stateDir — install id,
// pending request, credentials, rejection — for `stoker register --reset`.
// The next Register generates a fresh identity. Resetting an empty state
// dir is not an error.
func Reset(stateDir string) error {
	err := os.Remove(filepath.Join(stateDir, FileName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reset registration: %w", err)
	}
	return nil
}
