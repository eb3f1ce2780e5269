package harbordb

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Config names Harbor's database.
type Config struct {
	// URL is a postgres:// URL (a libpq key=value string also works).
	URL string
}

// The environment variables harbor-core reads for its database.
const (
	EnvHost     = "POSTGRESQL_HOST"
	EnvPort     = "POSTGRESQL_PORT"
	EnvUsername = "POSTGRESQL_USERNAME"
	EnvPassword = "POSTGRESQL_PASSWORD"
	EnvDatabase = "POSTGRESQL_DATABASE"
	EnvSSLMode  = "POSTGRESQL_SSLMODE"
)

// ConfigFromEnv builds a Config from harbor-core's environment variables, with
// harbor-core's defaults (port 5432, user postgres, database registry, sslmode
// disable). ok is false when none of them is set.
func ConfigFromEnv(getenv func(string) string) (cfg Config, ok bool, err error) {
	host, port := getenv(EnvHost), getenv(EnvPort)
	user, pass := getenv(EnvUsername), getenv(EnvPassword)
	dbname, sslmode := getenv(EnvDatabase), getenv(EnvSSLMode)
	if host == "" && port == "" && user == "" && pass == "" && dbname == "" && sslmode == "" {
		return Config{}, false, nil
	}
	if host == "" {
		return Config{}, true, fmt.Errorf("harbordb: %s is not set (the other POSTGRESQL_* variables are)", EnvHost)
	}
	if port == "" {
		port = "5432"
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return Config{}, true, fmt.Errorf("harbordb: %s=%q is not a port number", EnvPort, port)
	}
	if user == "" {
		user = "postgres"
	}
	if dbname == "" {
		dbname = "registry"
	}
	if sslmode == "" {
		sslmode = "disable"
	}
	u := url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort(host, port),
		Path:     "/" + dbname,
		RawQuery: url.Values{"sslmode": {sslmode}}.Encode(),
	}
	if pass != "" {
		u.User = url.UserPassword(user, pass)
	} else {
		u.User = url.User(user)
	}
	return Config{URL: u.String()}, true, nil
}

const redactedMark = "xxxxx"

var kvPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Redacted returns the URL with every password replaced by "xxxxx".
func (c Config) Redacted() string {
	s := c.URL
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), redactedMark)
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", redactedMark)
			u.RawQuery = q.Encode()
		}
		s = u.String()
	} else {
		s = kvPassword.ReplaceAllString(s, "${1}"+redactedMark)
	}
	return scrub(s, c.Secrets())
}

// Secrets returns the passwords the URL carries or that the driver would use
// for it (PGPASSWORD, a password file), so callers can scrub any output.
func (c Config) Secrets() []string {
	var out []string
	add := func(s string) {
		if s == "" || s == redactedMark {
			return
		}
		for _, o := range out {
			if o == s {
				return
			}
		}
		out = append(out, s)
	}
	if u, err := url.Parse(c.URL); err == nil && u.Scheme != "" {
		if p, ok := u.User.Password(); ok {
			add(p)
			// The percent-encoded form may appear in messages too.
			if enc := u.User.String(); strings.Contains(enc, ":") {
				add(enc[strings.Index(enc, ":")+1:])
			}
		}
		add(u.Query().Get("password"))
	} else {
		for _, m := range kvPassword.FindAllStringSubmatch(c.URL, -1) {
			add(strings.Trim(m[2], "'"))
		}
	}
	if pc, err := pgconn.ParseConfig(c.URL); err == nil {
		add(pc.Password)
	}
	return out
}

// scrub replaces every secret in s.
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, redactedMark)
	}
	return s
}

// scrubErr returns err's message with every secret replaced, as a new error
// that does not wrap err: the driver's error values may carry the password in
// their fields, where a caller's errors.As could find it.
func scrubErr(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	return &scrubbedError{msg: scrub(err.Error(), secrets), timeout: isTimeout(err)}
}

type scrubbedError struct {
	msg     string
	timeout bool
}

func (e *scrubbedError) Error() string { return e.msg }

// Timeout reports whether the original error was a timeout.
func (e *scrubbedError) Timeout() bool { return e.timeout }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
