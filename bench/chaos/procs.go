package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// child is one node or frontend process the harness runs, kills, pauses
// and restarts. Its output is appended to one log file across restarts.
type child struct {
	name    string
	argv    []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

// start runs the process. It gets its own process group (a Ctrl-C reaches
// only the harness, which stops children itself) and dies with the
// harness (Pdeathsig) should the harness be killed.
func (c *child) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		select {
		case <-c.done:
		default:
			return nil // already running
		}
	}
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== chaos: start %s at %s\n", c.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", c.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	c.cmd, c.done, c.paused = cmd, done, false
	return nil
}

// running reports whether the process is alive (paused counts).
func (c *child) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *child) signal(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(sig)
	}
	switch sig {
	case syscall.SIGSTOP:
		c.paused = true
	case syscall.SIGCONT:
		c.paused = false
	}
}

func (c *child) wait(d time.Duration) bool {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill SIGKILLs the process and waits for it to be gone.
func (c *child) kill() {
	c.signal(syscall.SIGKILL)
	c.wait(time.Minute)
}

// stop resumes a paused process, asks it to stop, and kills it after 10 s.
func (c *child) stop() {
	c.signal(syscall.SIGCONT)
	c.signal(syscall.SIGTERM)
	if !c.wait(10 * time.Second) {
		c.kill()
	}
}
