package main

import (
	"bufio"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// On a terminal that reports no width (a pseudo-terminal nobody sized:
// `script` without a terminal, some CI runners and `docker exec -t`) the
// live line cannot be drawn, so progress is logged as where stderr is not
// a terminal; on a sized terminal it is drawn.
func TestProgressOnATerminalWithoutWidthIsLogged(t *testing.T) {
	for _, tc := range []struct {
		cols   uint16
		logged bool
	}{{0, true}, {120, false}} {
		master, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		if err := pty.Setsize(master, &pty.Winsize{Rows: 40, Cols: tc.cols}); err != nil {
			t.Fatal(err)
		}
		g := &globalOptions{stderr: tty, logFormat: "text", logLevel: "info"}
		meter, _ := g.startProgress()
		meter.Start("walk", "keys", 0).Done()
		meter.Close()
		// What the run wrote is in the terminal before this end mark.
		if _, err := tty.WriteString("END\n"); err != nil {
			t.Fatal(err)
		}
		logged := false
		sc := bufio.NewScanner(master)
		for sc.Scan() && !strings.HasSuffix(sc.Text(), "END") {
			if strings.Contains(sc.Text(), "msg=progress stage=walk state=done") {
				logged = true
			}
		}
		tty.Close()
		master.Close()
		if logged != tc.logged {
			t.Errorf("a terminal %d columns wide: progress logged %v, want %v", tc.cols, logged, tc.logged)
		}
	}
}
