package manifest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
)

const (
	cfg     = "sha256:e67d23e7820c49a8051dac2831f38290f5e72f66c8db5079eeb60d82f14894c0"
	l1      = "sha256:2804bad6fe94a55f18b2b37e300919a5fd517b95aa81e95db574c0ba069a3740"
	l2      = "sha256:8a1cee436cbac1489a1883c9d886fcfc46f302c55ed4106ae31729e4f4eb9041"
	l3      = "sha256:10dacdccfe877dc064d57442e6fa7a4e3085dc94e11a29819c2290fc3d788724"
	amd64   = "sha256:5861314d7fccb39c2192173240eab44fa35ca66426201ca2acd0630a6258dd51"
	arm64   = "sha256:f69162950f235e3cdbbad33f1f912d1a504be90d8a37d002c735d6f3e3882265"
	foreign = "sha256:656771905e1ef731f65cd0a0d9fb061238380a1a012e6abdf846ecc7d2ea36fd"
	sbom    = "sha256:98f3ae1ef67113d8140d4f6cb8d2830070e21ea48f091be519659846c771a374"
	sig     = "sha256:a543997d84f12798350c09bdef2cdb171bf41ed3e4a5f808af2feb0c56263009"
	nested  = "sha256:233562de1a0288b139c4fa40b7d189f806e906eeb048517aeb67f34ac0e2faf1"
	// The OCI empty descriptor ("{}") and the empty gzip layer schema1
	// manifests repeat.
	emptyJSON  = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	emptyLayer = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
	l512       = "sha512:a4abd4448c49562d828115d13a1fccea927f52b4d5459297f8b43e42da89238bc13626e43dcb38ddb082488927ec904fb42057443983e88585179d50551afe62"
)

const dockerSchema2 = `{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1472,
      "digest": "` + cfg + `"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 29124181,
         "digest": "` + l1 + `"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 1612,
         "digest": "` + l2 + `"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 628,
         "digest": "` + l3 + `"
      }
   ]
}`

const dockerList = `{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "manifests": [
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 1161,
         "digest": "` + amd64 + `",
         "platform": {"architecture": "amd64", "os": "linux"}
      },
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 1161,
         "digest": "` + arm64 + `",
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}
      }
   ]
}`

// A Windows image: the base layer is foreign (urls, never pushed).
const dockerForeign = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
  "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 3157, "digest": "` + cfg + `"},
  "layers": [
    {
      "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
      "size": 1667584375,
      "digest": "` + foreign + `",
      "urls": ["https://mcr.microsoft.com/v2/windows/servercore/blobs/` + foreign + `"]
    },
    {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1149, "digest": "` + l1 + `"}
  ]
}`

const ociManifest = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "` + cfg + `", "size": 7023},
  "layers": [
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "` + l1 + `", "size": 32654},
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": "` + l2 + `", "size": 16724},
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "` + l1 + `", "size": 32654}
  ],
  "annotations": {"org.opencontainers.image.created": "2024-03-01T10:00:00Z"}
}`

// Pushed by an old tool that leaves mediaType out (allowed by OCI 1.0).
const ociManifestNoMediaType = `{
  "schemaVersion": 2,
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "` + cfg + `", "size": 7023},
  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "` + l3 + `", "size": 32654}]
}`

const ociIndexNoMediaType = `{
  "schemaVersion": 2,
  "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "` + amd64 + `", "size": 7143,
     "platform": {"architecture": "amd64", "os": "linux"}},
    {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "` + nested + `", "size": 512}
  ]
}`

// A buildx index with an attestation manifest entry and a subject.
const ociIndex = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "` + amd64 + `", "size": 1052,
     "platform": {"architecture": "amd64", "os": "linux"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "` + arm64 + `", "size": 1052,
     "platform": {"architecture": "arm64", "os": "linux"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "` + sbom + `", "size": 839,
     "annotations": {"vnd.docker.reference.digest": "` + amd64 + `", "vnd.docker.reference.type": "attestation-manifest"},
     "platform": {"architecture": "unknown", "os": "unknown"}}
  ],
  "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "` + nested + `", "size": 300}
}`

const emptyIndex = `{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}`

// An OCI 1.1 referrer (cosign/notation style): empty config, subject.
const ociReferrer = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
  "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "` + emptyJSON + `", "size": 2, "data": "e30="},
  "layers": [
    {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": "` + sig + `", "size": 242,
     "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ..."}}
  ],
  "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "` + amd64 + `", "size": 1052}
}`

