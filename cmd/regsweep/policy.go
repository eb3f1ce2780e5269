package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/regsweep/regsweep/retention"
)

func newPolicyCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check a retention policy file (which tags gc --policy keeps)",
		Long: `A retention policy says which tags to keep in which repositories; docs/retention.md describes
the file. The first rule whose pattern matches a repository governs it; a repository no rule
matches keeps every tag.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newPolicyCheckCommand(g))
	return cmd
}

type policyCheckOptions struct{ format string }

func newPolicyCheckCommand(g *globalOptions) *cobra.Command {
	o := &policyCheckOptions{}
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a retention policy file and print its effective rules",
		Long: `Validate a retention policy file: unknown keys, keys given twice, bad globs or regexps, bad
durations, counts below 1 and empty rules or clauses are errors that name the key and its line
(exit 2). A valid file's rules are printed in the order they are tried, each keep clause in
words, with the defaults filled in (untagged.older_than 0s, allow_empty false).
It reads no storage.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return runPolicyCheck(args[0], o, g) },
	}
	addFormatFlag(cmd.Flags(), &o.format)
	return cmd
}

func runPolicyCheck(path string, o *policyCheckOptions, g *globalOptions) error {
	if err := checkFormat(o.format); err != nil {
		return err
	}
	p, err := loadPolicy(path)
	if err != nil {
		return err
	}
	return writeReport(g.stdout, o.format, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // patterns such as "<" stay readable
		return enc.Encode(p)
	}, p.WriteRules)
}

// loadPolicy reads and validates a policy file; every failure is the
// operator's to fix (exit 2).
func loadPolicy(path string) (*retention.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("reading the policy file: %w", err)}
	}
	p, err := retention.Parse(data, path)
	if err != nil {
		return nil, usageError{fmt.Errorf("invalid policy: %w", err)}
	}
	return p, nil
}
