package config

import (
	"regexp"
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
