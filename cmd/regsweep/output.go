package main

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage"
)

// The --format flag every reporting command shares: text for people, JSON
// (and nothing else on stdout) for scripts.

func addFormatFlag(f *pflag.FlagSet, format *string) {
	f.StringVar(format, "format", "text", "output format: text or json")
}

func checkFormat(format string) error {
	if format != "text" && format != "json" {
		return usageError{fmt.Errorf("--format must be text or json, not %q", format)}
	}
	return nil
}

func writeReport(w io.Writer, format string, asJSON, asText func(io.Writer) error) error {
	if format == "json" {
		return asJSON(w)
	}
	return asText(w)
}

func storageInfo(d storage.Driver) reports.StorageInfo {
	return reports.StorageInfo{Driver: d.Name(), Location: d.Location()}
}
