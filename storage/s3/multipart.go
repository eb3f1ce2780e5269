package s3

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/regsweep/regsweep/storage"
)

// How the store treats the prefix of ListMultipartUploads. AWS filters by
// prefix. MinIO takes a non-empty prefix for an exact object name: it
// finds the uploads of "r/_uploads/<id>/data" when asked for exactly that
// key and nothing for "docker/". MinIO answers an empty prefix from a
// memory cache of the uploads started since the server last started.
const (
	prefixUnknown int32 = iota
	prefixHonoured
	prefixIgnored
)

// uploadsPage is the most uploads one ListMultipartUploads page asks for.
const uploadsPage = 1000

// WalkMultipartUploads calls fn for every incomplete multipart upload
// whose key starts with prefix.
//
// It asks the store for the prefix first. While it does not know that the
// store honours prefixes, it also lists every upload of the bucket with an
// empty prefix and filters here, and learns from the two answers: a
// directory prefix ("…/") that finds uploads proves the store filters by
// prefix; uploads the empty listing finds under the prefix, and the
// prefixed listing missed, prove it does not (MinIO), and from then on a
// directory prefix is only filtered here. An exact key is always asked for
// as well, since that is the one query MinIO answers from disk.
//
// So on AWS a walk costs one listing once an upload has been seen, two
// before; on MinIO two for an exact key and one for a directory prefix.
// On MinIO an upload started before the server's last restart is found only
// by its exact key.
func (d *Driver) WalkMultipartUploads(ctx context.Context, prefix string, fn func(storage.MultipartUpload) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	full := d.key(prefix)
	isDir := full == "" || strings.HasSuffix(full, "/")
	mode := d.mpPrefix.Load()
	seen := make(map[string]bool)

	serverSide := full != "" && (mode != prefixIgnored || !isDir)
	clientSide := full == "" || mode != prefixHonoured
	if serverSide {
		n, err := d.listUploads(ctx, prefix, full, full, seen, fn)
		if err != nil {
			return err
		}
		if n > 0 && isDir {
			d.mpPrefix.CompareAndSwap(prefixUnknown, prefixHonoured)
			clientSide = false
		}
	}
	if clientSide {
		n, err := d.listUploads(ctx, prefix, "", full, seen, fn)
		if err != nil {
			return err
		}
		if n > 0 && serverSide && isDir {
			d.mpPrefix.Store(prefixIgnored)
		}
	}
	return ctx.Err()
}

// listUploads pages through ListMultipartUploads(query) and hands fn the
// uploads below want that are not yet in seen. It returns how many it
// handed on.
func (d *Driver) listUploads(ctx context.Context, prefix, query, want string, seen map[string]bool, fn func(storage.MultipartUpload) error) (int, error) {
	n := 0
	var keyMarker, idMarker string
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		res, err := d.uploadsPage(ctx, query, keyMarker, idMarker)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return n, ctxErr
			}
			return n, d.pathErr("list-multipart", prefix, err)
		}
		for _, u := range res.Uploads {
			if !strings.HasPrefix(u.Key, want) || seen[u.UploadID] {
				continue
			}
			key, ok := d.logical(u.Key)
			if !ok { // the root's own folder marker, not a key below it
				continue
			}
			seen[u.UploadID] = true
			n++
			if err := fn(storage.MultipartUpload{Key: key, UploadID: u.UploadID, Initiated: u.Initiated}); err != nil {
				return n, err
			}
		}
		if !res.truncated {
			return n, nil
		}
		if (res.NextKeyMarker == "" && res.NextUploadIDMarker == "") ||
			(res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker) {
			return n, d.pathErr("list-multipart", prefix, fmt.Errorf("%w: a truncated upload listing without a next marker, or with the one just sent", errMalformed))
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// AbortMultipartUpload aborts one upload and frees its parts. An upload
// that is already gone is storage.ErrNotFound.
func (d *Driver) AbortMultipartUpload(ctx context.Context, key, uploadID string) error {
	if err := checkKey(key); err != nil {
		return d.pathErr("abort-multipart", key, err)
	}
	if uploadID == "" {
		return d.pathErr("abort-multipart", key, errors.New("empty upload id"))
	}
	if err := d.core.AbortMultipartUpload(ctx, d.bucket, d.key(key), uploadID); err != nil {
		return d.pathErr("abort-multipart", key, err)
	}
	return nil
}

// uploadsResult is one ListMultipartUploads page. Upload listings are
// short, so encoding/xml reads them; IsTruncated is a pointer to tell a
// missing element from false.
type uploadsResult struct {
	XMLName            xml.Name `xml:"ListMultipartUploadsResult"`
	IsTruncated        *string
	NextKeyMarker      string
	NextUploadIDMarker string `xml:"NextUploadIdMarker"`
	EncodingType       string
	Uploads            []struct {
		Key       string
		UploadID  string `xml:"UploadId"`
		Initiated time.Time
	} `xml:"Upload"`

	truncated bool
}

// uploadsPage requests one page of ListMultipartUploads, as list.go does
// a listing page. A page without IsTruncated, or with one that is no
// boolean, is an error: it cannot say whether the listing goes on.
func (d *Driver) uploadsPage(ctx context.Context, prefix, keyMarker, idMarker string) (*uploadsResult, error) {
	q := url.Values{"uploads": {""}, "prefix": {prefix}, "max-uploads": {strconv.Itoa(uploadsPage)}, "encoding-type": {"url"}}
	if keyMarker != "" {
		q.Set("key-marker", keyMarker)
	}
	if idMarker != "" {
		q.Set("upload-id-marker", idMarker)
	}
	resp, err := d.bucketGet(ctx, q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res uploadsResult
	if err := xml.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&res); err != nil {
		return nil, fmt.Errorf("%w: upload listing: %w", errMalformed, err)
	}
	if res.IsTruncated == nil {
		return nil, fmt.Errorf("%w: the upload listing has no IsTruncated: it cannot say whether it goes on", errMalformed)
	}
	if res.truncated, err = strconv.ParseBool(strings.TrimSpace(*res.IsTruncated)); err != nil {
		return nil, fmt.Errorf("%w: upload listing: IsTruncated %q is not a boolean", errMalformed, *res.IsTruncated)
	}
	for i := range res.Uploads {
		u := &res.Uploads[i]
		if u.Key, err = decodeName(u.Key, res.EncodingType); err != nil {
			return nil, err
		}
		if u.Key == "" || u.UploadID == "" || u.Initiated.IsZero() {
			return nil, fmt.Errorf("%w: an upload without its key, id or start time", errMalformed)
		}
	}
	if res.NextKeyMarker, err = decodeName(res.NextKeyMarker, res.EncodingType); err != nil {
		return nil, err
	}
	return &res, nil
}
