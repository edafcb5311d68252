package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Role is what a caller may do.
type Role int

// Roles, from least to most.
const (
	// RoleNone may do nothing (a read token is configured and none given).
	RoleNone Role = iota
	// RoleRead may read every page and API endpoint, and act on nothing.
	RoleRead
	// RoleAdmin may also act.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read-only"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

const (
	cookieName = "pgflow_console"
	csrfHeader = "X-CSRF-Token"
)

// caller is who a request comes from.
type caller struct {
	role Role
	// via is "session", "bearer" or "anonymous".
	via string
	// sid identifies the browser session; the CSRF token derives from it.
	sid string
	// who is the audit name: role plus session id or token fingerprint.
	who string
}

var errBadToken = errors.New("the token is not a console token")

// equal compares secrets in constant time (for equal lengths; the length of
// a token is not the secret).
func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// roleOf maps a presented token to its role.
func (k *Console) roleOf(token string) (Role, error) {
	// Both comparisons always run, so timing does not tell which matched.
	admin := k.o.AdminToken != "" && equal(token, k.o.AdminToken)
	read := k.o.ReadToken != "" && equal(token, k.o.ReadToken)
	switch {
	case admin:
		return RoleAdmin, nil
	case read:
		return RoleRead, nil
	}
	return RoleNone, errBadToken
}

func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}

// identify returns the request's caller. A bad bearer token or a forged
// session is an error (401); no credential at all is the anonymous caller.
func (k *Console) identify(r *http.Request) (caller, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return caller{}, errors.New("the Authorization header must be \"Bearer <token>\"")
		}
		role, err := k.roleOf(strings.TrimSpace(tok))
		if err != nil {
			return caller{}, err
		}
		return caller{role: role, via: "bearer", who: role.String() + " token " + fingerprint(tok)}, nil
	}
	if ck, err := r.Cookie(cookieName); err == nil {
		if role, sid, ok := k.openSession(ck.Value); ok {
			return caller{role: role, via: "session", sid: sid, who: role.String() + " session " + sid[:8]}, nil
		}
		// An expired or foreign session (e.g. from before a restart) reads
		// as anonymous; the pages then offer to log in again.
	}
	c := caller{role: RoleNone, via: "anonymous", who: "anonymous"}
	if k.o.ReadToken == "" {
		c.role = RoleRead
	}
	return c, nil
}

func (k *Console) sign(s string) string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(s))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession returns a cookie value: role, expiry and a random session id,
// signed with the console's key.
func (k *Console) newSession(role Role) (value, sid string) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	sid = hex.EncodeToString(b)
	payload := fmt.Sprintf("%d.%d.%s", role, time.Now().Add(k.o.SessionTTL).Unix(), sid)
	return payload + "." + k.sign("session:"+payload), sid
}

func (k *Console) openSession(v string) (Role, string, bool) {
	i := strings.LastIndexByte(v, '.')
	if i < 0 {
		return RoleNone, "", false
	}
	payload, sig := v[:i], v[i+1:]
	if !hmac.Equal([]byte(sig), []byte(k.sign("session:"+payload))) {
		return RoleNone, "", false
	}
	parts := strings.Split(payload, ".")
	if len(parts) != 3 || len(parts[2]) != 32 {
		return RoleNone, "", false
	}
	role, err1 := strconv.Atoi(parts[0])
	exp, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || time.Now().Unix() > exp || Role(role) < RoleRead || Role(role) > RoleAdmin {
		return RoleNone, "", false
	}
	// A session outlives a token change only until the process restarts
	// (the key is per process); an admin session from a console that no
	// longer has an admin token must not act.
	if Role(role) == RoleAdmin && k.o.AdminToken == "" {
		return RoleNone, "", false
	}
	return Role(role), parts[2], true
}

// csrfToken is the token a session's pages send back with every action.
func (k *Console) csrfToken(sid string) string {
	if sid == "" {
		return ""
	}
	return k.sign("csrf:" + sid)
}

// authError is a refusal with its status.
type authError struct {
	status int
	msg    string
}

func (e *authError) Error() string { return e.msg }

