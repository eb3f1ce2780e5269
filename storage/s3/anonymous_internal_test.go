package s3

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// With anonymous credentials minio-go presigns nothing: listings go out
// unsigned, to the URL minio-go would use, and their pages are checked as
// signed ones are (a page without IsTruncated is still an error).
func TestAnonymousListingIsUnsignedAndChecked(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.URL.Query().Has("X-Amz-Signature") {
			t.Errorf("an anonymous listing was signed: %s", r.URL)
		}
		paths = append(paths, r.URL.Path)
		body := `<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>root/docker/a</Key><LastModified>2024-01-02T03:04:05Z</LastModified><Size>1</Size></Contents></ListBucketResult>`
		if r.URL.Query().Get("prefix") == "root/bad/" {
			body = strings.Replace(body, "<IsTruncated>false</IsTruncated>", "", 1)
		}
		w.Write([]byte(body))
	}))
	defer srv.Close()
	creds := credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	u, _ := url.Parse(srv.URL)
	client, err := minio.New(u.Host, &minio.Options{Creds: creds, Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	d := &Driver{client: client, creds: creds, http: srv.Client(), bucket: "reg", rootPrefix: "root/", pathStyle: true}
	var got []string
	err = d.list(context.Background(), "root/docker/", "", "", func(o listedObject) error { got = append(got, o.key); return nil }, nil)
	if err != nil || len(got) != 1 || got[0] != "root/docker/a" || paths[0] != "/reg/" {
		t.Fatalf("anonymous listing: %v %v, paths %v", got, err, paths)
	}
	if err := d.list(context.Background(), "root/bad/", "", "", func(listedObject) error { return nil }, nil); err == nil || !strings.Contains(err.Error(), "has no IsTruncated") {
		t.Errorf("an anonymous page without IsTruncated: %v", err)
	}
	// Virtual-host style where minio-go would use it.
	aws, _ := minio.New("s3.amazonaws.com", &minio.Options{Creds: creds, Secure: true, Region: "us-east-1"})
	d = &Driver{client: aws, bucket: "reg"}
	if got := d.unsignedURL(url.Values{"prefix": {"a b/"}}).String(); got != "https://reg.s3.amazonaws.com/?prefix=a%20b%2F" {
		t.Errorf("virtual-host URL: %s", got)
	}
}
