package reports

import (
	"encoding/csv"
	"io"
	"strconv"
)

// CSVHeader is the header of `--format csv`: one row per repository. The
// columns are a contract (docs/report-schema.md): added at the end, never
// renamed or reordered.
var CSVHeader = []string{"repository", "project", "tags", "manifests", "blobs", "total_bytes", "unique_bytes", "shared_bytes",
	"reclaimable_bytes", "uploads", "findings", "broken_findings"}

// WriteCSV writes one row per repository, sorted by name.
func (a *Audit) WriteCSV(w io.Writer) error {
	a.tally()
	return writeCSV(w, &a.Accounting)
}

func writeCSV(w io.Writer, acc *Accounting) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	i := strconv.Itoa
	i64 := func(n int64) string { return strconv.FormatInt(n, 10) }
	for _, r := range acc.Repositories {
		s := r.Space
		rec := []string{r.Name, r.Project, i(s.Tags), i(s.Manifests), i(s.Blobs), i64(s.TotalBytes), i64(s.UniqueBytes), i64(s.SharedBytes),
			i64(s.ReclaimableBytes), i(s.Uploads), i(s.Findings), i(s.BrokenFindings)}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
