// Command regsweep is an offline garbage collector and storage auditor for
// Docker Distribution registries (plain registry:2 and Harbor).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// A collector holds one large live set that only grows while it
		// walks and marks: collecting at 25% growth instead of 100% costs
		// little CPU and a third of the peak memory.
		debug.SetGCPercent(25)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand(os.Stdout, os.Stderr)
	err := root.ExecuteContext(ctx)
	code := exitCode(err)
	if err != nil {
		fmt.Fprintf(os.Stderr, "regsweep: %v\n", err)
	}
	os.Exit(code)
}
