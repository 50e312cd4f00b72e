package protocol

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Routes under APIPrefix (§2, §7.1). Each builder escapes its path segments.
const RouteRegisterRequest = "/workers/register-request"

// RouteRegisterRequestStatus is the poll route of a registration request.
func RouteRegisterRequestStatus(requestID string) string {
	return "/workers/register-requests/" + url.PathEscape(requestID)
}

// RouteComplete is the binary result upload route of a job.
func RouteComplete(workerID, jobID string) string {
	return "/workers/" + url.PathEscape(workerID) + "/jobs/" + url.PathEscape(jobID) + "/complete"
}

// RouteConnect is the WebSocket route of a worker.
func RouteConnect(workerID string) string {
	return "/workers/" + url.PathEscape(workerID) + "/connect"
}

// HTTPURL builds the URL of an HTTP studio route (§1.2): the base's query and
// fragment are dropped, trailing slashes and one trailing /graphics/api are
// stripped (an outer mount such as /custom is kept), then /graphics/api and
// route are appended. Only http and https bases are accepted. route must
// start with "/" and have no empty, "." or ".." segments (use the Route
// builders, which escape).
func HTTPURL(base, route string) (string, error) {
	u, err := parseBase(base)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("studio url: scheme %q is not http or https", u.Scheme)
	}
	if err := checkRoute(route); err != nil {
		return "", err
	}
	p := strings.TrimRight(u.EscapedPath(), "/")
	p = strings.TrimSuffix(p, APIPrefix)
	return u.Scheme + "://" + u.Host + p + APIPrefix + route, nil
}

// WebSocketURL builds the session URL of a worker (§1.2): http→ws,
// https→wss, ws/wss kept, any other scheme is an error; query and fragment
// are dropped; trailing slashes are trimmed and /graphics/api appended
// unless already present; then /workers/{workerId}/connect with the id
// escaped. An empty, "." or ".." worker id is an error.
func WebSocketURL(base, workerID string) (string, error) {
	u, err := parseBase(base)
	if err != nil {
		return "", err
	}
	scheme := u.Scheme
	switch scheme {
	case "http":
		scheme = "ws"
	case "https":
		scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("studio url: scheme %q cannot carry a websocket", u.Scheme)
	}
	if workerID == "" || workerID == "." || workerID == ".." {
		return "", fmt.Errorf("studio url: bad worker id %q", workerID)
	}
	p := strings.TrimRight(u.EscapedPath(), "/")
	if !strings.HasSuffix(p, APIPrefix) {
		p += APIPrefix
	}
	return scheme + "://" + u.Host + p + RouteConnect(workerID), nil
}

func parseBase(base string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil {
		return nil, fmt.Errorf("studio url: %w", err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("studio url %q: missing host", base)
	}
	u.RawQuery, u.Fragment, u.RawFragment, u.User = "", "", "", nil
	return u, nil
}

func checkRoute(route string) error {
	if !strings.HasPrefix(route, "/") {
		return errors.New("studio url: route must start with /")
	}
	for _, seg := range strings.Split(route[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("studio url: bad route %q", route)
		}
	}
	return nil
}
