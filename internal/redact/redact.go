// Package redact takes credentials out of URLs, connection strings and
// error text before hookstream prints, logs or stores them. A destination
// URL may carry a password or a token (userinfo, a query parameter), and so
// may a database URL; the error of a failed call names the URL, and that
// error text goes to logs, to the events table (last_error), to the
// dead-letter record's error header, to audit records and to the admin API.
// Every such place passes what it shows through this package, so one rule
// decides what is hidden.
//
// The rule: a password is replaced by Mask and the user name kept; a user
// name without a password (often a token itself: https://TOKEN@host) is
// replaced; every query value and a fragment are replaced, except the
// values of a few connection settings that are never secret (sslmode and
// the like), so that a database URL stays readable; and a path segment
// that looks like a token (pathToken: Slack's and Discord's webhook URLs
// carry theirs in the path) is replaced.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask stands where a credential was.
const Mask = "REDACTED"

// plainQueryKeys are query keys whose values are kept: libpq and pgx
// settings that are never secret. Compared in lower case.
var plainQueryKeys = map[string]bool{
	"sslmode": true, "sslrootcert": true, "sslcert": true, "sslkey": true, "sslnegotiation": true,
	"connect_timeout": true, "application_name": true, "target_session_attrs": true,
	"search_path": true, "pool_max_conns": true, "pool_min_conns": true,
}

// URL returns rawURL without its credentials. A string that does not parse
// as a URL is returned as Mask: where its secrets are cannot be told. A
// libpq keyword/value string ("host=… password=…") has its password
// replaced.
func URL(rawURL string) string {
	if !strings.Contains(rawURL, "://") {
		if strings.Contains(rawURL, "=") {
			return keywordPassword.ReplaceAllString(rawURL, "${1}"+Mask)
		}
		return rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return Mask
	}
	return redactURL(u)
}

func redactURL(u *url.URL) string {
	if u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			u.User = url.UserPassword(u.User.Username(), Mask)
		} else {
			u.User = url.User(Mask)
		}
	}
	if u.RawQuery != "" {
		u.RawQuery = redactQuery(u.RawQuery)
	}
	if strings.Contains(u.Path, "/") {
		segs := strings.Split(u.EscapedPath(), "/")
		masked := false
		for i, seg := range segs {
			if pathToken(seg) {
				segs[i], masked = Mask, true
			}
		}
		if masked {
			u.RawPath = strings.Join(segs, "/")
			u.Path, _ = url.PathUnescape(u.RawPath)
		}
	}
	if u.Fragment != "" || u.RawFragment != "" {
		u.Fragment, u.RawFragment = Mask, ""
	}
	// The mask is plain ASCII, so String escapes nothing of it.
	return u.String()
}

// pathToken reports whether an (escaped) path segment looks like a
// secret: 16 or more characters of a token's alphabet (letters, digits,
// '-', '_', '.', '~') mixing letters and digits, or 32 or more of them.
// A heuristic: what a provider put in the path cannot be told from a
// name, but words and ids ("orders", "hooks", "v1", "1234") stay, and
// Slack's (…/services/T…/B…/secret) and Discord's (…/webhooks/id/token)
// tokens go.
func pathToken(seg string) bool {
	if len(seg) < 16 {
		return false
	}
	var letter, digit bool
	for _, c := range seg {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letter = true
		case c >= '0' && c <= '9':
			digit = true
		case c == '-', c == '_', c == '.', c == '~':
		default:
			return false
		}
	}
	return letter && digit || len(seg) >= 32
}

// redactQuery masks each value of a query string, keeping its keys, their
// order and the values of plainQueryKeys. It works on the raw string so
// that what it cannot parse is masked rather than dropped.
func redactQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			parts[i] = Mask
			continue
		}
		if !hasValue || plainQueryKeys[strings.ToLower(key)] {
			continue
		}
		parts[i] = k + "=" + Mask
	}
	return strings.Join(parts, "&")
}

// urlInText finds what looks like a URL in free text: a scheme, "://" and
// everything up to a space, a quote or an angle bracket (how Go's errors,
// JSON and logs delimit a URL).
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>` + "`" + `]+`)

// keywordPassword finds a password in libpq keyword/value form, quoted or
// not.
var keywordPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)`)

// Text returns s with every URL in it passed through URL, and a
// keyword/value password masked. It is for text hookstream did not compose
// itself (an error from a library or a handler), where a URL may be
// anywhere.
func Text(s string) string {
	if strings.Contains(s, "://") {
		s = urlInText.ReplaceAllStringFunc(s, func(m string) string {
			// A URL at the end of a sentence or inside parentheses.
			trimmed := strings.TrimRight(m, ".,;:)]}")
			return URL(trimmed) + m[len(trimmed):]
		})
	}
	if strings.Contains(strings.ToLower(s), "password") {
		s = keywordPassword.ReplaceAllString(s, "${1}"+Mask)
	}
	return s
}
