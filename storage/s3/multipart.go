package s3

import (
	"context"
	"errors"
	"strings"

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
		res, err := d.core.ListMultipartUploads(ctx, d.bucket, query, keyMarker, idMarker, "", uploadsPage)
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
			if !ok {
				continue
			}
			seen[u.UploadID] = true
			n++
			if err := fn(storage.MultipartUpload{Key: key, UploadID: u.UploadID, Initiated: u.Initiated}); err != nil {
				return n, err
			}
		}
		if !res.IsTruncated {
			return n, nil
		}
		if (res.NextKeyMarker == "" && res.NextUploadIDMarker == "") ||
			(res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker) {
			return n, d.pathErr("list-multipart", prefix, errors.New("the store sent a truncated upload listing without a next marker"))
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