// mayAct decides whether the caller may perform an action: 401 without a
// credential, 403 with a read-only one or a missing or wrong CSRF token.
func (k *Console) mayAct(r *http.Request, c caller) error {
	if err := k.cop.Check(r); err != nil {
		return &authError{http.StatusForbidden, "cross-origin request refused: " + err.Error()}
	}
	if k.o.AdminToken == "" {
		return &authError{http.StatusForbidden, "the console is read-only: no admin credential is configured (pgflow serve --admin-token-file, or PGFLOW_ADMIN_TOKEN)"}
	}
	switch c.role {
	case RoleAdmin:
	case RoleRead:
		if c.via == "anonymous" {
			return &authError{http.StatusUnauthorized, "this action needs the admin credential: log in, or send Authorization: Bearer <admin token>"}
		}
		return &authError{http.StatusForbidden, "this action needs the admin credential; yours is read-only"}
	default:
		return &authError{http.StatusUnauthorized, "this action needs the admin credential: log in, or send Authorization: Bearer <admin token>"}
	}
	// A browser session carries its credential in a cookie the browser
	// sends by itself, so the request must also prove it comes from one of
	// our pages. A bearer token is never sent by a browser on its own.
	if c.via == "session" {
		got := r.Header.Get(csrfHeader)
		if got == "" {
			return &authError{http.StatusForbidden, "missing CSRF token (header " + csrfHeader + "); reload the page"}
		}
		if !equal(got, k.csrfToken(c.sid)) {
			return &authError{http.StatusForbidden, "invalid CSRF token; reload the page"}
		}
	}
	return nil
}

func remote(r *http.Request) string { return r.RemoteAddr }

// read wraps a page handler: a caller without read access is sent to the
// login page.
func (k *Console) read(h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := k.identify(r)
		if err != nil || c.role < RoleRead {
			http.Redirect(w, r, k.url("/login?next="+urlQueryEscape(k.url(r.URL.RequestURI()))), http.StatusSeeOther)
			return
		}
		h(w, r, c)
	}
}

// readAPI wraps a read endpoint: 401 without read access.
func (k *Console) readAPI(h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := k.identify(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgflow console"`)
			writeError(w, http.StatusUnauthorized, "%v", err)
			return
		}
		if c.role < RoleRead {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgflow console"`)
			writeError(w, http.StatusUnauthorized, "reading needs a credential: send Authorization: Bearer <read or admin token>")
			return
		}
		h(w, r, c)
	}
}

// actFunc performs an action and returns what to record.
type actFunc func(w http.ResponseWriter, r *http.Request, a *Action) (status int, body any, err error)

// act wraps an action endpoint: authentication, role, CSRF, JSON body
// checks, then the action; every outcome is recorded.
func (k *Console) act(name string, h actFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := Action{Name: name, Remote: remote(r), Queue: r.PathValue("queue")}
		c, err := k.identify(r)
		if err != nil {
			a.Who, a.Err, a.Status = "unknown credential", err, http.StatusUnauthorized
			k.record(a)
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgflow console"`)
			writeError(w, a.Status, "%v", err)
			return
		}
		a.Who, a.Role = c.who, c.role
		if err := k.mayAct(r, c); err != nil {
			var ae *authError
			errors.As(err, &ae)
			a.Err, a.Status = err, ae.status
			k.record(a)
			if ae.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pgflow console"`)
			}
			writeError(w, ae.status, "%s", ae.msg)
			return
		}
		// JSON only: a cross-site HTML form cannot send it, and the body is
		// decoded strictly.
		if ct := r.Header.Get("Content-Type"); r.ContentLength != 0 && !strings.HasPrefix(ct, "application/json") {
			a.Err, a.Status = fmt.Errorf("content type %q", ct), http.StatusUnsupportedMediaType
			k.record(a)
			writeError(w, a.Status, "the body must be JSON (Content-Type: application/json), got %q", ct)
			return
		}
		status, body, err := h(w, r, &a)
		a.Status = status
		if a.Count > 0 || name == "pause" || name == "resume" {
			k.stats.forget(a.Queue)
		}
		if err != nil {
			a.Err = err
			k.record(a)
			writeError(w, status, "%v", err)
			return
		}
		k.record(a)
		writeJSON(w, status, body)
	}
}
