package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// RegisterRequest is the body of POST …/workers/register-request (§2.2).
type RegisterRequest struct {
	InstallID string `json:"installId"`
	// RegistrationSecretHash is [HashSecret] of the registration secret.
	RegistrationSecretHash string             `json:"registrationSecretHash"`
	Capabilities           WorkerCapabilities `json:"capabilities"`
	UserAgent              string             `json:"userAgent"` // studio-worker/<semver>
}

// Validate reports a missing field of the request.
func (r *RegisterRequest) Validate() error {
	switch {
	case r.InstallID == "":
		return errors.New("register request: missing installId")
	case len(r.RegistrationSecretHash) != sha256.Size*2:
		return errors.New("register request: registrationSecretHash is not 64 hex characters")
	case r.UserAgent == "":
		return errors.New("register request: missing userAgent")
	}
	if _, err := hex.DecodeString(r.RegistrationSecretHash); err != nil {
		return errors.New("register request: registrationSecretHash is not hex")
	}
	return nil
}

// RegisterResponse answers the register request (§2.2); Status is always
// "pending".
type RegisterResponse struct {
	RequestID string     `json:"requestId"`
	Status    PollStatus `json:"status"`
}

// HashSecret returns lowercase hex SHA-256 of the UTF-8 bytes of the secret's
// hex text (not of the raw bytes), as §2.1 defines registrationSecretHash.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// PollStatus is the status of a registration request (§2.3).
type PollStatus string

// The poll statuses of §2.3.
const (
	StatusPending  PollStatus = "pending"
	StatusApproved PollStatus = "approved"
	StatusRejected PollStatus = "rejected"
)

// PollResponse is the tagged body of GET …/register-requests/{id} (§2.3).
// WorkerID and AuthToken are set only when approved, Reason only when
// rejected (and may be empty).
type PollResponse struct {
	Status    PollStatus
	WorkerID  string
	AuthToken string
	Reason    string
}

// String redacts the token.
func (p PollResponse) String() string {
	if p.Status == StatusApproved {
		return fmt.Sprintf("approved{workerId:%q authToken:[redacted]}", p.WorkerID)
	}
	return fmt.Sprintf("%s{reason:%q}", p.Status, p.Reason)
}

// GoString redacts the token.
func (p PollResponse) GoString() string { return p.String() }

// MarshalJSON writes only the fields of the status.
func (p PollResponse) MarshalJSON() ([]byte, error) {
	switch p.Status {
	case StatusPending:
		return json.Marshal(struct {
			Status PollStatus `json:"status"`
		}{p.Status})
	case StatusApproved:
		return json.Marshal(struct {
			Status    PollStatus `json:"status"`
			WorkerID  string     `json:"workerId"`
			AuthToken string     `json:"authToken"`
		}{p.Status, p.WorkerID, p.AuthToken})
	case StatusRejected:
		return json.Marshal(struct {
			Status PollStatus `json:"status"`
			Reason string     `json:"reason"`
		}{p.Status, p.Reason})
	}
	return nil, fmt.Errorf("poll response: unknown status %q", string(p.Status))
}

// UnmarshalJSON fails on an unknown status and on an approved response
// without workerId or authToken. A rejected reason that is absent or null is
// "".
func (p *PollResponse) UnmarshalJSON(b []byte) error {
	var raw struct {
		Status    string  `json:"status"`
		WorkerID  string  `json:"workerId"`
		AuthToken string  `json:"authToken"`
		Reason    *string `json:"reason"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("poll response: %w", err)
	}
	out := PollResponse{Status: PollStatus(raw.Status)}
	switch out.Status {
	case StatusPending:
	case StatusApproved:
		if raw.WorkerID == "" {
			return errors.New("poll response: approved without workerId")
		}
		if raw.AuthToken == "" {
			return errors.New("poll response: approved without authToken")
		}
		out.WorkerID, out.AuthToken = raw.WorkerID, raw.AuthToken
	case StatusRejected:
		if raw.Reason != nil {
			out.Reason = *raw.Reason
		}
	default:
		return fmt.Errorf("poll response: unknown status %q", raw.Status)
	}
	*p = out
	return nil
}
