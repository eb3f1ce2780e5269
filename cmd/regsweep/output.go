package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/regsweep/regsweep/reports"
	"github.com/regsweep/regsweep/storage"
)

// The --format flag every reporting command shares: text for people, JSON
// (and nothing else on stdout) for scripts; audit adds csv and html.

func addFormatFlag(f *pflag.FlagSet, format *string) {
	f.StringVar(format, "format", "text", "output format: text or json")
}

func checkFormat(format string) error {
	return checkFormatOf(format, "text", "json")
}

func checkFormatOf(format string, allowed ...string) error {
	if !slices.Contains(allowed, format) {
		return usageError{fmt.Errorf("--format must be %s, not %q", strings.Join(allowed, ", "), format)}
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
	return reports.NewStorageInfo(d.Name(), d.Location())
}

// Report destinations gc and audit share. They are read back from the
// command's flag set, so a command registers them with one line.
type reportOptions struct {
	output      string
	metricsFile string
	pushgateway string
	pushJob     string
	top         int
}

func addReportFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("output", "", "write the report to this file (mode 0600) instead of stdout")
	f.String("metrics-file", "", "write Prometheus metrics to this file (mode 0644, so that node_exporter can read it; replaced atomically: the textfile collector)")
	f.String("pushgateway", "", "push the same metrics to this Prometheus Pushgateway URL")
	f.String("pushgateway-job", "regsweep", "Pushgateway job name (the grouping key adds command=<command>)")
	f.Int("top", 10, "repositories and projects in audit's text tables, repositories in gc's lists of where it frees space and of the tags a policy deletes, findings of each kind in audit's HTML report (0: all)")
}

func reportFlags(cmd *cobra.Command) reportOptions {
	f := cmd.Flags()
	var o reportOptions
	o.output, _ = f.GetString("output")
	o.metricsFile, _ = f.GetString("metrics-file")
	o.pushgateway, _ = f.GetString("pushgateway")
	o.pushJob, _ = f.GetString("pushgateway-job")
	o.top, _ = f.GetInt("top")
	return o
}

// writeOutput writes a report to stdout, or to path through a temporary
// file (mode 0600) renamed into place, so a reader never sees half a
// report and nobody else can read it.
func writeOutput(stdout io.Writer, path string, write func(io.Writer) error) error {
	if path == "" {
		return write(stdout)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	return nil
}

// terminalWidth is the width of w when it is a terminal, else 0.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}
