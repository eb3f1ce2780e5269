package layout

import (
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestCanonicalSHA256AgreesWithValidate: the fast path accepts only what
// go-digest's Validate accepts, and every canonical sha256 digest.
func TestCanonicalSHA256AgreesWithValidate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "0123456789abcdefABCDEFgxyz:+._-"
	for i := range 20000 {
		d := digest.FromString(string(rune(i)))
		b := []byte(d)
		// Mutate some: a character, the length or the algorithm.
		switch rng.IntN(4) {
		case 0:
			b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
		case 1:
			b = b[:rng.IntN(len(b))]
		case 2:
			b = append(b, alphabet[rng.IntN(len(alphabet))])
		}
		d = digest.Digest(b)
		if canonicalSHA256(d) && d.Validate() != nil {
			t.Fatalf("fast path accepts %q, which Validate refuses: %v", d, d.Validate())
		}
		if d.Validate() == nil && d.Algorithm() == digest.SHA256 && !canonicalSHA256(d) {
			t.Fatalf("fast path refuses valid %q", d)
		}
	}
}
