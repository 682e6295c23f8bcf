package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"sync"
	"time"
)

// session is one login. The browser holds its secret in an HttpOnly
// cookie; the store keeps only the secret's digest, so that the map (a
// heap dump, a debugger) does not hold a cookie anyone could present.
type session struct {
	// id names the session in audit records and logs: the first 8 bytes
	// of the secret's digest, in hex. It grants nothing.
	id      string
	csrf    string // the token every state-changing request carries
	created time.Time
	expires time.Time

	mu    sync.Mutex
	flash string // one message for the next page, such as an action's outcome
	// batches are the session's last bulk replays (replaybatch.go).
	batches  []*replayBatch
	batchSeq int
}

func (s *session) setFlash(msg string) {
	s.mu.Lock()
	s.flash = msg
	s.mu.Unlock()
}

func (s *session) takeFlash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := s.flash
	s.flash = ""
	return msg
}

// csrfMatches compares a presented CSRF token in constant time.
func (s *session) csrfMatches(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) == 1
}

// sessions are kept in memory: a restart logs every operator out, and
// behind a load balancer an operator must stick to one process. Both are
// acceptable for an operator console (one login with the token again);
// the admin API itself keeps no state.
type sessions struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu   sync.Mutex
	byID map[[sha256.Size]byte]*session
}

func newSessions(ttl time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, max: max, now: now, byID: map[[sha256.Size]byte]*session{}}
}

// start makes a session and returns it with the secret for the cookie.
func (st *sessions) start() (*session, string) {
	secret := randomToken()
	digest := sha256.Sum256([]byte(secret))
	now := st.now()
	s := &session{id: hex.EncodeToString(digest[:8]), csrf: randomToken(), created: now, expires: now.Add(st.ttl)}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.forgetExpired(now)
	if len(st.byID) >= st.max {
		st.forgetOldest()
	}
	st.byID[digest] = s
	return s, secret
}

// lookup is the live session of a cookie's secret, or nil.
func (st *sessions) lookup(secret string) *session {
	if secret == "" {
		return nil
	}
	digest := sha256.Sum256([]byte(secret))
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.byID[digest]
	if s == nil {
		return nil
	}
	if !st.now().Before(s.expires) {
		delete(st.byID, digest)
		return nil
	}
	return s
}

// end forgets the session of secret (logout).
func (st *sessions) end(secret string) {
	digest := sha256.Sum256([]byte(secret))
	st.mu.Lock()
	delete(st.byID, digest)
	st.mu.Unlock()
}

func (st *sessions) forgetExpired(now time.Time) {
	for k, s := range st.byID {
		if !now.Before(s.expires) {
			delete(st.byID, k)
		}
	}
}

func (st *sessions) forgetOldest() {
	var oldest [sha256.Size]byte
	var at time.Time
	for k, s := range st.byID {
		if at.IsZero() || s.created.Before(at) {
			oldest, at = k, s.created
		}
	}
	delete(st.byID, oldest)
}

// randomToken is 32 random bytes, base64url: a session's secret or its
// CSRF token.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
