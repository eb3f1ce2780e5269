package config

import (
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Redacted replaces a secret wherever this package shows a value.
const Redacted = "<redacted>"

// secretWords mark a flag whose whole value is secret (--s3-secret-key,
// --swift-password, a future --harbor-db-password or --api-token).
var secretWords = []string{"key", "secret", "password", "passwd", "token", "credential"}

// IsSecretName reports whether a flag of this name holds a secret.
func IsSecretName(name string) bool {
	name = strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

var (
	// scheme://user:password@host: the whole userinfo goes, since a token
	// is often given as the user name.
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@`)
	// password=... in a query string or a keyword/value DSN
	// (host=db password=x), quoted or not.
	secretParam = regexp.MustCompile(`(?i)([A-Za-z_]*(?:key|secret|password|passwd|token|credential)[A-Za-z_]*\s*=\s*)('[^']*'|"[^"]*"|[^&\s,;]+)`)
)

// RedactValue returns value as it may be shown for the flag called name:
// all of it hidden when the name says secret, otherwise with the userinfo of
// URLs and secret-looking parameters hidden (database and Redis URLs carry
// passwords).
func RedactValue(name, value string) string {
	if value == "" {
		return ""
	}
	if IsSecretName(name) {
		return Redacted
	}
	value = urlUserinfo.ReplaceAllString(value, "${1}"+Redacted+"@")
	return secretParam.ReplaceAllString(value, "${1}"+Redacted)
}

// Scrub replaces every secret value in s, the longest first so a secret
// that contains another is hidden whole. Very short values are left: they
// would garble the output and cannot be meaningful secrets.
func Scrub(s string, secrets []string) string {
	secrets = slices.Clone(secrets)
	sort.SliceStable(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, Redacted)
		}
	}
	return s
}

// ScrubError hides secrets in an error from elsewhere (a driver that
// quotes its endpoint or its credentials); it unwraps to the error.
func ScrubError(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	return scrubbed{err, secrets}
}

type scrubbed struct {
	err     error
	secrets []string
}

func (e scrubbed) Error() string { return Scrub(e.err.Error(), e.secrets) }
func (e scrubbed) Unwrap() error { return e.err }
