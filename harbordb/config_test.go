package harbordb

import (
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigFromEnv(t *testing.T) {
	if _, ok, err := ConfigFromEnv(envOf(nil)); ok || err != nil {
		t.Fatalf("no variables: ok=%v err=%v, want not ok", ok, err)
	}
	cfg, ok, err := ConfigFromEnv(envOf(map[string]string{
		EnvHost: "harbor-db", EnvPort: "5433", EnvUsername: "harbor", EnvPassword: "p@ss:w/rd",
		EnvDatabase: "harbor_core", EnvSSLMode: "require",
	}))
	if err != nil || !ok {
		t.Fatalf("ConfigFromEnv: %v %v", ok, err)
	}
	if want := "postgres://harbor:p%40ss%3Aw%2Frd@harbor-db:5433/harbor_core?sslmode=require"; cfg.URL != want {
		t.Errorf("URL %q, want %q", cfg.URL, want)
	}
	if got := cfg.Redacted(); got != "postgres://harbor:xxxxx@harbor-db:5433/harbor_core?sslmode=require" {
		t.Errorf("Redacted %q", got)
	}
	if s := cfg.Secrets(); len(s) == 0 || s[0] != "p@ss:w/rd" {
		t.Errorf("Secrets %q", s)
	}

	cfg, _, err = ConfigFromEnv(envOf(map[string]string{EnvHost: "db"}))
	if err != nil || cfg.URL != "postgres://postgres@db:5432/registry?sslmode=disable" {
		t.Errorf("defaults: %q %v", cfg.URL, err)
	}
	for _, bad := range []map[string]string{
		{EnvPassword: "x"},
		{EnvHost: "db", EnvPort: "http"},
		{EnvHost: "db", EnvPort: "70000"},
	} {
		if _, ok, err := ConfigFromEnv(envOf(bad)); err == nil || !ok {
			t.Errorf("%v: ok=%v err=%v, want an error", bad, ok, err)
		} else if strings.Contains(err.Error(), "x\"") {
			t.Errorf("error shows a value: %v", err)
		}
	}
}

func TestRedactedAndSecrets(t *testing.T) {
	for _, tc := range []struct {
		url, redacted, secret string
	}{
		{"postgres://u:s3cr%2Ft@h:5432/d", "postgres://u:xxxxx@h:5432/d", "s3cr/t"},
		{"postgres://u@h/d?password=qp4ss&sslmode=disable", "postgres://u@h/d?password=xxxxx&sslmode=disable", "qp4ss"},
		{"host=h user=u password='kv pass' dbname=d", "host=h user=u password=xxxxx dbname=d", "kv pass"},
		{"host=h password=kvpass2 dbname=d", "host=h password=xxxxx dbname=d", "kvpass2"},
	} {
		c := Config{URL: tc.url}
		if got := c.Redacted(); got != tc.redacted {
			t.Errorf("Redacted(%q) = %q, want %q", tc.url, got, tc.redacted)
		}
		found := false
		for _, s := range c.Secrets() {
			found = found || s == tc.secret
		}
		if !found {
			t.Errorf("Secrets(%q) = %q, want %q among them", tc.url, c.Secrets(), tc.secret)
		}
		if strings.Contains(scrubErr(errors.New("failed: "+tc.url), c.Secrets()).Error(), tc.secret) {
			t.Errorf("scrubErr leaves %q", tc.secret)
		}
	}
}

func TestRedisURLs(t *testing.T) {
	for _, tc := range []struct {
		url  string
		db   int
		addr string
	}{
		{"redis://redis:6379/1?idle_timeout_seconds=30", 1, "redis:6379"},
		{"redis://:pw@redis/2", 2, "redis:6379"},
		{"redis://redis:6380?db=3", 3, "redis:6380"},
		{"redis+sentinel://:pw@s1:26379,s2/mymaster/5", 5, ""},
	} {
		c, _, secrets, err := openRedis(tc.url)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if strings.Contains(tc.url, ":pw@") && (len(secrets) != 1 || secrets[0] != "pw") {
			t.Errorf("%s: secrets %q", tc.url, secrets)
		}
		o := c.(*redis.Client).Options()
		if o.DB != tc.db || (tc.addr != "" && o.Addr != tc.addr) {
			t.Errorf("%s: db %d addr %s, want %d %s", tc.url, o.DB, o.Addr, tc.db, tc.addr)
		}
		c.Close()
	}
	if got := RedactRedisURL("redis://:pw@redis:6379/1"); got != "redis://:xxxxx@redis:6379/1" {
		t.Errorf("RedactRedisURL %q", got)
	}
}
