// Command regsweep is an offline garbage collector and storage auditor for
// Docker Distribution registries (plain registry:2 and Harbor).
//
// It owns the command line: one file per command (flags, calling the
// engine, output), exit codes in exit.go. It may not hold pipeline logic:
// walking, marking, planning and deleting are package gc's.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// A collector holds one large live set that only grows while it
		// walks and marks: collecting at 10% growth instead of 100% keeps
		// the peak near that set. It costs a fifth more CPU than 25%, and
		// no time where the store's listing rate bounds the run (make bench).
		debug.SetGCPercent(10)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// For performance work: a CPU profile of the whole run, however it ends.
	if path := os.Getenv("REGSWEEP_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
		}
	}
	root := newRootCommand(os.Stdout, os.Stderr)
	err := root.ExecuteContext(ctx)
	code := exitCode(err)
	if err != nil {
		fmt.Fprintf(os.Stderr, "regsweep: %v\n", err)
	}
	pprof.StopCPUProfile() // os.Exit runs no defers
	os.Exit(code)
}
