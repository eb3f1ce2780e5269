package testenv

import "syscall"

// childProcAttr makes a server started by a test die with the test binary,
// even if the test process is killed before its cleanups run.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
