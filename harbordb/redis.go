package harbordb

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The registry's blob-descriptor cache keys that Harbor's GC purges after a
// sweep (cleanCache): stale entries make pulls of swept blobs fail with
// "blob unknown".
const (
	CacheBlobsPattern      = "blobs::*"
	CacheRepositoryPattern = "repository::*"
)

// scanCount is the SCAN COUNT hint; SCAN never blocks the server as KEYS does.
const scanCount = 1000

// PurgeRegistryCache deletes the registry cache keys (CacheBlobsPattern and
// CacheRepositoryPattern)
// with SCAN and DEL in the database number the URL names. The URL is Harbor's
// _REDIS_URL_REG: redis://[user:password@]host:port/db (rediss:// for TLS,
// ?db=N also accepted) or redis+sentinel://[:password@]host:port[,host:port...]/master/db.
// Harbor's own query parameters (idle_timeout_seconds, ...) are ignored.
// A Redis that does not answer is said so before any key is scanned.
// Errors never contain the password.
func PurgeRegistryCache(ctx context.Context, redisURL string) (deleted int, err error) {
	client, target, secrets, err := openRedis(redisURL)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return 0, fmt.Errorf("harbordb: the registry's Redis %s does not answer: %s", target, scrub(err.Error(), secrets))
	}
	for _, pattern := range [...]string{CacheBlobsPattern, CacheRepositoryPattern} {
		var cursor uint64
		for {
			keys, next, err := client.Scan(ctx, cursor, pattern, scanCount).Result()
			if err != nil {
				return deleted, fmt.Errorf("harbordb: scanning %s for %s: %s", target, pattern, scrub(err.Error(), secrets))
			}
			if len(keys) > 0 {
				n, err := client.Del(ctx, keys...).Result()
				if err != nil {
					return deleted, fmt.Errorf("harbordb: deleting %d %s keys in %s: %s", len(keys), pattern, target, scrub(err.Error(), secrets))
				}
				deleted += int(n)
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return deleted, nil
}

// RedactRedisURL returns the URL with its password replaced.
func RedactRedisURL(raw string) string {
	raw, sentinels := splitSentinelHosts(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable Redis URL)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redactedMark)
	}
	if sentinels != "" {
		return strings.Replace(u.String(), sentinelPlaceholder, sentinels, 1)
	}
	return u.String()
}

const sentinelPlaceholder = "sentinels.invalid"

// splitSentinelHosts takes the comma-separated host list out of a
// redis+sentinel URL, which net/url cannot parse, leaving a placeholder.
func splitSentinelHosts(raw string) (string, string) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !strings.HasSuffix(scheme, "+sentinel") {
		return raw, ""
	}
	authority, path, _ := strings.Cut(rest, "/")
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	if !strings.Contains(hosts, ",") {
		return raw, ""
	}
	return scheme + "://" + userinfo + sentinelPlaceholder + "/" + path, hosts
}

// openRedis builds a client for Harbor's Redis URL forms.
func openRedis(raw string) (redis.UniversalClient, string, []string, error) {
	raw, sentinels := splitSentinelHosts(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", nil, fmt.Errorf("harbordb: the Redis URL does not parse (scheme redis://, rediss:// or redis+sentinel:// expected)")
	}
	target := RedactRedisURL(raw)
	if sentinels != "" {
		target = strings.Replace(target, sentinelPlaceholder, sentinels, 1)
	}
	password, _ := u.User.Password()
	var secrets []string
	if password != "" {
		secrets = append(secrets, password)
	}
	username := u.User.Username()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("harbordb: Redis URL %s: %s", target, fmt.Sprintf(format, args...))
	}
	parts := strings.FieldsFunc(u.Path, func(r rune) bool { return r == '/' })
	db := 0
	parseDB := func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return bad("database number %q is not a number", s)
		}
		db = n
		return nil
	}
	timeouts := func(o *redis.Options) {
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 10*time.Second, 30*time.Second, 30*time.Second
	}
	switch u.Scheme {
	case "redis", "rediss":
		switch len(parts) {
		case 0:
		case 1:
			if err := parseDB(parts[0]); err != nil {
				return nil, "", nil, err
			}
		default:
			return nil, "", nil, bad("path %q is not /<db>", u.Path)
		}
		if q := u.Query().Get("db"); q != "" {
			if err := parseDB(q); err != nil {
				return nil, "", nil, err
			}
		}
		host, port := u.Hostname(), u.Port()
		if host == "" {
			host = "localhost"
		}
		if port == "" {
			port = "6379"
		}
		o := &redis.Options{Addr: net.JoinHostPort(host, port), Username: username, Password: password, DB: db}
		if u.Scheme == "rediss" {
			o.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		timeouts(o)
		return redis.NewClient(o), target, secrets, nil
	case "redis+sentinel", "rediss+sentinel":
		if len(parts) < 1 || len(parts) > 2 {
			return nil, "", nil, bad("path %q is not /<master>[/<db>]", u.Path)
		}
		if len(parts) == 2 {
			if err := parseDB(parts[1]); err != nil {
				return nil, "", nil, err
			}
		}
		var addrs []string
		if sentinels == "" {
			sentinels = u.Host
		}
		for _, h := range strings.Split(sentinels, ",") {
			if _, _, err := net.SplitHostPort(h); err != nil {
				h = net.JoinHostPort(h, "26379")
			}
			addrs = append(addrs, h)
		}
		o := &redis.FailoverOptions{MasterName: parts[0], SentinelAddrs: addrs, Username: username, Password: password, DB: db,
			DialTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
		if u.Scheme == "rediss+sentinel" {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return redis.NewFailoverClient(o), target, secrets, nil
	}
	return nil, "", nil, bad("scheme %q is not redis, rediss or redis+sentinel", u.Scheme)
}
