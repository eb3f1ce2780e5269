package s3

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

// Failures no test server here can produce: virtual-host addressing that
// the endpoint's DNS does not serve, and AWS's answers for a bucket in
// another region.
func TestExplainOpenNamesTheFlag(t *testing.T) {
	d := &Driver{endpoint: "s3.example.com"}
	cfg := Config{Bucket: "reg", Region: "us-east-1", AccessKey: "a"}
	dns := &url.Error{Op: "Head", URL: "https://reg.s3.example.com/", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "reg.s3.example.com", IsNotFound: true}}}
	cases := []struct {
		name string
		err  error
		want []string
	}{
		{"virtual host not in DNS", dns, []string{"cannot resolve reg.s3.example.com", "virtual-host style", "use --s3-path-style"}},
		{"other DNS failure", &url.Error{Op: "Head", URL: "https://s3.example.com/reg", Err: &net.DNSError{Err: "no such host", Name: "s3.example.com"}},
			[]string{"cannot reach the S3 endpoint s3.example.com"}},
		{"AWS redirect to the bucket's region", minio.ErrorResponse{StatusCode: 301, Code: "PermanentRedirect", Region: "eu-central-1",
			Message: "The bucket you are attempting to access must be addressed using the specified endpoint."},
			[]string{`bucket "reg" at s3.example.com is in region eu-central-1, not us-east-1`, "--s3-region eu-central-1"}},
		{"HEAD answered 301 with the region header", minio.ErrorResponse{StatusCode: 301, Code: "301 Moved Permanently", Message: "301 Moved Permanently", Region: "ap-south-1"},
			[]string{"--s3-region ap-south-1"}},
		{"AWS's malformed authorization", minio.ErrorResponse{StatusCode: 400, Code: "AuthorizationHeaderMalformed",
			Message: "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'"}, []string{"--s3-region eu-west-1"}},
		{"region refused, none named", minio.ErrorResponse{StatusCode: 400, Code: "InvalidRegion", Message: "bad region"},
			[]string{"is not in region us-east-1", "--s3-region"}},
	}
	for _, c := range cases {
		err := d.explainOpen(cfg, true, c.err)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v lacks %q", c.name, err, w)
			}
		}
		if !errors.Is(err, c.err) && !errors.As(err, new(minio.ErrorResponse)) {
			t.Errorf("%s: the cause is not kept in the chain: %v", c.name, err)
		}
	}
}