const ociArtifact = `{
  "mediaType": "application/vnd.oci.artifact.manifest.v1+json",
  "artifactType": "application/spdx+json",
  "blobs": [
    {"mediaType": "application/spdx+json", "digest": "` + sbom + `", "size": 48392}
  ],
  "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "` + amd64 + `", "size": 1052},
  "annotations": {"org.opencontainers.artifact.created": "2023-01-04T12:00:00Z"}
}`

// What distribution stores for schema1: the canonical payload, unsigned.
const schema1Unsigned = `{
   "schemaVersion": 1,
   "name": "library/busybox",
   "tag": "1.23",
   "architecture": "amd64",
   "fsLayers": [
      {"blobSum": "` + emptyLayer + `"},
      {"blobSum": "` + l1 + `"},
      {"blobSum": "` + emptyLayer + `"}
   ],
   "history": [
      {"v1Compatibility": "{\"id\":\"8c2e06607696bd4afb3d03b687e361cc43cf8ec1a4a725bc96e39f05ba97dd55\",\"created\":\"2015-04-17T22:01:13.062208605Z\"}"},
      {"v1Compatibility": "{\"id\":\"6ce2e90b0bc7224de3db1f0d646fe8e2c4dd37f1793928287f6074bc451a57ea\"}"},
      {"v1Compatibility": "{\"id\":\"cf2616975b4a3cba083ca99bc3f0bf25f5f528c3c52be1596b30f60b0b1c37ff\"}"}
   ]
}`

const schema1Signed = `{
   "schemaVersion": 1,
   "name": "library/hello-world",
   "tag": "latest",
   "architecture": "amd64",
   "fsLayers": [
      {"blobSum": "` + l2 + `"},
      {"blobSum": "` + emptyLayer + `"}
   ],
   "history": [
      {"v1Compatibility": "{\"id\":\"af340544ed62de0680f441c71fa1a80cb084678fed42bae393e543faea3a572c\"}"},
      {"v1Compatibility": "{\"id\":\"535020c3e8add9d6bb06e5ac15a261e73d9b213d62fb2c14d752b8e189b2b912\"}"}
   ],
   "signatures": [
      {
         "header": {
            "jwk": {"crv": "P-256", "kid": "OD6I:6DRK:JXEJ:KBM4:255X:NSAA:MUSF:E4VM:ZI6W:CUN2:L4Z6:LSF4", "kty": "EC",
                    "x": "3gAwX48IQ5oaYQAYSxor6rYYc_6yjuLCjtQ9LUakg4A", "y": "t72ge6kIA1XOjqjVoEOiPPAURltJFBMGDSQvEGVB010"},
            "alg": "ES256"
         },
         "signature": "XREm0L8WNn27Ga_iE_vRnTxVMhhYY0Zst_FfkKopg6gWSoTOZTuW4rK0fg_IqnKkEKlbD83tD46LKEGi5aIVFg",
         "protected": "eyJmb3JtYXRMZW5ndGgiOjY2MjgsImZvcm1hdFRhaWwiOiJDbjBLIiwidGltZSI6IjIwMTUtMDQtMDhUMTg6NTI6NTlaIn0"
      }
   ]
}`

// A Helm chart pushed as an OCI artifact with a vendor top-level type.
const unknownWithLayers = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.example.bundle.manifest.v1+json",
  "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": "` + cfg + `", "size": 117},
  "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": "` + l3 + `", "size": 3761}]
}`

const sha512Manifest = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "` + l512 + `", "size": 7},
  "layers": []
}`

