package main

import (
	"bufio"
	"strings"
	"testing"
	"time"

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
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(master)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		g := &globalOptions{stderr: tty, logFormat: "text", logLevel: "info"}
		meter, _ := g.startProgress()
		meter.Start("walk", "keys", 0).Done()
		meter.Close()
		logged := false
		timeout := time.After(time.Second)
	read:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break read
				}
				if strings.Contains(line, "msg=progress stage=walk state=done") {
					logged = true
					break read
				}
			case <-timeout:
				break read
			}
		}
		tty.Close()
		master.Close()
		if logged != tc.logged {
			t.Errorf("a terminal %d columns wide: progress logged %v, want %v", tc.cols, logged, tc.logged)
		}
	}
}