func ds(s ...string) []digest.Digest {
	out := make([]digest.Digest, 0, len(s))
	for _, x := range s {
		out = append(out, digest.Digest(x))
	}
	return out
}

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		body string
		want Manifest
	}{
		{"docker schema2", dockerSchema2, Manifest{MediaType: MediaTypeDockerSchema2, Blobs: ds(cfg, l1, l2, l3)}},
		{"docker manifest list", dockerList, Manifest{MediaType: MediaTypeDockerManifestList, Children: ds(amd64, arm64)}},
		{"docker foreign layer", dockerForeign, Manifest{MediaType: MediaTypeDockerSchema2, Blobs: ds(cfg, foreign, l1), ForeignBlobs: ds(foreign)}},
		{"oci manifest, duplicate layer", ociManifest, Manifest{MediaType: MediaTypeOCIManifest, Blobs: ds(cfg, l1, l2)}},
		{"oci manifest without mediaType", ociManifestNoMediaType, Manifest{MediaType: MediaTypeOCIManifest, Blobs: ds(cfg, l3)}},
		{"oci index without mediaType", ociIndexNoMediaType, Manifest{MediaType: MediaTypeOCIIndex, Children: ds(amd64, nested)}},
		{"oci index with subject", ociIndex, Manifest{MediaType: MediaTypeOCIIndex, Children: ds(amd64, arm64, sbom), Subject: nested}},
		{"empty oci index", emptyIndex, Manifest{MediaType: MediaTypeOCIIndex}},
		{"oci referrer", ociReferrer, Manifest{MediaType: MediaTypeOCIManifest, Blobs: ds(emptyJSON, sig), Subject: amd64}},
		{"oci artifact manifest", ociArtifact, Manifest{MediaType: MediaTypeOCIArtifact, Blobs: ds(sbom), Subject: amd64}},
		{"schema1 unsigned", schema1Unsigned, Manifest{MediaType: MediaTypeDockerSchema1, Blobs: ds(emptyLayer, l1)}},
		{"schema1 signed", schema1Signed, Manifest{MediaType: MediaTypeDockerSchema1Signed, Blobs: ds(l2, emptyLayer)}},
		{"unknown media type with references", unknownWithLayers, Manifest{MediaType: "application/vnd.example.bundle.manifest.v1+json", Blobs: ds(cfg, l3)}},
		{"sha512 digest", sha512Manifest, Manifest{MediaType: MediaTypeOCIManifest, Blobs: ds(l512)}},
		{"foreign and local mention of one layer is local", `{"mediaType":"` + MediaTypeOCIManifest + `","config":{"digest":"` + cfg + `"},
			"layers":[{"digest":"` + l1 + `","urls":["https://example.com/l1"]},{"digest":"` + l1 + `"}]}`,
			Manifest{MediaType: MediaTypeOCIManifest, Blobs: ds(cfg, l1)}},
		{"fields of another type are read too", `{"mediaType":"` + MediaTypeOCIIndex + `","manifests":[{"digest":"` + amd64 + `"}],"layers":[{"digest":"` + l1 + `"}]}`,
			Manifest{MediaType: MediaTypeOCIIndex, Blobs: ds(l1), Children: ds(amd64)}},
		{"artifact without blobs", `{"mediaType":"` + MediaTypeOCIArtifact + `","subject":{"digest":"` + amd64 + `"}}`,
			Manifest{MediaType: MediaTypeOCIArtifact, Subject: amd64}},
		{"schema1 shape without mediaType or schemaVersion", `{"fsLayers":[{"blobSum":"` + l1 + `"}]}`,
			Manifest{MediaType: MediaTypeDockerSchema1, Blobs: ds(l1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse([]byte(c.body))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.MediaType != c.want.MediaType || !slices.Equal(got.Blobs, c.want.Blobs) || !slices.Equal(got.Children, c.want.Children) ||
				got.Subject != c.want.Subject || !slices.Equal(got.ForeignBlobs, c.want.ForeignBlobs) {
				t.Fatalf("Parse =\n %+v\nwant\n %+v", *got, c.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	// An image config: a blob, not a manifest, but it has a "config" field.
	const imageConfig = `{"architecture":"amd64","config":{"Env":["PATH=/usr/bin"],"Cmd":["sh"]},"os":"linux",
		"rootfs":{"type":"layers","diff_ids":["` + l1 + `"]}}`
	cases := []struct {
		name      string
		body      string
		field     string // "" means the document
		noRefs    bool   // wraps ErrNoReferences
		substring string
	}{
		{name: "empty", body: "", substring: "not a JSON object"},
		{name: "null", body: "null", substring: "not a JSON object"},
		{name: "array", body: `[{"layers":[]}]`, substring: "not a JSON object"},
		{name: "number", body: "42", substring: "not a JSON object"},
		{name: "binary", body: "\x1f\x8b\x08\x00\x00", substring: "not a JSON object"},
		{name: "truncated", body: dockerSchema2[:200], substring: "invalid manifest JSON"},
		{name: "trailing garbage", body: dockerSchema2 + "x", substring: "invalid manifest JSON"},
		{name: "layers of wrong type", body: `{"mediaType":"` + MediaTypeOCIManifest + `","config":{"digest":"` + cfg + `"},"layers":"` + l1 + `"}`, substring: "invalid manifest JSON"},
		{name: "empty object", body: `{}`, noRefs: true},
		{name: "schemaVersion only", body: `{"schemaVersion": 2}`, noRefs: true},
		{name: "unknown type without references", body: `{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json","annotations":{"a":"b"}}`, field: "mediaType", noRefs: true},
		{name: "subject alone is not a reference", body: `{"schemaVersion":2,"subject":{"digest":"` + amd64 + `"}}`, noRefs: true},
		{name: "image config", body: imageConfig, field: "config.digest", substring: "missing digest"},
		{name: "schema2 without config", body: `{"schemaVersion":2,"mediaType":"` + MediaTypeDockerSchema2 + `","layers":[{"digest":"` + l1 + `"}]}`, field: "config"},
		{name: "oci manifest without config", body: `{"mediaType":"` + MediaTypeOCIManifest + `"}`, field: "config"},
		{name: "schema1 without fsLayers", body: `{"schemaVersion":1,"name":"a","tag":"b"}`, field: "fsLayers"},
		{name: "invalid layer digest", body: strings.Replace(dockerSchema2, l2, "sha256:8a1cee43", 1), field: "layers[1].digest", substring: "invalid digest"},
		{name: "upper-case hex", body: strings.Replace(dockerSchema2, l3, strings.ToUpper(l3[7:]), 1), field: "layers[2].digest"},
		{name: "unknown algorithm", body: strings.Replace(dockerSchema2, cfg, "md5:d41d8cd98f00b204e9800998ecf8427e", 1), field: "config.digest"},
		{name: "tarsum blobSum", body: strings.Replace(schema1Unsigned, l1, "tarsum.dev+sha256:"+l1[7:], 1), field: "fsLayers[1].blobSum"},
		{name: "child without digest", body: `{"mediaType":"` + MediaTypeOCIIndex + `","manifests":[{"mediaType":"` + MediaTypeOCIManifest + `","size":3}]}`, field: "manifests[0].digest", substring: "missing digest"},
		{name: "invalid subject", body: strings.Replace(ociReferrer, amd64, "sha256:zz", 1), field: "subject.digest"},
		{name: "invalid artifact blob", body: strings.Replace(ociArtifact, sbom, "sha256:", 1), field: "blobs[0].digest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse([]byte(c.body))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", *m)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParseError", err, err)
			}
			if pe.Field != c.field {
				t.Errorf("Field = %q, want %q (%v)", pe.Field, c.field, err)
			}
			if errors.Is(err, ErrNoReferences) != c.noRefs {
				t.Errorf("errors.Is(ErrNoReferences) = %v, want %v (%v)", !c.noRefs, c.noRefs, err)
			}
			if !strings.Contains(err.Error(), c.substring) {
				t.Errorf("error %q does not contain %q", err, c.substring)
			}
		})
	}
}

// FuzzParse: Parse never panics, an error is always a *ParseError, and
// every digest it returns is valid and has a storage key.
func FuzzParse(f *testing.F) {
	for _, s := range []string{dockerSchema2, dockerList, dockerForeign, ociManifest, ociManifestNoMediaType,
		ociIndexNoMediaType, ociIndex, emptyIndex, ociReferrer, ociArtifact, schema1Unsigned, schema1Signed,
		unknownWithLayers, sha512Manifest, `{}`, `null`, `{"layers":null,"config":null}`, `{"manifests":[{}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Parse(body)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParseError", err, err)
			}
			if m != nil {
				t.Fatalf("non-nil manifest with error")
			}
			return
		}
		if m.MediaType == "" {
			t.Fatalf("empty MediaType")
		}
		check := func(what string, d digest.Digest) {
			if err := d.Validate(); err != nil {
				t.Fatalf("%s %q: %v", what, d, err)
			}
			if _, err := layout.Path(layout.BlobData{Digest: d}); err != nil {
				t.Fatalf("%s %q has no blob key: %v", what, d, err)
			}
		}
		for _, d := range m.Blobs {
			check("blob", d)
		}
		for _, d := range m.Children {
			check("child", d)
		}
		for _, d := range m.ForeignBlobs {
			check("foreign blob", d)
			if !slices.Contains(m.Blobs, d) {
				t.Fatalf("foreign blob %s not in Blobs", d)
			}
		}
		if m.Subject != "" {
			check("subject", m.Subject)
		}
		for _, list := range [][]digest.Digest{m.Blobs, m.Children, m.ForeignBlobs} {
			seen := map[digest.Digest]bool{}
			for _, d := range list {
				if seen[d] {
					t.Fatalf("duplicate %s", d)
				}
				seen[d] = true
			}
		}
	})
}
